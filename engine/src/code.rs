//! Every outcome the engine can produce has one stable numeric code and one name. Clients,
//! logs and `docs/ERRORS.md` all use these; a number is never reused for something else.
//!
//! Ranges: 1–49 replies that succeeded, 50–99 events (pushed, not asked for), 100–199
//! rejections by business rules. 200 and up are reserved for the gateway and the journal.

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

    // Events.
    /// An order's payment deadline passed; its units were released.
    OrderExpired = 50 => "ORDER_EXPIRED",
    /// Released units went to the head of a waitlist as a new order.
    WaitlistOrderCreated = 51 => "WAITLIST_ORDER_CREATED",
    /// A waitlist entry was dropped: its SKU was delisted, it wants more units than could
    /// still come back from reservations, or its total would overflow at today's price.
    WaitlistDropped = 52 => "WAITLIST_DROPPED",
    /// Reconciliation: money was captured for an order that is not paid here.
    DiscrepancyRefundDue = 60 => "DISCREPANCY_REFUND_DUE",
    /// Reconciliation: captured amount differs from the order total.
    DiscrepancyAmountMismatch = 61 => "DISCREPANCY_AMOUNT_MISMATCH",
    /// Reconciliation: paid here, absent from the closed statement.
    DiscrepancyMissingFromStatement = 62 => "DISCREPANCY_MISSING_FROM_STATEMENT",
    /// Reconciliation: captured but never confirmed here; the engine settled the order.
    DiscrepancySettledFromStatement = 63 => "DISCREPANCY_SETTLED_FROM_STATEMENT",

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
