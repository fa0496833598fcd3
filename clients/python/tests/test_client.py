"""The Python client against a real `surge serve` (the binary in SURGE_BIN), on loopback
ephemeral ports in a temporary data directory."""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
from pathlib import Path

from surge_client import Client, Code, Rejected, wire
from surge_client.feed import Feed

SMALL = ["engine.orders_max=65536", "engine.holdings_max=131072", "engine.clients_max=64",
         "engine.payment_window_ms=300", 'feed.listen="127.0.0.1:0"']


class Server:
    """`surge serve` on ephemeral ports; its address from the `serving` log line."""

    def __init__(self, extra: tuple[str, ...] = ()):
        binary = os.environ.get("SURGE_BIN")
        if not binary:
            raise unittest.SkipTest("SURGE_BIN is not set (the surge binary to test against)")
        self.dir = tempfile.mkdtemp(prefix="surge-python-")
        args = [binary, "serve", "--data-dir", self.dir, "--listen", "127.0.0.1:0",
                "--http", "127.0.0.1:0"]
        for s in SMALL + list(extra):
            args += ["--set", s]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        serving = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line)
                if "event=serving" in line:
                    serving.set()

        threading.Thread(target=read, daemon=True).start()
        if not serving.wait(30):
            self.stop()
            raise RuntimeError("surge did not start:\n" + "".join(self.lines))
        line = next(l for l in self.lines if "event=serving" in l)
        self.address = re.search(r"listen=(\S+)", line).group(1)
        self.feed = re.search(r"feed=(\S+)", line).group(1)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class ServerTest(unittest.TestCase):
    """A test class with a `surge serve` of its own."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()


class ClientTest(ServerTest):

    def client(self, client_id: int, **kw) -> Client:
        c = Client(self.server.address, client_id, **kw)
        c.connect()
        self.addCleanup(c.close)
        return c

    def test_handshake_place_pay_and_query(self):
        c = self.client(1)
        self.assertTrue(c.welcome.primary)
        self.assertEqual(c.welcome.epoch, 1)
        self.assertEqual(c.upsert_sku(1000, price=1999, stock=10).sku, 1000)
        placed = c.place_order(user=42, lines=[(1000, 2)])
        self.assertEqual(placed.total, 3998)
        paid = c.confirm_payment(placed.order, placed.total, payment_ref=777)
        self.assertEqual(paid.order, placed.order)
        info = c.query_order(placed.order)
        self.assertEqual((info.state, info.payment_ref, info.lines), ("paid", 777, ((1000, 2),)))
        stock = c.query_stock(1000)
        self.assertEqual((stock.stocked, stock.available, stock.sold), (10, 8, 2))
        self.assertEqual(stock.stocked, stock.available + stock.reserved + stock.sold)

    def test_rejections_are_typed(self):
        c = self.client(2)
        with self.assertRaises(Rejected) as caught:
            c.place_order(user=1, lines=[(999_999, 1)])
        self.assertEqual(caught.exception.code, Code.UNKNOWN_SKU)
        self.assertEqual(caught.exception.subject, 999_999)
        c.upsert_sku(2000, price=5, stock=1)
        c.place_order(user=1, lines=[(2000, 1)])
        with self.assertRaises(Rejected) as caught:
            c.place_order(user=2, lines=[(2000, 1)])
        self.assertEqual(caught.exception.code, Code.OUT_OF_STOCK)
        # A gateway refusal: too many lines, before the engine.
        too_many = [(3000 + i, 1) for i in range(17)]
        answer = c.call_many([(wire.PLACE_ORDER, wire.place_order(1, too_many))])[0]
        self.assertEqual((answer.code, answer.seq, answer.value.subject),
                         (Code.BAD_LINE_COUNT, 0, 17))

    def test_pipelining_answers_every_request_in_order(self):
        c = self.client(3)
        c.upsert_sku(4000, price=10, stock=300)
        requests = [(wire.PLACE_ORDER, wire.place_order(user, [(4000, 1)])) for user in range(500)]
        answers = c.call_many(requests)
        self.assertEqual(len(answers), 500)
        codes = [a.code for a in answers]
        self.assertEqual(codes.count(Code.ORDER_PLACED), 300)
        self.assertEqual(codes.count(Code.OUT_OF_STOCK), 200)
        seqs = [a.seq for a in answers]
        self.assertEqual(seqs, sorted(seqs), "answers come in sequence order")

    def test_a_retry_with_the_same_id_gets_the_original_outcome(self):
        c = self.client(4)
        c.upsert_sku(5000, price=3, stock=100)
        request_id = c.next_request_id()
        first = c.call(wire.PLACE_ORDER, wire.place_order(9, [(5000, 1)]), request_id)
        # The answer was "lost": the process resends on a new connection with the same id.
        c.close()
        again = self.client(4).call(wire.PLACE_ORDER, wire.place_order(9, [(5000, 1)]), request_id)
        self.assertEqual(again.value.order, first.value.order)
        self.assertEqual(self.client(5).query_stock(5000).reserved, 1, "applied once")

    def test_failover_skips_an_address_that_does_not_answer(self):
        with socketserver_that_refuses() as dead:
            c = Client([dead, self.server.address], client_id=6)
            self.addCleanup(c.close)
            c.upsert_sku(6000, price=1, stock=1)
            self.assertEqual(c.query_stock(6000).sku, 6000)

    def test_pushes_arrive_with_answers(self):
        c = self.client(7)
        c.upsert_sku(7000, price=1, stock=5)
        placed = c.place_order(user=3, lines=[(7000, 1)])
        deadline = time.monotonic() + 10
        while not any(e.code == Code.ORDER_EXPIRED for e in c.pushes):
            self.assertLess(time.monotonic(), deadline, "no ORDER_EXPIRED push")
            time.sleep(0.1)
            c.query_stock(7000)  # reading answers takes the pushes in too
        expired = next(e for e in c.pushes if e.code == Code.ORDER_EXPIRED)
        self.assertEqual(expired.value["order"], placed.order)


class TlsTest(unittest.TestCase):
    """The client port over TLS, with the PEM files named by SURGE_TEST_CA, SURGE_TEST_CERT
    (for 127.0.0.1) and SURGE_TEST_KEY (the Rust test that runs this suite makes them)."""

    def test_orders_over_tls_and_a_plain_client_gets_nothing(self):
        ca, cert, key = (os.environ.get(f"SURGE_TEST_{v}") for v in ("CA", "CERT", "KEY"))
        if not (ca and cert and key):
            raise unittest.SkipTest("SURGE_TEST_CA, SURGE_TEST_CERT and SURGE_TEST_KEY are not set")
        server = Server((f'gateway.tls_cert="{cert}"', f'gateway.tls_key="{key}"'))
        self.addCleanup(server.stop)
        context = ssl.create_default_context(cafile=ca)
        with Client(server.address, client_id=9, tls=context) as c:
            c.upsert_sku(9000, price=2, stock=50)
            requests = [(wire.PLACE_ORDER, wire.place_order(u, [(9000, 1)])) for u in range(80)]
            codes = [a.code for a in c.call_many(requests)]
            self.assertEqual(codes.count(Code.ORDER_PLACED), 50)
        plain = Client(server.address, client_id=10, timeout=1.0)
        with self.assertRaises(Exception):
            plain.connect()
        plain.close()


class socketserver_that_refuses:
    """An address with nothing listening on it."""

    def __enter__(self) -> str:
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % s.getsockname()[1]
        s.close()
        return self.address

    def __exit__(self, *exc):
        pass


class FeedTest(ServerTest):
    def read(self, after: int, follow: bool = False) -> tuple[list, int]:
        events, through = [], after
        with Feed(self.server.feed, after=after, follow=follow) as feed:
            for frame in feed:
                self.assertTrue(all(through < e.seq <= frame.through for e in frame.events))
                events += frame.events
                through = frame.through
        return events, through

    def test_the_feed_tells_every_change_once_and_resumes_after_through(self):
        with Client(self.server.address, 71) as c:
            c.upsert_sku(3000, price=500, stock=10)
            placed = c.place_order(user=5, lines=[(3000, 2)])
            c.confirm_payment(placed.order, placed.total, payment_ref=99)
            other = c.place_order(user=6, lines=[(3000, 1)])
            c.cancel_order(other.order)
        deadline = time.monotonic() + 10
        while True:
            events, through = self.read(0)
            types = [e.type for e in events]
            if "order_cancelled" in types or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(types[:5], ["sku_upserted", "order_placed", "order_paid",
                                     "order_placed", "order_cancelled"])
        paid = events[2].value
        self.assertEqual((paid["order_id"], paid["state"], paid["total"], paid["payment_ref"]),
                         (placed.order, "paid", 1000, 99))
        self.assertEqual(paid["lines"], [{"sku": 3000, "qty": 2}])
        # A list of feed ports: one that does not answer is passed over.
        with socketserver_that_refuses() as dead:
            with Feed([dead, self.server.feed], after=0, follow=False) as feed:
                again = [e for f in feed for e in f.events]
            # (Orders retiring since may have added events after these.)
            self.assertEqual(again[:len(events)], events)
        # Resuming after the payment's sequence gives the rest, and nothing before it.
        rest, _ = self.read(events[2].seq)
        self.assertEqual([e.type for e in rest][:2], ["order_placed", "order_cancelled"])
        self.assertTrue(all(e.seq > events[2].seq for e in rest))


class CodesTest(unittest.TestCase):
    def test_codes_are_the_ones_errors_md_lists(self):
        errors = Path(__file__).resolve().parents[3] / "docs" / "ERRORS.md"
        if not errors.exists():
            raise unittest.SkipTest("docs/ERRORS.md is not next to this checkout")
        listed = {int(n): name for n, name in
                  re.findall(r"^\| (\d+) \| `([A-Z_]+)`", errors.read_text(), re.M)
                  if int(n) < 300}
        self.assertEqual({c.value: c.name for c in Code}, listed)


if __name__ == "__main__":
    unittest.main()
