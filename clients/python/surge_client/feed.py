"""Subscribing to surge's feed (docs/FEED.md): every event the engine's commands caused, in
sequence order, from the primary or a standby. Store each frame's ``through`` with what you
did with its events, and subscribe after it next time: every event comes exactly once.

    from surge_client.feed import Feed
    with Feed("10.0.0.2:7620", after=last_through) as feed:
        for frame in feed:
            for event in frame.events:
                handle(event.type, event.value)
            save(frame.through)
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Iterator, Sequence

from . import wire
from .codes import Code

SUBSCRIBE, FEED_BEGIN, FEED = 7, 8, 9
FOLLOW = 1

_ORDER = struct.Struct("<QQQQQQQQQQBxH4x")
_ORDER_FIELDS = ("order_id", "client_id", "request_id", "user", "total", "created_ns",
                 "deadline_ns", "paid_ns", "payment_ref", "closed_ns")
_LINE = struct.Struct("<QI4x")
_TYPES = {
    Code.ORDER_PLACED: "order_placed", Code.PAYMENT_CONFIRMED: "order_paid",
    Code.PAYMENT_FAILED: "order_payment_failed", Code.ORDER_CANCELLED: "order_cancelled",
    Code.ORDER_EXPIRED: "order_expired", Code.WAITLIST_ORDER_CREATED: "waitlist_order_created",
    Code.ORDER_RETIRED: "order_retired", Code.WAITLIST_JOINED: "waitlist_joined",
    Code.WAITLIST_DROPPED: "waitlist_dropped", Code.SKU_UPSERTED: "sku_upserted",
    Code.SKU_RESTOCKED: "sku_restocked", Code.SKU_DELISTED: "sku_delisted",
}
_FIXED = {
    Code.ORDER_RETIRED: ("<QQQQQQQQQIHBB", ("order_id", "client_id", "request_id", "user",
                                           "total", "created_ns", "closed_ns", "payment_ref",
                                           "first_sku", "first_qty", "line_count", "state",
                                           "reconciled")),
    Code.WAITLIST_JOINED: ("<QQQQQII", ("client_id", "request_id", "user", "sku",
                                        "units_ahead", "qty", "position")),
    Code.WAITLIST_DROPPED: ("<QQQQ", ("client_id", "request_id", "user", "sku")),
}
_SKU = ("<QQQQQQQQIIBB6x", ("sku", "price", "stocked", "available", "reserved", "sold",
                            "window_start_ns", "window_end_ns", "per_user_limit", "waitlist",
                            "listed", "has_window"))
_DISCREPANCY = ("<QQQQ", ("order_id", "payment_ref", "expected", "captured"))


class FeedError(Exception):
    """The feed port refused or ended the subscription: `code` (221-223, or a framing code)
    and, for 221 FEED_TRUNCATED, `begins_after`: the oldest `after` it can serve."""

    def __init__(self, code: int, message: str, begins_after: int | None = None):
        self.code = Code.of(code)
        self.begins_after = begins_after
        super().__init__(f"{code} {message}")


@dataclass(frozen=True)
class FeedEvent:
    seq: int
    at_ns: int
    type: str
    value: dict


@dataclass(frozen=True)
class FeedFrame:
    head: int
    through: int
    events: list[FeedEvent]


def subscribe(after: int, follow: bool) -> bytes:
    return wire.frame(SUBSCRIBE, struct.pack("<HHIQ", wire.PROTOCOL_VERSION,
                                             FOLLOW if follow else 0, 0, after))


def decode_event(code: int, body: bytes) -> dict:
    if code in (Code.ORDER_PLACED, Code.PAYMENT_CONFIRMED, Code.PAYMENT_FAILED,
                Code.ORDER_CANCELLED, Code.ORDER_EXPIRED, Code.WAITLIST_ORDER_CREATED):
        values = _ORDER.unpack_from(body)
        value = dict(zip(_ORDER_FIELDS, values[:10]))
        value["state"] = wire.ORDER_STATES[values[10]]
        at = _ORDER.size
        value["lines"] = [dict(zip(("sku", "qty"), _LINE.unpack_from(body, at + i * _LINE.size)))
                          for i in range(values[11])]
        return value
    if code in (Code.SKU_UPSERTED, Code.SKU_RESTOCKED, Code.SKU_DELISTED):
        layout = _SKU
    elif 60 <= code <= 64:
        value = dict(zip(_DISCREPANCY[1], struct.unpack(_DISCREPANCY[0], body)))
        value["kind"] = Code.of(code).name if isinstance(Code.of(code), Code) else code
        return value
    else:
        layout = _FIXED.get(code)
    if layout is None:
        return {"raw": body}
    value = dict(zip(layout[1], struct.unpack(layout[0], body)))
    if "state" in value:
        value["state"] = wire.ORDER_STATES[value["state"]]
    return value


def decode_feed(body: bytes) -> FeedFrame:
    head, through, count = struct.unpack_from("<QQI4x", body)
    at, events = 24, []
    for _ in range(count):
        seq, at_ns, code, _, n = struct.unpack_from("<QQHHI", body, at)
        at += 24
        raw = body[at:at + n]
        at += n
        name = _TYPES.get(code, "discrepancy" if 60 <= code <= 64 else str(code))
        events.append(FeedEvent(seq, at_ns, name, decode_event(code, raw)))
    return FeedFrame(head, through, events)


class Feed:
    """One subscription to a node's feed port: iterate over its FEED frames. With
    ``follow=False`` it ends at the node's head of the moment it began. `address` may be a
    list (a standby's feed port first): the first node that answers and still holds the
    events after `after` serves the subscription; every node serves the same feed."""

    def __init__(self, address: "str | Sequence[str]", after: int = 0, follow: bool = True,
                 timeout: float | None = 30.0):
        addresses = [address] if isinstance(address, str) else list(address)
        last: Exception | None = None
        for one in addresses:
            try:
                self._subscribe(one, after, follow, timeout)
                return
            except (OSError, FeedError, EOFError) as e:
                last = e
        raise last if last else FeedError(0, "no address given")

    def _subscribe(self, address: str, after: int, follow: bool, timeout: float | None):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.settimeout(timeout)
        self.sock.sendall(subscribe(after, follow))
        kind, body = self._frame()
        if kind == wire.ERROR:
            raise FeedError(*wire.decode_error(body))
        if kind != FEED_BEGIN:
            raise FeedError(0, f"frame kind {kind} where FEED_BEGIN was due")
        self.begins_after, self.head = struct.unpack("<QQ", body)
        if after < self.begins_after:
            kind, body = self._frame()
            code, message = wire.decode_error(body) if kind == wire.ERROR else (0, "no ERROR")
            self.sock.close()
            raise FeedError(code, message, self.begins_after)

    def _frame(self) -> tuple[int, bytes]:
        header = self._read(5)
        if header is None:
            raise EOFError
        length, kind = struct.unpack("<IB", header)
        body = self._read(length - 1)
        if body is None:
            raise FeedError(0, "the feed port closed in the middle of a frame")
        return kind, body

    def _read(self, n: int) -> bytes | None:
        chunks, got = [], 0
        while got < n:
            chunk = self.sock.recv(n - got)
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def __iter__(self) -> Iterator[FeedFrame]:
        while True:
            try:
                kind, body = self._frame()
            except EOFError:
                return
            if kind == wire.ERROR:
                raise FeedError(*wire.decode_error(body))
            yield decode_feed(body)

    def close(self):
        self.sock.close()

    def __enter__(self) -> "Feed":
        return self

    def __exit__(self, *exc):
        self.close()
