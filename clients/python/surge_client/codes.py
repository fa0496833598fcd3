"""Every code surge answers with, as docs/ERRORS.md lists them (the Rust `engine::Code`).

1-23 are outcomes, 50-64 pushed events, 100-127 the engine's rejections (nothing changed),
200-220 the gateway's refusals and connection errors, 221-223 the feed port's. ``tests/test_codes.py`` holds this
list to docs/ERRORS.md.
"""

from enum import IntEnum


class Code(IntEnum):
    ORDER_PLACED = 1
    WAITLIST_JOINED = 2
    PAYMENT_CONFIRMED = 3
    PAYMENT_FAILED = 4
    ORDER_CANCELLED = 5
    SKU_UPSERTED = 6
    SKU_RESTOCKED = 7
    SKU_DELISTED = 8
    TICKED = 9
    STATEMENT_APPLIED = 10
    ORDER_INFO = 20
    STOCK_INFO = 21
    WAITLIST_POSITION = 22
    RETIRED_ORDER_INFO = 23
    ORDER_EXPIRED = 50
    WAITLIST_ORDER_CREATED = 51
    WAITLIST_DROPPED = 52
    ORDER_RETIRED = 53
    DISCREPANCY_REFUND_DUE = 60
    DISCREPANCY_AMOUNT_MISMATCH = 61
    DISCREPANCY_MISSING_FROM_STATEMENT = 62
    DISCREPANCY_SETTLED_FROM_STATEMENT = 63
    DISCREPANCY_BEYOND_HISTORY = 64
    UNKNOWN_SKU = 100
    SKU_NOT_LISTED = 101
    SALE_NOT_STARTED = 102
    SALE_ENDED = 103
    PER_USER_LIMIT = 104
    OUT_OF_STOCK = 105
    BAD_QUANTITY = 106
    BAD_LINE_COUNT = 107
    DUPLICATE_SKU = 108
    WAITLIST_FULL = 109
    ALREADY_WAITLISTED = 110
    NOT_WAITLISTED = 111
    UNKNOWN_ORDER = 112
    WRONG_AMOUNT = 113
    ALREADY_PAID = 114
    ORDER_ALREADY_EXPIRED = 115
    ORDER_ALREADY_CANCELLED = 116
    ORDER_ALREADY_FAILED = 117
    BAD_SKU_DEFINITION = 118
    STOCK_BELOW_COMMITTED = 119
    STOCK_OVERFLOW = 120
    ORDER_CAPACITY_FULL = 121
    BAD_STATEMENT = 122
    SKU_CAPACITY_FULL = 123
    REQUEST_TOO_OLD = 124
    ORDER_BEYOND_HISTORY = 125
    HOLDINGS_CAPACITY_FULL = 126
    WAITLIST_CAPACITY_FULL = 127
    FRAME_TOO_SHORT = 200
    FRAME_TOO_LARGE = 201
    UNKNOWN_FRAME_KIND = 202
    BAD_MAGIC = 203
    UNSUPPORTED_VERSION = 204
    HELLO_REQUIRED = 205
    DUPLICATE_HELLO = 206
    BAD_CLIENT_ID = 207
    BAD_REQUEST_COUNT = 208
    MALFORMED_FRAME = 209
    MALFORMED_REQUEST = 210
    UNKNOWN_OP = 211
    TOO_MANY_CONNECTIONS = 212
    SHUTTING_DOWN = 213
    SLOW_CONSUMER = 214
    FRAME_TIMEOUT = 215
    SERVER_FAILED = 216
    NOT_PRIMARY = 217
    FENCED = 218
    STANDBY_UNAVAILABLE = 219
    SEQUENCE_MISMATCH = 220
    FEED_TRUNCATED = 221
    FEED_SUBSCRIBERS_FULL = 222
    FEED_UNAVAILABLE = 223

    @classmethod
    def of(cls, number: int) -> "Code | int":
        """The code, or the bare number when this client does not know it (a newer server)."""
        try:
            return cls(number)
        except ValueError:
            return number


#: Refusals that mean "this node will not take the write; another may" (the client moves on).
MOVE_ON = frozenset({Code.NOT_PRIMARY, Code.FENCED, Code.SHUTTING_DOWN, Code.STANDBY_UNAVAILABLE})
