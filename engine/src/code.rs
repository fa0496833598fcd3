//! Every outcome the engine can produce has one stable numeric code and one name. Clients,
//! logs and `docs/ERRORS.md` all use these; a number is never reused for something else.
//!
//! Ranges: 1–49 replies that succeeded, 50–99 events (pushed, not asked for), 100–199
//! rejections by business rules, 200–299 protocol and gateway errors. 300 and up belong to the
//! journal (`journal::ErrorCode`).

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $num:literal => $text:literal,)*) => {
        /// A stable outcome code. See `docs/ERRORS.md`.
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
        )]
        #[rkyv(derive(Debug, PartialEq, Eq))]
        #[repr(u16)]
        pub enum Code {
            $($(#[$doc])* $name = $num,)*
        }

        impl Code {
            /// Every code, in numeric order.
            pub const ALL: &'static [Code] = &[$(Code::$name,)*];

            /// The SCREAMING_SNAKE name used in logs, JSON and docs.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Code::$name => $text,)*
                }
            }

            /// The code with this number, if there is one.
            pub const fn from_u16(number: u16) -> Option<Code> {
                match number {
                    $($num => Some(Code::$name),)*
                    _ => None,
                }
            }
        }
    };
}

impl Code {
    pub const fn number(self) -> u16 {
        self as u16
    }

    /// True for the 100–199 range: the engine refused the command and changed nothing.
    pub const fn is_rejection(self) -> bool {
        let n = self as u16;
        n >= 100 && n < 200
    }

    /// True for the 200–299 range: the gateway refused before the engine saw anything.
    pub const fn is_gateway_error(self) -> bool {
        let n = self as u16;
        n >= 200 && n < 300
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

codes! {
    // Replies that succeeded.
    /// PlaceOrder: stock reserved, order awaits payment.
    OrderPlaced = 1 => "ORDER_PLACED",
    /// PlaceOrder with the waitlist flag: no stock now, buyer queued.
    WaitlistJoined = 2 => "WAITLIST_JOINED",
    /// ConfirmPayment: reserved units are sold.
    PaymentConfirmed = 3 => "PAYMENT_CONFIRMED",
    /// FailPayment: the order is closed and its units released.
    PaymentFailed = 4 => "PAYMENT_FAILED",
    /// CancelOrder: the order is closed and its units released.
    OrderCancelled = 5 => "ORDER_CANCELLED",
    /// UpsertSku applied.
    SkuUpserted = 6 => "SKU_UPSERTED",
    /// Restock applied.
    SkuRestocked = 7 => "SKU_RESTOCKED",
    /// Delist applied.
    SkuDelisted = 8 => "SKU_DELISTED",
    /// Tick applied: time moved forward.
    Ticked = 9 => "TICKED",
    /// A reconciliation statement batch was matched.
    StatementApplied = 10 => "STATEMENT_APPLIED",
    /// Query answer: one order.
    OrderInfo = 20 => "ORDER_INFO",
    /// Query answer: one SKU's stock.
    StockInfo = 21 => "STOCK_INFO",
    /// Query answer: a buyer's place on a waitlist.
    WaitlistPosition = 22 => "WAITLIST_POSITION",
    /// Query answer: an order that retired (its final state and key fields).
    RetiredOrderInfo = 23 => "RETIRED_ORDER_INFO",

    // Events.
    /// An order's payment deadline passed; its units were released.
    OrderExpired = 50 => "ORDER_EXPIRED",
    /// Released units went to the head of a waitlist as a new order.
    WaitlistOrderCreated = 51 => "WAITLIST_ORDER_CREATED",
    /// A waitlist entry was dropped: its SKU was delisted, it wants more units than could
    /// still come back from reservations, or its total would overflow at today's price.
    WaitlistDropped = 52 => "WAITLIST_DROPPED",
    /// A closed order retired from the engine's book (not pushed; the feed carries it).
    OrderRetired = 53 => "ORDER_RETIRED",
    /// Reconciliation: money was captured for an order that is not paid here.
    DiscrepancyRefundDue = 60 => "DISCREPANCY_REFUND_DUE",
    /// Reconciliation: captured amount differs from the order total.
    DiscrepancyAmountMismatch = 61 => "DISCREPANCY_AMOUNT_MISMATCH",
    /// Reconciliation: paid here, absent from the closed statement.
    DiscrepancyMissingFromStatement = 62 => "DISCREPANCY_MISSING_FROM_STATEMENT",
    /// Reconciliation: captured but never confirmed here; the engine settled the order.
    DiscrepancySettledFromStatement = 63 => "DISCREPANCY_SETTLED_FROM_STATEMENT",
    /// Reconciliation: the statement names an order retired past the engine's history.
    DiscrepancyBeyondHistory = 64 => "DISCREPANCY_BEYOND_HISTORY",

    // Rejections.
    UnknownSku = 100 => "UNKNOWN_SKU",
    SkuNotListed = 101 => "SKU_NOT_LISTED",
    SaleNotStarted = 102 => "SALE_NOT_STARTED",
    SaleEnded = 103 => "SALE_ENDED",
    PerUserLimit = 104 => "PER_USER_LIMIT",
    OutOfStock = 105 => "OUT_OF_STOCK",
    BadQuantity = 106 => "BAD_QUANTITY",
    BadLineCount = 107 => "BAD_LINE_COUNT",
    DuplicateSku = 108 => "DUPLICATE_SKU",
    WaitlistFull = 109 => "WAITLIST_FULL",
    AlreadyWaitlisted = 110 => "ALREADY_WAITLISTED",
    NotWaitlisted = 111 => "NOT_WAITLISTED",
    UnknownOrder = 112 => "UNKNOWN_ORDER",
    WrongAmount = 113 => "WRONG_AMOUNT",
    AlreadyPaid = 114 => "ALREADY_PAID",
    OrderAlreadyExpired = 115 => "ORDER_ALREADY_EXPIRED",
    OrderAlreadyCancelled = 116 => "ORDER_ALREADY_CANCELLED",
    OrderAlreadyFailed = 117 => "ORDER_ALREADY_FAILED",
    BadSkuDefinition = 118 => "BAD_SKU_DEFINITION",
    StockBelowCommitted = 119 => "STOCK_BELOW_COMMITTED",
    StockOverflow = 120 => "STOCK_OVERFLOW",
    OrderCapacityFull = 121 => "ORDER_CAPACITY_FULL",
    BadStatement = 122 => "BAD_STATEMENT",
    SkuCapacityFull = 123 => "SKU_CAPACITY_FULL",
    /// The request id is older than the client's idempotency window: it cannot be told
    /// apart from a new request, so it is refused rather than risk applying it twice.
    RequestTooOld = 124 => "REQUEST_TOO_OLD",
    /// The order existed but retired and was forgotten (`orders_retired_max`): its history
    /// is in the journal and the feed.
    OrderBeyondHistory = 125 => "ORDER_BEYOND_HISTORY",
    /// The per-user holdings table holds `holdings_max` entries.
    HoldingsCapacityFull = 126 => "HOLDINGS_CAPACITY_FULL",
    /// The waitlists together hold `waitlist_entries_max` buyers.
    WaitlistCapacityFull = 127 => "WAITLIST_CAPACITY_FULL",

    // Protocol and gateway: the request (or the connection) never reached the engine.
    /// A frame's length field is 0, or its body is shorter than its kind needs. Closes.
    FrameTooShort = 200 => "FRAME_TOO_SHORT",
    /// A frame's length field is over the limit (1 MiB). Closes.
    FrameTooLarge = 201 => "FRAME_TOO_LARGE",
    /// A frame kind the server does not know, or one a client may not send. Closes.
    UnknownFrameKind = 202 => "UNKNOWN_FRAME_KIND",
    /// The hello does not start with the protocol's magic number. Closes.
    BadMagic = 203 => "BAD_MAGIC",
    /// The hello names a protocol version this server does not speak. Closes.
    UnsupportedVersion = 204 => "UNSUPPORTED_VERSION",
    /// A frame other than HELLO came before the handshake. Closes.
    HelloRequired = 205 => "HELLO_REQUIRED",
    /// A second HELLO on one connection. Closes.
    DuplicateHello = 206 => "DUPLICATE_HELLO",
    /// Client id 0 is the sequencer's own. Closes.
    BadClientId = 207 => "BAD_CLIENT_ID",
    /// A REQUESTS frame with no requests or more than 4096. Closes.
    BadRequestCount = 208 => "BAD_REQUEST_COUNT",
    /// A frame whose fields do not add up (request headers not tiling the frame, reserved
    /// bytes set in a handshake). Closes.
    MalformedFrame = 209 => "MALFORMED_FRAME",
    /// One request's body is the wrong length for its op or has a bad field; the subject is
    /// the op. Only that request is refused.
    MalformedRequest = 210 => "MALFORMED_REQUEST",
    /// One request names an op that does not exist (or Tick, which is the sequencer's own);
    /// the subject is the op.
    UnknownOp = 211 => "UNKNOWN_OP",
    /// The server has as many connections as it takes. Closes.
    TooManyConnections = 212 => "TOO_MANY_CONNECTIONS",
    /// The server is draining for shutdown (SIGTERM) and takes no new requests; the subject
    /// is the op. Resend to the restarted server or the standby with the same request id.
    ShuttingDown = 213 => "SHUTTING_DOWN",
    /// The client did not read its answers and its unsent bytes passed the limit. Closes
    /// (no ERROR frame: the client is not reading; the server logs the code).
    SlowConsumer = 214 => "SLOW_CONSUMER",
    /// A started frame (or the hello) did not complete within the timeout. Closes.
    FrameTimeout = 215 => "FRAME_TIMEOUT",
    /// The journal failed (see the 300 codes in the log); the server answers nothing more
    /// and exits so a restart can recover what is durable.
    ServerFailed = 216 => "SERVER_FAILED",
    /// This node is a standby: it answers queries only. Send writes to the primary (the
    /// client moves there and resends with the same request id); the subject is the op.
    NotPrimary = 217 => "NOT_PRIMARY",
    /// This node was the primary of an older epoch and has been replaced: it takes no more
    /// writes. Move to the new primary and resend with the same request id.
    Fenced = 218 => "FENCED",
    /// Synchronous replication with `on_standby_loss = "halt"` and no standby attached: no
    /// write can be acknowledged. Retry, or move to the other node.
    StandbyUnavailable = 219 => "STANDBY_UNAVAILABLE",
    /// A pipeline stage saw another journal sequence than the sequencer stamped in the slot:
    /// the server can no longer vouch for its state, so it stops at once (never sent to a
    /// client; a log line, then the process aborts and a restart recovers from the journal).
    SequenceMismatch = 220 => "SEQUENCE_MISMATCH",
    /// A feed subscription asked to start before where this node's feed now begins (its
    /// oldest events were retired, or it began at a snapshot): the FEED_BEGIN frame before
    /// this ERROR says where it begins. Closes.
    FeedTruncated = 221 => "FEED_TRUNCATED",
    /// The feed port has `feed.max_subscribers` subscriptions: try another node (a standby
    /// serves the same feed) or later. Closes.
    FeedSubscribersFull = 222 => "FEED_SUBSCRIBERS_FULL",
    /// This node keeps no feed (`feed.enabled = false`, or snapshots off), or its feed
    /// writer stopped (see the log). Closes.
    FeedUnavailable = 223 => "FEED_UNAVAILABLE",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_are_unique_and_round_trip() {
        let mut numbers = std::collections::BTreeSet::new();
        let mut names = std::collections::BTreeSet::new();
        for &code in Code::ALL {
            assert!(numbers.insert(code.number()), "{code} number reused");
            assert!(names.insert(code.name()), "{code} name reused");
            assert_eq!(Code::from_u16(code.number()), Some(code));
        }
        assert_eq!(Code::from_u16(0), None);
        assert_eq!(Code::from_u16(999), None);
    }

    #[test]
    fn rejection_range() {
        assert!(Code::OutOfStock.is_rejection());
        assert!(!Code::OrderPlaced.is_rejection());
        assert!(!Code::OrderExpired.is_rejection());
    }
}
