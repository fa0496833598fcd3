//! What a load run measured: latency histograms (overall and by request kind), refusals by
//! code, and the counts. Each connection fills its own `Measured`; the run merges them, and
//! `report` renders the result. Kept apart from both so that the generator writes it and the
//! report reads it without either importing the other.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::traffic::Kind;

/// Latencies are kept in nanoseconds, 3 significant digits, up to an hour.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds")
}

/// What one connection (or, merged, the whole run) measured.
pub struct Measured {
    pub overall: Histogram<u64>,
    pub by_kind: BTreeMap<Kind, Histogram<u64>>,
    /// Refusals by code name, plus requests lost with their connection or never answered.
    pub errors: BTreeMap<String, u64>,
    pub sent: u64,
    pub answered: u64,
    /// Commands applied and queries answered.
    pub accepted: u64,
    /// Answers that arrived between the end of the warm-up and the end of the run.
    pub answered_in_window: u64,
    /// How late, at worst, the generator itself sent a request (it too can fall behind); time
    /// a due request waited for room in a full pipeline is the server's, not counted here.
    pub sender_lag_max_ns: u64,
    pub lost_connections: Vec<String>,
    /// Times a connection moved to the other node and resent what was unanswered.
    pub failovers: u64,
}

impl Measured {
    pub fn new() -> Measured {
        Measured {
            overall: latency_histogram(),
            by_kind: BTreeMap::new(),
            errors: BTreeMap::new(),
            sent: 0,
            answered: 0,
            accepted: 0,
            answered_in_window: 0,
            sender_lag_max_ns: 0,
            lost_connections: Vec::new(),
            failovers: 0,
        }
    }

    pub fn merge(&mut self, other: Measured) {
        self.overall.add(&other.overall).expect("same bounds");
        for (kind, h) in other.by_kind {
            self.by_kind
                .entry(kind)
                .or_insert_with(latency_histogram)
                .add(&h)
                .expect("same bounds");
        }
        for (name, n) in other.errors {
            *self.errors.entry(name).or_default() += n;
        }
        self.sent += other.sent;
        self.answered += other.answered;
        self.accepted += other.accepted;
        self.answered_in_window += other.answered_in_window;
        self.sender_lag_max_ns = self.sender_lag_max_ns.max(other.sender_lag_max_ns);
        self.lost_connections.extend(other.lost_connections);
        self.failovers += other.failovers;
    }
}

impl Default for Measured {
    fn default() -> Self {
        Measured::new()
    }
}
