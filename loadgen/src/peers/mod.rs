//! The systems surge is compared with, driven by the same generator and the same workload:
//! Redis 7 (a Lua stock-lock-and-order script called by EVALSHA) and PostgreSQL 15 (a
//! conditional `UPDATE … WHERE available >= qty` plus the order `INSERT`, one transaction
//! per request). Each speaks its own protocol; both answer with a code from docs/ERRORS.md
//! and a few numbers, which `reply` turns into the same replies surge gives, so the traffic
//! reacts to them the same way.
//!
//! What the peers implement: catalog upserts, one-line orders with per-user limits, payment,
//! payment failure, cancel, and the stock and order queries, which is everything the
//! `flash-sale` workload sends except waitlist joins (a peer answers `OUT_OF_STOCK`) and
//! expiry (nothing expires). Other requests are refused by the encoder with a clear error.

pub mod postgres;
pub mod redis;

use engine::outcome::{OrderView, StockView};
use engine::wire::{Operation, Reply};
use engine::{
    Answer, ClientId, Code, Command, OrderId, OrderLine, OrderState, Outcome, Query, RequestId,
    SkuId, UserId,
};

/// What a peer needs to remember about a request to turn its answer into a reply.
#[derive(Clone, Copy, Debug)]
pub enum Sent {
    Upsert(SkuId),
    Place,
    Pay(OrderId),
    Fail(OrderId),
    Cancel(OrderId),
    Stock(SkuId),
    Order(OrderId),
}

/// A peer's call: which script or function, and its integer arguments.
pub struct Call {
    pub sent: Sent,
    pub name: &'static str,
    pub args: Vec<u64>,
}

/// The order states as the peers store them.
const PENDING: u64 = 1;
const CANCELLED: u64 = 3;
const FAILED: u64 = 4;

pub fn call(operation: &Operation) -> anyhow::Result<Call> {
    let call = |sent, name, args| Call { sent, name, args };
    Ok(match operation {
        Operation::Command(Command::UpsertSku(spec)) => call(
            Sent::Upsert(spec.sku),
            "upsert",
            vec![
                spec.sku.0,
                spec.price,
                spec.stock,
                u64::from(spec.per_user_limit),
            ],
        ),
        Operation::Command(Command::PlaceOrder { user, lines, .. }) => {
            let [OrderLine { sku, qty }] = lines.as_slice() else {
                anyhow::bail!("the peers take one-line orders only (got {})", lines.len());
            };
            call(Sent::Place, "place", vec![user.0, sku.0, u64::from(*qty)])
        }
        Operation::Command(Command::ConfirmPayment {
            order,
            amount,
            payment_ref,
        }) => call(
            Sent::Pay(*order),
            "pay",
            vec![order.0, *amount, *payment_ref],
        ),
        Operation::Command(Command::FailPayment { order }) => {
            call(Sent::Fail(*order), "release", vec![order.0, FAILED])
        }
        Operation::Command(Command::CancelOrder { order }) => {
            call(Sent::Cancel(*order), "release", vec![order.0, CANCELLED])
        }
        Operation::Query(Query::Stock { sku }) => call(Sent::Stock(*sku), "stock", vec![sku.0]),
        Operation::Query(Query::Order { order }) => {
            call(Sent::Order(*order), "order", vec![order.0])
        }
        other => anyhow::bail!("the peers do not implement {other:?}"),
    })
}

/// A peer's answer — `[code, values…]` — as the reply surge would give.
pub fn reply(sent: Sent, answer: &[i64]) -> Reply {
    let code = answer.first().copied().unwrap_or(-1);
    let v = |i: usize| answer.get(i + 1).copied().unwrap_or(0).max(0) as u64;
    if code != 0 {
        let code = u16::try_from(code)
            .ok()
            .and_then(Code::from_u16)
            .unwrap_or(Code::ServerFailed);
        return Reply::Rejected { code, subject: 0 };
    }
    match sent {
        Sent::Upsert(sku) => Reply::Outcome(Outcome::SkuUpserted { sku }),
        Sent::Place => Reply::Outcome(Outcome::OrderPlaced {
            order: OrderId(v(0)),
            total: v(1),
            deadline_ns: 0,
        }),
        Sent::Pay(order) => Reply::Outcome(Outcome::PaymentConfirmed { order }),
        Sent::Fail(order) => Reply::Outcome(Outcome::PaymentFailed { order }),
        Sent::Cancel(order) => Reply::Outcome(Outcome::OrderCancelled { order }),
        Sent::Stock(sku) => Reply::Answer(Answer::Stock(StockView {
            sku,
            price: v(0),
            stocked: v(1),
            available: v(2),
            reserved: v(3),
            sold: v(4),
            per_user_limit: v(5) as u32,
            listed: true,
            waitlist_len: 0,
        })),
        Sent::Order(order) => Reply::Answer(Answer::Order(OrderView {
            order,
            client: ClientId(0),
            request: RequestId(0),
            user: UserId(v(2)),
            state: match v(0) {
                PENDING => OrderState::PendingPayment,
                2 => OrderState::Paid,
                CANCELLED => OrderState::Cancelled,
                FAILED => OrderState::PaymentFailed,
                _ => OrderState::Expired,
            },
            total: v(1),
            created_ns: 0,
            deadline_ns: 0,
            payment_ref: 0,
            lines: vec![OrderLine {
                sku: SkuId(v(3)),
                qty: v(4) as u32,
            }],
        })),
    }
}
