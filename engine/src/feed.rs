//! What the feed says about one applied command: the events a consumer outside the engine
//! (fulfilment, notices, the order-history database) needs, each complete enough that
//! nobody has to ask back. Derived after `Engine::apply` from the request, its output and
//! the engine's state then, so the same journal gives the same feed on every node.
//!
//! Refused commands change nothing and say nothing here; neither do retried request ids
//! (their original outcome is repeated), nor Ticks and statement batches by themselves (their
//! expiries, retirements and discrepancies do).

use crate::code::Code;
use crate::command::{Command, OrderLine, Request, SaleWindow};
use crate::ids::{ClientId, Money, OrderId, RequestId, SkuId, TimestampNs, Units, UserId};
use crate::order::{Order, OrderState};
use crate::outcome::{Discrepancy, Event, Outcome, Output};
use crate::retired::RetiredOrder;
use crate::sku::Sku;
use crate::state_machine::Engine;

/// One event of the feed: the journal sequence of the command that caused it, the engine's
/// time then, and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedItem {
    pub seq: u64,
    pub at_ns: TimestampNs,
    pub event: FeedEvent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedEvent {
    /// An order was placed, paid, failed, cancelled or expired, or a waitlist entry became
    /// one (`code` says which: `ORDER_PLACED`, `PAYMENT_CONFIRMED`, `PAYMENT_FAILED`,
    /// `ORDER_CANCELLED`, `ORDER_EXPIRED`, `WAITLIST_ORDER_CREATED`); the order as it is now.
    Order {
        code: Code,
        order: OrderImage,
    },
    /// A closed order left the book; what is kept of it.
    OrderRetired(RetiredOrder),
    WaitlistJoined {
        client: ClientId,
        request: RequestId,
        user: UserId,
        sku: SkuId,
        qty: u32,
        position: u32,
        units_ahead: Units,
    },
    WaitlistDropped {
        client: ClientId,
        request: RequestId,
        user: UserId,
        sku: SkuId,
    },
    Discrepancy(Discrepancy),
    /// A SKU was created or changed, restocked or delisted (`SKU_UPSERTED`, `SKU_RESTOCKED`,
    /// `SKU_DELISTED`); the SKU as it is now.
    Sku {
        code: Code,
        sku: SkuImage,
    },
}

impl FeedEvent {
    /// The event's type on the wire: the engine code it is named after.
    pub fn code(&self) -> Code {
        match self {
            FeedEvent::Order { code, .. } | FeedEvent::Sku { code, .. } => *code,
            FeedEvent::OrderRetired(_) => Code::OrderRetired,
            FeedEvent::WaitlistJoined { .. } => Code::WaitlistJoined,
            FeedEvent::WaitlistDropped { .. } => Code::WaitlistDropped,
            FeedEvent::Discrepancy(d) => d.kind.code(),
        }
    }

    /// The event's name in JSON (`surge feed --json`) and docs/FEED.md.
    pub fn type_name(&self) -> &'static str {
        match self.code() {
            Code::OrderPlaced => "order_placed",
            Code::PaymentConfirmed => "order_paid",
            Code::PaymentFailed => "order_payment_failed",
            Code::OrderCancelled => "order_cancelled",
            Code::OrderExpired => "order_expired",
            Code::WaitlistOrderCreated => "waitlist_order_created",
            Code::OrderRetired => "order_retired",
            Code::WaitlistJoined => "waitlist_joined",
            Code::WaitlistDropped => "waitlist_dropped",
            Code::SkuUpserted => "sku_upserted",
            Code::SkuRestocked => "sku_restocked",
            Code::SkuDelisted => "sku_delisted",
            _ => "discrepancy",
        }
    }
}

/// An order in full, as the feed carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderImage {
    pub id: OrderId,
    pub client: ClientId,
    pub request: RequestId,
    pub user: UserId,
    pub total: Money,
    pub created_ns: TimestampNs,
    pub deadline_ns: TimestampNs,
    /// 0 while unpaid.
    pub paid_ns: TimestampNs,
    pub payment_ref: u64,
    /// 0 while open.
    pub closed_ns: TimestampNs,
    pub state: OrderState,
    pub lines: Vec<OrderLine>,
}

impl OrderImage {
    pub fn of(order: &Order) -> OrderImage {
        OrderImage {
            id: order.id,
            client: order.client,
            request: order.request,
            user: order.user,
            total: order.total,
            created_ns: order.created_ns,
            deadline_ns: order.deadline_ns,
            paid_ns: order.paid_ns,
            payment_ref: order.payment_ref,
            closed_ns: order.closed_ns,
            state: order.state,
            lines: order.lines.as_slice().to_vec(),
        }
    }
}

/// A SKU, as the feed carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkuImage {
    pub id: SkuId,
    pub price: Money,
    pub per_user_limit: u32,
    pub sale_window: Option<SaleWindow>,
    pub listed: bool,
    pub stocked: Units,
    pub available: Units,
    pub reserved: Units,
    pub sold: Units,
    /// Buyers waiting.
    pub waitlist: u32,
}

impl SkuImage {
    pub fn of(sku: &Sku) -> SkuImage {
        SkuImage {
            id: sku.id,
            price: sku.price,
            per_user_limit: sku.per_user_limit,
            sale_window: sku.sale_window,
            listed: sku.listed,
            stocked: sku.stocked,
            available: sku.available,
            reserved: sku.reserved,
            sold: sku.sold,
            waitlist: sku.waitlist.len(),
        }
    }
}

/// The feed's events for `request`, just applied by `engine` with `output`, appended to
/// `out` in the order they happened: the command's own change first, then its consequences.
pub fn derive(engine: &Engine, request: &Request, output: &Output, out: &mut Vec<FeedEvent>) {
    let order = |code, id: OrderId| order_event(engine, code, id);
    let sku = |code, id: SkuId| {
        engine.catalog().get(id).map(|s| FeedEvent::Sku {
            code,
            sku: SkuImage::of(s),
        })
    };
    // A retried request id repeats its original outcome and changes nothing: the feed told
    // of it when it happened (only what advancing the clock did is new).
    let outcome = match output.repeated {
        true => Outcome::Ticked { now_ns: 0 },
        false => output.outcome,
    };
    let own = match outcome {
        Outcome::OrderPlaced { order: id, .. } => order(Code::OrderPlaced, id),
        Outcome::PaymentConfirmed { order: id } => order(Code::PaymentConfirmed, id),
        Outcome::PaymentFailed { order: id } => order(Code::PaymentFailed, id),
        Outcome::OrderCancelled { order: id } => order(Code::OrderCancelled, id),
        Outcome::WaitlistJoined {
            sku,
            position,
            units_ahead,
        } => {
            let (user, qty) = match &request.command {
                Command::PlaceOrder { user, lines, .. } => {
                    (*user, lines.iter().map(|l| l.qty).sum())
                }
                _ => (UserId(0), 0),
            };
            Some(FeedEvent::WaitlistJoined {
                client: request.client,
                request: request.request,
                user,
                sku,
                qty,
                position,
                units_ahead,
            })
        }
        Outcome::SkuUpserted { sku: id } => sku(Code::SkuUpserted, id),
        Outcome::SkuRestocked { sku: id, .. } => sku(Code::SkuRestocked, id),
        Outcome::SkuDelisted { sku: id, .. } => sku(Code::SkuDelisted, id),
        Outcome::Ticked { .. } | Outcome::StatementApplied { .. } | Outcome::Rejected { .. } => {
            None
        }
    };
    out.extend(own);
    for event in &output.events {
        let derived = match *event {
            Event::OrderExpired { order: id, .. } => order(Code::OrderExpired, id),
            Event::WaitlistOrderCreated { order: id, .. } => order(Code::WaitlistOrderCreated, id),
            Event::WaitlistDropped {
                client,
                request,
                user,
                sku,
            } => Some(FeedEvent::WaitlistDropped {
                client,
                request,
                user,
                sku,
            }),
            Event::Discrepancy(d) => Some(FeedEvent::Discrepancy(d)),
            Event::OrderRetired { order: id, .. } => engine
                .retired()
                .get(id)
                .copied()
                .map(FeedEvent::OrderRetired),
        };
        out.extend(derived);
    }
}

/// The order as it is after the command; one that already retired within the same command
/// (a zero `retire_after`) from its retired record, with its first line only.
fn order_event(engine: &Engine, code: Code, id: OrderId) -> Option<FeedEvent> {
    let order = match engine.orders().get(id) {
        Some(order) => OrderImage::of(order),
        None => {
            let r = engine.retired().get(id)?;
            OrderImage {
                id: r.id,
                client: r.client,
                request: r.request,
                user: r.user,
                total: r.total,
                created_ns: r.created_ns,
                deadline_ns: 0,
                paid_ns: if r.state == OrderState::Paid {
                    r.closed_ns
                } else {
                    0
                },
                payment_ref: r.payment_ref,
                closed_ns: r.closed_ns,
                state: r.state,
                lines: vec![OrderLine {
                    sku: r.first_sku,
                    qty: r.first_qty,
                }],
            }
        }
    };
    Some(FeedEvent::Order { code, order })
}
