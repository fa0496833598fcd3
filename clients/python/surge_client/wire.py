"""The client protocol's bytes, as docs/PROTOCOL.md lays them out: frames (``u32 len, u8 kind,
body``, little-endian), request bodies by op, and answer and event bodies by code."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Sequence

from .codes import Code

# Frame kinds.
HELLO, WELCOME, REQUESTS, ANSWERS, PUSH, ERROR = 1, 2, 3, 4, 5, 6
HELLO_MAGIC = 0x45475253  # "SRGE"
PROTOCOL_VERSION = 1
FRAME_LEN_MAX = 1 << 20
REQUESTS_PER_FRAME_MAX = 4096
ORDER_LINES_MAX = 16

# Ops.
UPSERT_SKU, RESTOCK, DELIST, PLACE_ORDER = 1, 2, 3, 4
CONFIRM_PAYMENT, FAIL_PAYMENT, CANCEL_ORDER, STATEMENT_BATCH = 5, 6, 7, 8
QUERY_ORDER, QUERY_STOCK, QUERY_WAITLIST = 20, 21, 22

ORDER_STATES = {1: "pending_payment", 2: "paid", 3: "cancelled", 4: "payment_failed", 5: "expired"}


def frame(kind: int, body: bytes) -> bytes:
    return struct.pack("<IB", 1 + len(body), kind) + body


def hello(client_id: int, epoch: int = 0) -> bytes:
    """HELLO; `epoch` (the highest the client was welcomed at) fences a stale primary."""
    body = struct.pack("<IHHQ", HELLO_MAGIC, PROTOCOL_VERSION, 0, client_id)
    if epoch:
        body += struct.pack("<Q", epoch)
    return frame(HELLO, body)


def request(request_id: int, op: int, body: bytes) -> bytes:
    return struct.pack("<QHHI", request_id, op, 0, len(body)) + body


def requests_frame(requests: Sequence[bytes]) -> bytes:
    assert 1 <= len(requests) <= REQUESTS_PER_FRAME_MAX
    return frame(REQUESTS, struct.pack("<I", len(requests)) + b"".join(requests))


# Request bodies.

def upsert_sku(sku: int, price: int, stock: int, per_user_limit: int = 0,
               window: tuple[int, int] | None = None) -> bytes:
    start, end = window or (0, 0)
    return struct.pack("<QQQIB3xQQ", sku, price, stock, per_user_limit, 1 if window else 0, start, end)


def restock(sku: int, units: int) -> bytes:
    return struct.pack("<QQ", sku, units)


def one_id(value: int) -> bytes:
    """Delist, FailPayment, CancelOrder, QueryOrder, QueryStock: one u64."""
    return struct.pack("<Q", value)


def place_order(user: int, lines: Sequence[tuple[int, int]], join_waitlist: bool = False) -> bytes:
    head = struct.pack("<QHB5x", user, len(lines), 1 if join_waitlist else 0)
    return head + b"".join(struct.pack("<QI4x", sku, qty) for sku, qty in lines)


def confirm_payment(order: int, amount: int, payment_ref: int) -> bytes:
    return struct.pack("<QQQ", order, amount, payment_ref)


def statement_batch(entries: Iterable[tuple[int, int, int, bool]],
                    closes_through_ns: int | None = None) -> bytes:
    """Entries are (payment_ref, order, amount, captured); `closes_through_ns` closes it."""
    rows = [struct.pack("<QQQB7x", ref, order, amount, 1 if captured else 2)
            for ref, order, amount, captured in entries]
    closes = closes_through_ns is not None
    head = struct.pack("<IB3xQ", len(rows), 1 if closes else 0, closes_through_ns or 0)
    return head + b"".join(rows)


def query_waitlist(sku: int, user: int) -> bytes:
    return struct.pack("<QQ", sku, user)


# Server frames.

@dataclass(frozen=True)
class Welcome:
    version: int
    role: int  # 1 primary, 2 standby
    in_flight_max: int
    frame_len_max: int
    requests_per_frame_max: int
    epoch: int

    @property
    def primary(self) -> bool:
        return self.role == 1


def decode_welcome(body: bytes) -> Welcome:
    version, role, _, in_flight, frame_max, per_frame, epoch = struct.unpack("<HBBIIIQ", body)
    return Welcome(version, role, in_flight, frame_max, per_frame, epoch)


def decode_error(body: bytes) -> tuple[int, str]:
    code, n = struct.unpack_from("<HH", body)
    return code, body[4:4 + n].decode("utf-8", "replace")


@dataclass(frozen=True)
class OrderPlaced:
    order: int
    total: int
    deadline_ns: int


@dataclass(frozen=True)
class WaitlistJoined:
    sku: int
    position: int
    units_ahead: int


@dataclass(frozen=True)
class OrderChanged:
    """PAYMENT_CONFIRMED, PAYMENT_FAILED or ORDER_CANCELLED."""
    order: int


@dataclass(frozen=True)
class SkuChanged:
    """SKU_UPSERTED, SKU_RESTOCKED (with `available`), SKU_DELISTED (with `waitlist_dropped`)."""
    sku: int
    available: int | None = None
    waitlist_dropped: int | None = None


@dataclass(frozen=True)
class StatementApplied:
    entries: int
    matched: int
    discrepancies: int


@dataclass(frozen=True)
class OrderInfo:
    order: int
    client: int
    request: int
    user: int
    total: int
    created_ns: int
    deadline_ns: int
    payment_ref: int
    state: str
    lines: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class RetiredOrderInfo:
    order: int
    client: int
    request: int
    user: int
    total: int
    created_ns: int
    closed_ns: int
    payment_ref: int
    state: str
    reconciled: bool
    line_count: int
    first_qty: int
    first_sku: int


@dataclass(frozen=True)
class StockInfo:
    sku: int
    price: int
    stocked: int
    available: int
    reserved: int
    sold: int
    per_user_limit: int
    waitlist_len: int
    listed: bool


@dataclass(frozen=True)
class WaitlistPosition:
    sku: int
    user: int
    qty: int
    position: int
    units_ahead: int
    eta_ns: int | None  # None: unknown


@dataclass(frozen=True)
class Refusal:
    """100-299: nothing was done; `subject` says what was wrong (docs/PROTOCOL.md)."""
    subject: int


def decode_body(code: int, body: bytes):
    """The answer body for `code`, or the raw bytes for a code this client does not know."""
    if code == Code.ORDER_PLACED:
        return OrderPlaced(*struct.unpack("<QQQ", body))
    if code == Code.WAITLIST_JOINED:
        sku, position, ahead = struct.unpack("<QI4xQ", body)
        return WaitlistJoined(sku, position, ahead)
    if code in (Code.PAYMENT_CONFIRMED, Code.PAYMENT_FAILED, Code.ORDER_CANCELLED):
        return OrderChanged(*struct.unpack("<Q", body))
    if code == Code.SKU_UPSERTED:
        return SkuChanged(*struct.unpack("<Q", body))
    if code == Code.SKU_RESTOCKED:
        sku, available = struct.unpack("<QQ", body)
        return SkuChanged(sku, available=available)
    if code == Code.SKU_DELISTED:
        sku, dropped = struct.unpack("<QI4x", body)
        return SkuChanged(sku, waitlist_dropped=dropped)
    if code == Code.STATEMENT_APPLIED:
        return StatementApplied(*struct.unpack("<III4x", body))
    if code == Code.ORDER_INFO:
        (order, client, req, user, total, created, deadline, ref, state,
         n) = struct.unpack_from("<QQQQQQQQBxH4x", body)
        lines = tuple(struct.unpack_from("<QI4x", body, 72 + 16 * i) for i in range(n))
        return OrderInfo(order, client, req, user, total, created, deadline, ref,
                         ORDER_STATES.get(state, str(state)), lines)
    if code == Code.RETIRED_ORDER_INFO:
        (order, client, req, user, total, created, closed, ref, state, reconciled, n,
         first_qty, first_sku) = struct.unpack("<QQQQQQQQBBHIQ", body)
        return RetiredOrderInfo(order, client, req, user, total, created, closed, ref,
                                ORDER_STATES.get(state, str(state)), bool(reconciled), n,
                                first_qty, first_sku)
    if code == Code.STOCK_INFO:
        values = struct.unpack("<QQQQQQIIB7x", body)
        return StockInfo(*values[:8], listed=bool(values[8]))
    if code == Code.WAITLIST_POSITION:
        sku, user, qty, position, ahead, eta = struct.unpack("<QQIIQQ", body)
        return WaitlistPosition(sku, user, qty, position, ahead,
                                None if eta == 0xFFFF_FFFF_FFFF_FFFF else eta)
    if 100 <= code < 300 and len(body) == 8:
        return Refusal(*struct.unpack("<Q", body))
    return body


@dataclass(frozen=True)
class Answer:
    request_id: int
    seq: int  # the command's journal sequence; 0 for queries and gateway refusals
    code: "Code | int"
    value: object

    @property
    def ok(self) -> bool:
        return self.code < 100


def decode_answers(body: bytes) -> list[Answer]:
    (count,) = struct.unpack_from("<I", body)
    at, out = 4, []
    for _ in range(count):
        request_id, seq, code, _, n = struct.unpack_from("<QQHHI", body, at)
        at += 24
        out.append(Answer(request_id, seq, Code.of(code), decode_body(code, body[at:at + n])))
        at += n
    return out


@dataclass(frozen=True)
class Event:
    """A pushed event (50-99): `value` is a dict of its fields."""
    seq: int
    code: "Code | int"
    value: dict


_EVENT_FIELDS = {
    Code.ORDER_EXPIRED: ("<QQQ", ("order", "client", "user")),
    Code.WAITLIST_ORDER_CREATED: ("<QQQQQQQI4x", ("client", "request", "user", "sku", "order",
                                                  "total", "deadline_ns", "qty")),
    Code.WAITLIST_DROPPED: ("<QQQQ", ("client", "request", "user", "sku")),
    Code.ORDER_RETIRED: ("<QB7x", ("order", "state")),
}
_DISCREPANCY = ("<QQQQ", ("order", "payment_ref", "expected", "captured"))


def decode_push(body: bytes) -> list[Event]:
    (count,) = struct.unpack_from("<I", body)
    at, out = 4, []
    for _ in range(count):
        seq, code, _, n = struct.unpack_from("<QHHI", body, at)
        at += 16
        raw = body[at:at + n]
        at += n
        layout = _EVENT_FIELDS.get(code) or (_DISCREPANCY if 60 <= code <= 64 else None)
        value = dict(zip(layout[1], struct.unpack(layout[0], raw))) if layout else {"raw": raw}
        out.append(Event(seq, Code.of(code), value))
    return out
