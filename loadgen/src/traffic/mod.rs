//! What the open-loop generator sends: the workloads (`flash-sale`, `mixed`, `reconcile`) as
//! request streams that react to answers. Each connection gets its own seeded `Traffic`; the
//! catalog (and any state a workload needs first) is set up once before the clock starts.
//!
//! A stream is a function of its seed and of the answers it gets: the arrivals (who buys what)
//! and each order's fate (pay, fail, cancel, walk away, and when) are drawn from seeded
//! generators keyed by the connection and the request id, never by when an answer happened to
//! arrive. Against the same answers, the same seed sends the same requests.

mod reconcile;
mod shoppers;

use std::collections::BTreeMap;

use engine::wire::{Operation, Reply, WirePush};
use engine::{Command, Query, RequestId, SkuSpec};

pub use reconcile::Reconcile;
pub use shoppers::{FlashSaleLoad, MixedLoad};

/// Request kinds, each with its own latency histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    UpsertSku,
    PlaceOrder,
    ConfirmPayment,
    FailPayment,
    CancelOrder,
    StatementBatch,
    QueryStock,
    QueryOrder,
    Other,
}

impl Kind {
    pub fn of(operation: &Operation) -> Kind {
        match operation {
            Operation::Command(Command::UpsertSku(_)) => Kind::UpsertSku,
            Operation::Command(Command::PlaceOrder { .. }) => Kind::PlaceOrder,
            Operation::Command(Command::ConfirmPayment { .. }) => Kind::ConfirmPayment,
            Operation::Command(Command::FailPayment { .. }) => Kind::FailPayment,
            Operation::Command(Command::CancelOrder { .. }) => Kind::CancelOrder,
            Operation::Command(Command::StatementBatch { .. }) => Kind::StatementBatch,
            Operation::Query(Query::Stock { .. }) => Kind::QueryStock,
            Operation::Query(Query::Order { .. }) => Kind::QueryOrder,
            _ => Kind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::UpsertSku => "upsert_sku",
            Kind::PlaceOrder => "place_order",
            Kind::ConfirmPayment => "confirm_payment",
            Kind::FailPayment => "fail_payment",
            Kind::CancelOrder => "cancel_order",
            Kind::StatementBatch => "statement_batch",
            Kind::QueryStock => "query_stock",
            Kind::QueryOrder => "query_order",
            Kind::Other => "other",
        }
    }
}

/// One connection's request stream.
pub trait Traffic: Send {
    /// The request meant to go out at `at_ns` (nanoseconds since the start of the run).
    fn next(&mut self, at_ns: u64) -> Operation;
    /// The reply to a request this stream made at `at_ns`.
    fn on_reply(&mut self, request: RequestId, at_ns: u64, kind: Kind, reply: &Reply);
    /// An event the server pushed to this connection's client.
    fn on_push(&mut self, now_ns: u64, push: &WirePush);
}

/// Runs setup requests to completion before the clock starts (the catalog, seeded orders).
pub trait Setup {
    fn call_all(&mut self, operations: &[Operation]) -> anyhow::Result<Vec<Reply>>;
}

/// A named workload, sized for a run.
pub trait Workload: Send + Sync {
    fn name(&self) -> &'static str;
    fn catalog(&self) -> Vec<SkuSpec>;
    /// Anything beyond the catalog that must exist before the clock starts.
    fn prepare(&mut self, _setup: &mut dyn Setup) -> anyhow::Result<()> {
        Ok(())
    }
    fn traffic(&self, connection: u64, seed: u64) -> Box<dyn Traffic>;
}

pub const WORKLOADS: [&str; 3] = ["flash-sale", "mixed", "reconcile"];

/// The workload called `name`, sized for about `expected_requests` requests, on SKU ids from
/// `sku_base + 1` up (a fresh range per run, so reruns against one server never collide).
pub fn workload(
    name: &str,
    expected_requests: u64,
    sku_base: u64,
) -> anyhow::Result<Box<dyn Workload>> {
    Ok(match name {
        "flash-sale" => Box::new(FlashSaleLoad::sized(expected_requests, sku_base)),
        "mixed" => Box::new(MixedLoad::sized(expected_requests, sku_base)),
        "reconcile" => Box::new(Reconcile::sized(expected_requests, sku_base)),
        other => anyhow::bail!(
            "unknown workload {other:?}: expected one of {}",
            WORKLOADS.join(", ")
        ),
    })
}

/// Upserts for a catalog, checked: every one must be accepted.
pub fn load_catalog(setup: &mut dyn Setup, catalog: &[SkuSpec]) -> anyhow::Result<()> {
    for chunk in catalog.chunks(1024) {
        let ops: Vec<_> = chunk
            .iter()
            .map(|spec| Operation::Command(Command::UpsertSku(spec.clone())))
            .collect();
        let mut refused = BTreeMap::new();
        for reply in setup.call_all(&ops)? {
            if let Reply::Rejected { code, .. } = reply {
                *refused.entry(code.name()).or_insert(0u64) += 1;
            }
        }
        anyhow::ensure!(
            refused.is_empty(),
            "loading the catalog: refused {refused:?}"
        );
    }
    Ok(())
}
