"""A blocking client for surge: one connection at a time, pipelining, pushes, typed errors,
idempotent retries and failover across several addresses, as docs/PROTOCOL.md asks of a
client (and as the Rust client in loadgen/src/client.rs does)."""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections import deque
from typing import Iterable, Sequence

from . import wire
from .codes import MOVE_ON, Code


class SurgeError(Exception):
    """Anything this client raises."""


class Rejected(SurgeError):
    """The server answered with a rejection (100-299): nothing was done."""

    def __init__(self, answer: wire.Answer):
        self.answer = answer
        self.code = answer.code
        self.subject = getattr(answer.value, "subject", None)
        name = self.code.name if isinstance(self.code, Code) else str(self.code)
        super().__init__(f"{int(self.code)} {name} (subject {self.subject})")


class ConnectionClosed(SurgeError):
    """The connection ended: an ERROR frame's code and message, or None for a plain close."""

    def __init__(self, code: int | None, message: str):
        self.code = Code.of(code) if code is not None else None
        super().__init__(f"connection closed: {code} {message}".strip())


class Unavailable(SurgeError):
    """No address took the request within the retry time."""


class Client:
    """`addresses` are ``host:port`` of the primary and its standbys, in any order: the client
    connects to the first that answers, and moves on when a node refuses writes (217, 218,
    219, 213) or goes away, resending unanswered requests with their original ids (the
    server's idempotency answers a retry with the original outcome)."""

    def __init__(self, addresses: str | Sequence[str], client_id: int, timeout: float = 5.0,
                 retry_for: float = 10.0, first_request_id: int | None = None,
                 tls: ssl.SSLContext | None = None):
        """`tls`: for a server whose client port speaks TLS (`gateway.tls_cert`), e.g.
        ``ssl.create_default_context(cafile="/etc/surge/ca.pem")``; the certificate is checked
        for each address's host."""
        if client_id == 0:
            raise ValueError("client id 0 is the sequencer's own")
        self.addresses = [addresses] if isinstance(addresses, str) else list(addresses)
        self.client_id = client_id
        self.timeout = timeout
        self.retry_for = retry_for
        self.tls = tls
        # Upwards across restarts of this process too: microseconds since the epoch.
        self._next_id = first_request_id or time.time_ns() // 1000
        self._at = 0
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._out: list[bytes] = []
        self.epoch = 0
        self.welcome: wire.Welcome | None = None
        #: Events pushed to this client (order expired, waitlist order created, ...).
        self.pushes: deque[wire.Event] = deque()
        self._answers: dict[int, wire.Answer] = {}

    # Connection.

    def connect(self) -> wire.Welcome:
        """Connect to the next address that answers (starting with the current one)."""
        self.close()
        errors = []
        for i in range(len(self.addresses)):
            address = self.addresses[(self._at + i) % len(self.addresses)]
            host, port = address.rsplit(":", 1)
            try:
                sock = socket.create_connection((host, int(port)), timeout=self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.tls is not None:
                    sock = self.tls.wrap_socket(sock, server_hostname=host)
                sock.sendall(wire.hello(self.client_id, self.epoch))
                self._sock, self._buf = sock, bytearray()
                kind, body = self._read_frame()
                if kind != wire.WELCOME:
                    raise ConnectionClosed(None, f"expected WELCOME, got kind {kind}")
            except (OSError, SurgeError) as e:
                errors.append(f"{address}: {e}")
                self.close()
                continue
            self._at = (self._at + i) % len(self.addresses)
            self.welcome = wire.decode_welcome(body)
            self.epoch = max(self.epoch, self.welcome.epoch)
            return self.welcome
        raise Unavailable("; ".join(errors))

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> "Client":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def next_request_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # Pipelining: send many, flush once, collect the answers.

    def send(self, op: int, body: bytes, request_id: int | None = None) -> int:
        """Queue one request; it leaves with the next `flush`. Returns its request id."""
        request_id = request_id or self.next_request_id()
        self._out.append(wire.request(request_id, op, body))
        if len(self._out) == wire.REQUESTS_PER_FRAME_MAX:
            self.flush()
        return request_id

    def flush(self) -> None:
        if not self._out:
            return
        if self._sock is None:
            self.connect()
        frame, self._out = wire.requests_frame(self._out), []
        self._sock.sendall(frame)

    def answer(self, request_id: int) -> wire.Answer:
        """Wait for the answer to `request_id` (answers to others are kept; pushes queued)."""
        while request_id not in self._answers:
            kind, body = self._read_frame()
            if kind == wire.ANSWERS:
                for a in wire.decode_answers(body):
                    self._answers[a.request_id] = a
            elif kind == wire.PUSH:
                self.pushes.extend(wire.decode_push(body))
            elif kind == wire.ERROR:
                self.close()
                raise ConnectionClosed(*wire.decode_error(body))
        return self._answers.pop(request_id)

    def call_many(self, requests: Iterable[tuple[int, bytes]]) -> list[wire.Answer]:
        """Pipeline `(op, body)` requests in one go; their answers in order (rejections
        included, not raised). Not retried: resend what you need with `call`."""
        ids = [self.send(op, body) for op, body in requests]
        self.flush()
        return [self.answer(i) for i in ids]

    def call(self, op: int, body: bytes, request_id: int | None = None) -> wire.Answer:
        """One request, answered: retried with the same id on another node or a new connection
        until `retry_for` passes. Raises `Rejected` for 100-299."""
        request_id = request_id or self.next_request_id()
        deadline = time.monotonic() + self.retry_for
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if self._sock is None:
                    self.connect()
                self.send(op, body, request_id)
                self.flush()
                answer = self.answer(request_id)
            except (OSError, ConnectionClosed, Unavailable) as e:
                last = e
                self._out = []
                self.close()
                self._at += 1  # the next address
                time.sleep(0.05)
                continue
            if answer.code in MOVE_ON:
                last = Rejected(answer)
                self.close()
                self._at += 1
                time.sleep(0.05)
                continue
            if not answer.ok:
                raise Rejected(answer)
            return answer
        raise Unavailable(f"request {request_id} not answered within {self.retry_for} s: {last}")

    # Frames.

    def _read_frame(self) -> tuple[int, bytes]:
        while True:
            if len(self._buf) >= 4:
                (length,) = struct.unpack_from("<I", self._buf)
                if len(self._buf) >= 4 + length:
                    kind = self._buf[4]
                    body = bytes(self._buf[5:4 + length])
                    del self._buf[:4 + length]
                    return kind, body
            chunk = self._sock.recv(1 << 16) if self._sock else b""
            if not chunk:
                self.close()
                raise ConnectionClosed(None, "closed by the server")
            self._buf += chunk

    # The operations, typed.

    def upsert_sku(self, sku: int, price: int, stock: int, per_user_limit: int = 0,
                   window: tuple[int, int] | None = None) -> wire.SkuChanged:
        return self.call(wire.UPSERT_SKU, wire.upsert_sku(sku, price, stock, per_user_limit, window)).value

    def restock(self, sku: int, units: int) -> wire.SkuChanged:
        return self.call(wire.RESTOCK, wire.restock(sku, units)).value

    def delist(self, sku: int) -> wire.SkuChanged:
        return self.call(wire.DELIST, wire.one_id(sku)).value

    def place_order(self, user: int, lines: Sequence[tuple[int, int]],
                    join_waitlist: bool = False) -> wire.OrderPlaced | wire.WaitlistJoined:
        return self.call(wire.PLACE_ORDER, wire.place_order(user, lines, join_waitlist)).value

    def confirm_payment(self, order: int, amount: int, payment_ref: int) -> wire.OrderChanged:
        return self.call(wire.CONFIRM_PAYMENT, wire.confirm_payment(order, amount, payment_ref)).value

    def fail_payment(self, order: int) -> wire.OrderChanged:
        return self.call(wire.FAIL_PAYMENT, wire.one_id(order)).value

    def cancel_order(self, order: int) -> wire.OrderChanged:
        return self.call(wire.CANCEL_ORDER, wire.one_id(order)).value

    def query_order(self, order: int) -> wire.OrderInfo | wire.RetiredOrderInfo:
        return self.call(wire.QUERY_ORDER, wire.one_id(order)).value

    def query_stock(self, sku: int) -> wire.StockInfo:
        return self.call(wire.QUERY_STOCK, wire.one_id(sku)).value

    def query_waitlist(self, sku: int, user: int) -> wire.WaitlistPosition:
        return self.call(wire.QUERY_WAITLIST, wire.query_waitlist(sku, user)).value
