//! What the engine says back: one `Outcome` per command (the reply to its sender), any number
//! of `Event`s (pushed to others: expiries, waitlist hand-offs, reconciliation findings), and
//! one `Answer` per query.

use crate::code::Code;
use crate::command::OrderLine;
use crate::ids::{ClientId, Money, OrderId, RequestId, SkuId, TimestampNs, Units, UserId};
use crate::order::OrderState;
use crate::retired::RetiredOrder;

/// The reply to one command. Kept small (it is stored in the idempotency window).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Outcome {
    OrderPlaced {
        order: OrderId,
        total: Money,
        deadline_ns: TimestampNs,
    },
    /// `position` is 1 for the head of the list; `units_ahead` counts the units wanted by
    /// everyone in front.
    WaitlistJoined {
        sku: SkuId,
        position: u32,
        units_ahead: Units,
    },
    PaymentConfirmed {
        order: OrderId,
    },
    PaymentFailed {
        order: OrderId,
    },
    OrderCancelled {
        order: OrderId,
    },
    SkuUpserted {
        sku: SkuId,
    },
    SkuRestocked {
        sku: SkuId,
        available: Units,
    },
    SkuDelisted {
        sku: SkuId,
        waitlist_dropped: u32,
    },
    Ticked {
        now_ns: TimestampNs,
    },
    StatementApplied {
        entries: u32,
        matched: u32,
        discrepancies: u32,
    },
    /// Refused; nothing changed. `subject` names what was wrong: the SKU for SKU, stock,
    /// window, limit, listing and waitlist codes; the order for order codes; the expected
    /// total for `WRONG_AMOUNT`; the count for `BAD_LINE_COUNT` and `BAD_STATEMENT`; the
    /// request id for `REQUEST_TOO_OLD`; otherwise 0. See docs/ENGINE.md.
    Rejected {
        code: Code,
        subject: u64,
    },
}

impl Outcome {
    pub fn code(&self) -> Code {
        match self {
            Outcome::OrderPlaced { .. } => Code::OrderPlaced,
            Outcome::WaitlistJoined { .. } => Code::WaitlistJoined,
            Outcome::PaymentConfirmed { .. } => Code::PaymentConfirmed,
            Outcome::PaymentFailed { .. } => Code::PaymentFailed,
            Outcome::OrderCancelled { .. } => Code::OrderCancelled,
            Outcome::SkuUpserted { .. } => Code::SkuUpserted,
            Outcome::SkuRestocked { .. } => Code::SkuRestocked,
            Outcome::SkuDelisted { .. } => Code::SkuDelisted,
            Outcome::Ticked { .. } => Code::Ticked,
            Outcome::StatementApplied { .. } => Code::StatementApplied,
            Outcome::Rejected { code, .. } => *code,
        }
    }

    pub fn rejected(code: Code, subject: u64) -> Outcome {
        debug_assert!(code.is_rejection());
        Outcome::Rejected { code, subject }
    }
}

/// Something that happened as a consequence of a command, addressed to whoever it concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Event {
    OrderExpired {
        order: OrderId,
        client: ClientId,
        user: UserId,
    },
    /// The buyer's waitlist entry (made by `client`'s `request`) became this order.
    WaitlistOrderCreated {
        client: ClientId,
        request: RequestId,
        user: UserId,
        sku: SkuId,
        qty: u32,
        order: OrderId,
        total: Money,
        deadline_ns: TimestampNs,
    },
    WaitlistDropped {
        client: ClientId,
        request: RequestId,
        user: UserId,
        sku: SkuId,
    },
    Discrepancy(Discrepancy),
    /// A closed order left the book `retire_after` after it closed; what is kept of it is a
    /// retired record. Addressed to nobody (the feed carries it).
    OrderRetired {
        order: OrderId,
        state: OrderState,
    },
}

impl Event {
    pub fn code(&self) -> Code {
        match self {
            Event::OrderExpired { .. } => Code::OrderExpired,
            Event::WaitlistOrderCreated { .. } => Code::WaitlistOrderCreated,
            Event::WaitlistDropped { .. } => Code::WaitlistDropped,
            Event::Discrepancy(d) => d.kind.code(),
            Event::OrderRetired { .. } => Code::OrderRetired,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Discrepancy {
    pub kind: DiscrepancyKind,
    pub order: OrderId,
    pub payment_ref: u64,
    /// What surge expected to be captured (the order total), 0 if the order is unknown.
    pub expected: Money,
    /// What the statement says was captured, 0 if absent from it.
    pub captured: Money,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum DiscrepancyKind {
    /// Captured, but the order is expired, cancelled, failed, unknown or was captured twice.
    RefundDue,
    AmountMismatch,
    MissingFromStatement,
    /// Captured but never confirmed here: the engine settled the order (reserved → sold).
    SettledFromStatement,
    /// The order retired and was forgotten (past `orders_retired_max`): the engine cannot
    /// tell; settle it against the order history.
    BeyondHistory,
}

impl DiscrepancyKind {
    pub fn code(self) -> Code {
        match self {
            DiscrepancyKind::RefundDue => Code::DiscrepancyRefundDue,
            DiscrepancyKind::AmountMismatch => Code::DiscrepancyAmountMismatch,
            DiscrepancyKind::MissingFromStatement => Code::DiscrepancyMissingFromStatement,
            DiscrepancyKind::SettledFromStatement => Code::DiscrepancySettledFromStatement,
            DiscrepancyKind::BeyondHistory => Code::DiscrepancyBeyondHistory,
        }
    }
}

/// Where `Engine::apply` writes: owned by the caller and reused, so the hot path allocates
/// nothing unless one command has more than `OUTPUT_EVENTS_KEPT` events (a mass expiry;
/// retirement is spread out for this), and that room is given back at the next use.
#[derive(Clone, Debug)]
pub struct Output {
    pub outcome: Outcome,
    pub events: Vec<Event>,
    /// The outcome is the original one, repeated for a retried request id: the command
    /// changed nothing this time (the feed says nothing of it).
    pub repeated: bool,
}

/// Events an output holds room for from the start, and keeps room for after a burst (a
/// mass expiry) needed more: a ring has an output per slot, and every slot keeping the
/// largest burst it ever saw would make memory grow for the whole day.
pub const OUTPUT_EVENTS_KEPT: usize = 8;

impl Default for Output {
    fn default() -> Self {
        Output {
            outcome: Outcome::Ticked { now_ns: 0 },
            events: Vec::with_capacity(OUTPUT_EVENTS_KEPT),
            repeated: false,
        }
    }
}

/// The answer to a query.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Answer {
    Order(OrderView),
    /// An order that retired: its final state and key fields.
    RetiredOrder(RetiredOrder),
    Stock(StockView),
    WaitlistPosition(WaitlistView),
    Rejected {
        code: Code,
        subject: u64,
    },
}

impl Answer {
    pub fn code(&self) -> Code {
        match self {
            Answer::Order(_) => Code::OrderInfo,
            Answer::RetiredOrder(_) => Code::RetiredOrderInfo,
            Answer::Stock(_) => Code::StockInfo,
            Answer::WaitlistPosition(_) => Code::WaitlistPosition,
            Answer::Rejected { code, .. } => *code,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct OrderView {
    pub order: OrderId,
    pub client: ClientId,
    pub request: RequestId,
    pub user: UserId,
    pub state: OrderState,
    pub total: Money,
    pub created_ns: TimestampNs,
    pub deadline_ns: TimestampNs,
    pub payment_ref: u64,
    pub lines: Vec<OrderLine>,
}

#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StockView {
    pub sku: SkuId,
    pub price: Money,
    pub stocked: Units,
    pub available: Units,
    pub reserved: Units,
    pub sold: Units,
    pub per_user_limit: u32,
    pub listed: bool,
    pub waitlist_len: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct WaitlistView {
    pub sku: SkuId,
    pub user: UserId,
    pub qty: u32,
    /// 1 for the head of the list.
    pub position: u32,
    pub units_ahead: Units,
    /// Expected wait from the SKU's recent release rate; `None` until there is a rate.
    pub eta_ns: Option<u64>,
}

impl Outcome {
    /// Feed this outcome to the rolling hash: its code, then its fields in declaration order.
    pub fn feed(&self, hash: &mut crate::rolling_hash::RollingHash) {
        hash.word(u64::from(self.code().number()));
        match *self {
            Outcome::OrderPlaced {
                order,
                total,
                deadline_ns,
            } => hash.words(&[order.0, total, deadline_ns]),
            Outcome::WaitlistJoined {
                sku,
                position,
                units_ahead,
            } => hash.words(&[sku.0, u64::from(position), units_ahead]),
            Outcome::PaymentConfirmed { order }
            | Outcome::PaymentFailed { order }
            | Outcome::OrderCancelled { order } => hash.word(order.0),
            Outcome::SkuUpserted { sku } => hash.word(sku.0),
            Outcome::SkuRestocked { sku, available } => hash.words(&[sku.0, available]),
            Outcome::SkuDelisted {
                sku,
                waitlist_dropped,
            } => hash.words(&[sku.0, u64::from(waitlist_dropped)]),
            Outcome::Ticked { now_ns } => hash.word(now_ns),
            Outcome::StatementApplied {
                entries,
                matched,
                discrepancies,
            } => hash.words(&[entries.into(), matched.into(), discrepancies.into()]),
            Outcome::Rejected { code: _, subject } => hash.word(subject),
        }
    }
}

impl Event {
    /// Feed this event to the rolling hash: its code, then its fields in declaration order.
    pub fn feed(&self, hash: &mut crate::rolling_hash::RollingHash) {
        hash.word(u64::from(self.code().number()));
        match *self {
            Event::OrderExpired {
                order,
                client,
                user,
            } => hash.words(&[order.0, client.0, user.0]),
            Event::WaitlistOrderCreated {
                client,
                request,
                user,
                sku,
                qty,
                order,
                total,
                deadline_ns,
            } => hash.words(&[
                client.0,
                request.0,
                user.0,
                sku.0,
                qty.into(),
                order.0,
                total,
                deadline_ns,
            ]),
            Event::WaitlistDropped {
                client,
                request,
                user,
                sku,
            } => hash.words(&[client.0, request.0, user.0, sku.0]),
            Event::Discrepancy(d) => {
                hash.words(&[d.order.0, d.payment_ref, d.expected, d.captured])
            }
            Event::OrderRetired { order, state } => hash.words(&[order.0, state as u64]),
        }
    }
}
