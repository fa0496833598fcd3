//! The commands the engine applies (journaled, replayed) and the queries it answers (not
//! journaled, never change state). Plain data: rkyv archives them for the journal.

use crate::ids::{ClientId, Money, OrderId, RequestId, SkuId, TimestampNs, Units, UserId};

/// One sequenced input: who asked, their request id, and what for. `(client, request)` is the
/// idempotency key for every command but `Tick`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Request {
    pub client: ClientId,
    pub request: RequestId,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Command {
    /// Create a SKU or change one. `stock` is the new total ever stocked; it may not drop
    /// below the units already reserved or sold.
    UpsertSku(SkuSpec),
    /// Add units to a SKU's stock (they go to its waitlist first).
    Restock { sku: SkuId, units: Units },
    /// Stop selling a SKU: new orders are refused and its waitlist is dropped. Open orders
    /// can still be paid or cancelled. `UpsertSku` lists it again.
    Delist { sku: SkuId },
    /// Reserve every line or none; optionally queue on the waitlist when stock is gone.
    PlaceOrder {
        user: UserId,
        lines: Vec<OrderLine>,
        join_waitlist: bool,
    },
    /// The payment provider captured `amount` for `order`.
    ConfirmPayment {
        order: OrderId,
        amount: Money,
        payment_ref: u64,
    },
    /// The payment provider declined; the units go back.
    FailPayment { order: OrderId },
    /// The buyer or the shop cancelled an unpaid order; the units go back.
    CancelOrder { order: OrderId },
    /// One batch of the payment provider's statement. `closes_through_ns`, on the last batch,
    /// closes the statement: every order paid at or before that instant and not seen in it is
    /// reported missing.
    StatementBatch {
        entries: Vec<StatementEntry>,
        closes_through_ns: Option<TimestampNs>,
    },
    /// Carries time forward when no other command does, so deadlines expire.
    Tick,
}

#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SkuSpec {
    pub sku: SkuId,
    pub price: Money,
    pub stock: Units,
    /// Most units one user may hold (open + paid + waitlisted); 0 means no limit.
    pub per_user_limit: u32,
    pub sale_window: Option<SaleWindow>,
}

/// Orders are accepted for `start_ns <= now < end_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SaleWindow {
    pub start_ns: TimestampNs,
    pub end_ns: TimestampNs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct OrderLine {
    pub sku: SkuId,
    pub qty: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StatementEntry {
    pub payment_ref: u64,
    pub order: OrderId,
    pub amount: Money,
    pub status: StatementStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum StatementStatus {
    /// The provider took the money.
    Captured,
    /// The provider declined or reversed the payment.
    Declined,
}

/// Read-only questions. They see the state as of the last applied command and change nothing
/// (not even the clock), so they are never journaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Query {
    Order { order: OrderId },
    Stock { sku: SkuId },
    WaitlistPosition { sku: SkuId, user: UserId },
}
