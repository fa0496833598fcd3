//! Checking what clients were told against what a node holds: every acknowledged order is
//! there, once, made by the client and request it was acknowledged to, in the state its
//! acks left it; no two orders share a (client, request); and the hot SKU's units add up,
//! every sold unit an acknowledged payment. `surge demo`, `surge drill` and the replication
//! tests use it after a restart or a failover. An order that retired is checked from its
//! retired record (final state, who made it, its first line); one retired past the node's
//! history cannot be checked and is counted apart, never as lost.

use std::collections::{BTreeMap, HashMap};

use engine::wire::{Operation, Reply};
use engine::{Answer, ClientId, OrderState, Query, RequestId, SkuId};
use loadgen::client::{Client, OrderLookup};
use loadgen::open_loop::Ack;
use loadgen::report::thousands;

/// Order ids past the highest acknowledged one that are looked at for duplicates (orders
/// whose answers were lost in a crash, or resends that would have made a second order).
const BEYOND_ACKED: u64 = 4096;

pub fn stock_of(
    addr: std::net::SocketAddr,
    client: ClientId,
    sku: SkuId,
) -> anyhow::Result<engine::outcome::StockView> {
    let mut c = Client::connect(addr, client)?;
    match c.call(Operation::Query(Query::Stock { sku }))?.reply {
        Reply::Answer(Answer::Stock(s)) => Ok(s),
        other => anyhow::bail!("stock of {sku:?}: {other:?}"),
    }
}

/// The (client, request) that created an order, and the state its acks left it in.
type Expected = (Option<(u64, u64)>, Option<OrderState>);

pub struct Verdict {
    pub summary: String,
    pub problems: Vec<String>,
    /// Orders sharing a (client, request) with another.
    pub duplicates: u64,
    /// Acknowledged orders missing.
    pub lost: u64,
    /// Acknowledged orders retired past the node's history (not checkable).
    pub beyond_history: u64,
}

/// What a node says of one order.
enum Found {
    Order(Seen),
    /// Retired and forgotten: it existed.
    BeyondHistory,
    Missing,
}

/// An order's key fields, from a full order or a retired record.
struct Seen {
    client: ClientId,
    request: RequestId,
    state: OrderState,
    /// Units of `sku` it holds; `None` when not known (a retired order with several lines
    /// keeps only its first).
    units_of: Option<u64>,
}

/// Check every acknowledged answer against the restarted primary: each order it created is
/// there with the same client and request, each payment, cancel and failure left the order in
/// that state, and the hot SKU's units add up, with every unit sold belonging to an
/// acknowledged payment.
/// Requests sent and never answered: what they may have left on the node checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// Nothing: their effects were cut (a failback) or never made (a crash before the
    /// journal). Every change of state must be an acknowledged one.
    LeftNothing,
    /// They may have been applied without their answer reaching the client (a primary that
    /// held answers past its lease deadline, and then led again): an order may be further on
    /// than its acks say, and units may be sold by payments nobody was told of; the stock
    /// must still add up (no oversell).
    MayBeApplied,
}

pub fn verify(
    addr: std::net::SocketAddr,
    client: ClientId,
    sku: SkuId,
    acks: &[Ack],
) -> anyhow::Result<Verdict> {
    verify_with(addr, client, sku, acks, Unanswered::LeftNothing)
}

pub fn verify_with(
    addr: std::net::SocketAddr,
    client: ClientId,
    sku: SkuId,
    acks: &[Ack],
    unanswered: Unanswered,
) -> anyhow::Result<Verdict> {
    // What each order must look like, from its acks: who created it, and its last change.
    let mut expected: BTreeMap<u64, Expected> = BTreeMap::new();
    for ack in acks {
        let Some(order) = ack.order_id else { continue };
        let e = expected.entry(order).or_default();
        match ack.kind.as_str() {
            "place_order" | "waitlist_order" => e.0 = Some((ack.client_id, ack.request_id)),
            "confirm_payment" => e.1 = Some(OrderState::Paid),
            "cancel_order" => e.1 = Some(OrderState::Cancelled),
            "fail_payment" => e.1 = Some(OrderState::PaymentFailed),
            _ => {}
        }
    }
    let orders: Vec<u64> = expected.keys().copied().collect();
    let views = query_orders(addr, client, &orders, sku)?;
    let mut problems = Vec::new();
    let mut paid_units = 0u64;
    let mut paid_units_exact = true;
    let mut beyond_history = 0;
    for (order, found) in orders.iter().zip(&views) {
        let (origin, state) = expected[order];
        let view = match found {
            Found::Order(view) => view,
            Found::BeyondHistory => {
                beyond_history += 1;
                continue;
            }
            Found::Missing => {
                problems.push(format!("order {order} is missing"));
                continue;
            }
        };
        if let Some((c, r)) = origin {
            if (view.client, view.request) != (ClientId(c), RequestId(r)) {
                problems.push(format!(
                    "order {order} belongs to {:?}/{:?}, acked to {c}/{r}",
                    view.client, view.request
                ));
            }
        }
        match state {
            Some(s) if view.state != s => {
                problems.push(format!("order {order} is {:?}, acked {s:?}", view.state))
            }
            None if unanswered == Unanswered::LeftNothing
                && !matches!(view.state, OrderState::PendingPayment | OrderState::Expired) =>
            {
                problems.push(format!(
                    "order {order} is {:?} with no acked change",
                    view.state
                ))
            }
            _ => {}
        }
        if view.state == OrderState::Paid {
            match view.units_of {
                Some(units) => paid_units += units,
                None => paid_units_exact = false,
            }
        }
    }
    paid_units_exact &= beyond_history == 0;
    let lost = problems
        .iter()
        .filter(|p| p.ends_with("is missing"))
        .count() as u64;
    // Every order up to past the highest acknowledged: none may repeat a (client, request).
    let last = orders.last().copied().unwrap_or(0) + BEYOND_ACKED;
    let all: Vec<u64> = (1..=last).collect();
    let mut origins: HashMap<(ClientId, RequestId), u64> = HashMap::new();
    let mut duplicates = 0;
    for (order, found) in all.iter().zip(query_orders(addr, client, &all, sku)?) {
        let Found::Order(view) = found else { continue };
        if let Some(first) = origins.insert((view.client, view.request), *order) {
            duplicates += 1;
            problems.push(format!(
                "orders {first} and {order} were both made by {:?}/{:?}",
                view.client, view.request
            ));
        }
    }
    let s = stock_of(addr, client, sku)?;
    if s.stocked != s.available + s.reserved + s.sold {
        problems.push(format!("stock does not add up: {s:?}"));
    }
    // Payments the node no longer details, or that nobody was told of, can only be bounded.
    let sold_ok = if paid_units_exact && unanswered == Unanswered::LeftNothing {
        s.sold == paid_units
    } else {
        s.sold >= paid_units
    };
    if !sold_ok {
        problems.push(format!(
            "{} units sold, acknowledged payments cover {paid_units}",
            s.sold
        ));
    }
    let beyond = if beyond_history > 0 {
        format!(
            " ({} retired past the node's history, not checkable)",
            thousands(beyond_history)
        )
    } else {
        String::new()
    };
    let summary = format!(
        "{} acknowledged answers on {} orders{beyond} checked against the rebuilt state: {} problem(s)\n             \
         stock: {} stocked = {} available + {} reserved + {} sold, every sold unit an acknowledged payment",
        thousands(acks.len() as u64),
        thousands(orders.len() as u64),
        problems.len(),
        thousands(s.stocked),
        thousands(s.available),
        thousands(s.reserved),
        thousands(s.sold),
    );
    Ok(Verdict {
        summary,
        problems,
        duplicates,
        lost,
        beyond_history,
    })
}

/// Ask for many orders, pipelined; what each shows of `sku`.
fn query_orders(
    addr: std::net::SocketAddr,
    client: ClientId,
    orders: &[u64],
    sku: SkuId,
) -> anyhow::Result<Vec<Found>> {
    let mut c = Client::connect(addr, client)?;
    let found = c
        .query_orders(orders)?
        .into_iter()
        .map(|lookup| match lookup {
            OrderLookup::Held(view) => Found::Order(Seen {
                client: view.client,
                request: view.request,
                state: view.state,
                units_of: Some(
                    view.lines
                        .iter()
                        .filter(|l| l.sku == sku)
                        .map(|l| u64::from(l.qty))
                        .sum(),
                ),
            }),
            OrderLookup::Retired(r) => Found::Order(Seen {
                client: r.client,
                request: r.request,
                state: r.state,
                units_of: match (r.line_count, r.first_sku == sku) {
                    (1, true) => Some(u64::from(r.first_qty)),
                    (1, false) => Some(0),
                    _ => None,
                },
            }),
            OrderLookup::BeyondHistory => Found::BeyondHistory,
            OrderLookup::Other(_) => Found::Missing,
        });
    Ok(found.collect())
}
