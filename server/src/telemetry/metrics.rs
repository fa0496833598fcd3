//! The server's counters, gauges and histograms, written by the stage threads with relaxed
//! atomics (each written by one thread; a scrape reads a slightly torn but monotone view) and
//! rendered in Prometheus text format for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Codes are below this (see docs/ERRORS.md); one counter each.
const CODES: usize = 300;

/// A Prometheus histogram with fixed upper bounds (in the unit it is observed in).
pub struct Histogram {
    bounds: &'static [u64],
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum.fetch_add(value, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// `scale` turns the observed unit into the exported one (1e-9 for ns → seconds).
    pub(crate) fn render(&self, out: &mut String, name: &str, help: &str, scale: f64) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Relaxed);
            let le = *bound as f64 * scale;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum.load(Relaxed) as f64 * scale);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

pub(crate) const LATENCY_BOUNDS_NS: &[u64] = &[
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    // The bound a request may wait inside the server at saturation (docs/OPERATIONS.md).
    20_000_000,
    50_000_000,
    100_000_000,
    1_000_000_000,
];
pub(crate) const SNAPSHOT_BOUNDS_NS: &[u64] = &[
    10_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];
const BATCH_BOUNDS: &[u64] = &[
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 16384,
];

pub struct Metrics {
    /// Answers sent, by code (successes, rejections, gateway refusals).
    pub answers: Vec<AtomicU64>,
    /// Events pushed (or undeliverable), by code.
    pub events: Vec<AtomicU64>,
    pub ring_slots: AtomicU64,
    pub ring_occupancy: AtomicU64,
    pub journal_commits: AtomicU64,
    pub journal_records: AtomicU64,
    pub journal_batch: Histogram,
    pub journal_sync_ns: Histogram,
    /// Publish to release: journal sync and engine apply, whichever is later.
    pub gate_wait_ns: Histogram,
    /// A client's request inside the server: from the read that brought its bytes to its
    /// answer queued for its connection (intake, backpressure, the pipeline, the gate).
    pub request_ns: Histogram,
    /// Gateway turns that took 20 ms or more (the gateway itself held up).
    pub gateway_slow_turns: AtomicU64,
    pub connections: AtomicU64,
    pub connections_accepted: AtomicU64,
    /// Connections closed by the server, by code.
    pub connections_closed: Vec<AtomicU64>,
    pub waitlist_entries: AtomicU64,
    pub waitlist_longest: AtomicU64,
    pub applied_seq: AtomicU64,
    /// 1 while taking requests; 0 while draining or after a failure.
    pub serving: AtomicU64,
    /// Each engine limit's name, use and size (written by the engine stage).
    pub limits: Limits,
    /// Orders retired from the book, ever (the engine's count).
    pub orders_retired: AtomicU64,
    /// The longest the engine stage sat with work waiting, since the snapshotter last
    /// looked (it takes and resets this per snapshot: the engine's pause during it).
    pub engine_gap_max_ns: AtomicU64,
    pub engine_gap_ns: Histogram,
    pub snapshots: AtomicU64,
    pub snapshot_seq: AtomicU64,
    pub snapshot_bytes: AtomicU64,
    pub snapshot_failures: AtomicU64,
    /// Sequences the snapshotter's engine is behind the durable one.
    pub snapshot_lag_seq: AtomicU64,
    pub snapshot_write_ns: Histogram,
    pub snapshot_engine_pause_ns: Histogram,
    pub segments_retired: AtomicU64,
    pub feed: FeedMetrics,
    pub checkpoint: super::checkpoint_metrics::CheckpointMetrics,
}

/// The feed's figures (`feed/`): its log, and the consumers reading it.
#[derive(Default)]
pub struct FeedMetrics {
    pub enabled: AtomicU64,
    /// Every sequence at or below this has its events in the feed log.
    pub through_seq: AtomicU64,
    /// The oldest `after` a consumer may subscribe with.
    pub begins_after_seq: AtomicU64,
    pub bytes: AtomicU64,
    pub events: AtomicU64,
    pub subscribers: AtomicU64,
    pub subscribers_max: AtomicU64,
    pub sent_events: AtomicU64,
    pub refused: AtomicU64,
    /// The lowest `through` among the subscribers (the slowest consumer's position).
    pub slowest_through_seq: AtomicU64,
}

/// Engine limits as `/metrics` shows them: `surge_limit_used{limit=...}` and `_max`.
pub struct Limits {
    names: std::sync::OnceLock<Vec<&'static str>>,
    used: Vec<AtomicU64>,
    max: Vec<AtomicU64>,
}

/// Limits the engine reports at most.
const LIMITS_MAX: usize = 16;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            names: std::sync::OnceLock::new(),
            used: (0..LIMITS_MAX).map(|_| AtomicU64::new(0)).collect(),
            max: (0..LIMITS_MAX).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Limits {
    /// Record the engine's limits (the names on the first call; they never change).
    pub fn store(&self, limits: &[engine::LimitUse]) {
        assert!(limits.len() <= LIMITS_MAX);
        self.names
            .get_or_init(|| limits.iter().map(|l| l.name).collect());
        for (i, l) in limits.iter().enumerate() {
            self.used[i].store(l.used, Relaxed);
            self.max[i].store(l.max, Relaxed);
        }
    }

    fn render(&self, out: &mut String) {
        let Some(names) = self.names.get() else {
            return;
        };
        for (metric, help, values) in [
            (
                "surge_limit_used",
                "How much of each engine limit (its config key) is in use.",
                &self.used,
            ),
            (
                "surge_limit_max",
                "Each engine limit's size, from the config at start-up.",
                &self.max,
            ),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge");
            for (name, value) in names.iter().zip(values.iter()) {
                let _ = writeln!(out, "{metric}{{limit=\"{name}\"}} {}", value.load(Relaxed));
            }
        }
    }
}

fn counters() -> Vec<AtomicU64> {
    (0..CODES).map(|_| AtomicU64::new(0)).collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            answers: counters(),
            events: counters(),
            ring_slots: AtomicU64::new(0),
            ring_occupancy: AtomicU64::new(0),
            journal_commits: AtomicU64::new(0),
            journal_records: AtomicU64::new(0),
            journal_batch: Histogram::new(BATCH_BOUNDS),
            journal_sync_ns: Histogram::new(LATENCY_BOUNDS_NS),
            gate_wait_ns: Histogram::new(LATENCY_BOUNDS_NS),
            request_ns: Histogram::new(LATENCY_BOUNDS_NS),
            gateway_slow_turns: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_closed: counters(),
            waitlist_entries: AtomicU64::new(0),
            waitlist_longest: AtomicU64::new(0),
            applied_seq: AtomicU64::new(0),
            serving: AtomicU64::new(0),
            limits: Limits::default(),
            orders_retired: AtomicU64::new(0),
            engine_gap_max_ns: AtomicU64::new(0),
            engine_gap_ns: Histogram::new(LATENCY_BOUNDS_NS),
            snapshots: AtomicU64::new(0),
            snapshot_seq: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(0),
            snapshot_failures: AtomicU64::new(0),
            snapshot_lag_seq: AtomicU64::new(0),
            snapshot_write_ns: Histogram::new(SNAPSHOT_BOUNDS_NS),
            snapshot_engine_pause_ns: Histogram::new(LATENCY_BOUNDS_NS),
            segments_retired: AtomicU64::new(0),
            feed: FeedMetrics::default(),
            checkpoint: Default::default(),
        }
    }
}

impl Metrics {
    pub fn count(counters: &[AtomicU64], code: u16) {
        if let Some(c) = counters.get(code as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus text; `durable` and `released` come from the gate
    /// (`pipeline::release`).
    pub fn render(&self, durable: u64, released: u64) -> String {
        let mut out = String::with_capacity(8 << 10);
        by_code(
            &mut out,
            "surge_answers_total",
            "Answers released to clients, by outcome code.",
            &self.answers,
        );
        by_code(
            &mut out,
            "surge_events_total",
            "Events raised by the engine (waitlist hand-offs, expiries, discrepancies), by code.",
            &self.events,
        );
        gauge(
            &mut out,
            "surge_ring_slots",
            "Slots in the input ring.",
            &self.ring_slots,
        );
        gauge(
            &mut out,
            "surge_ring_occupancy",
            "Ring slots published and not yet released by the gate.",
            &self.ring_occupancy,
        );
        counter(
            &mut out,
            "surge_gateway_slow_turns_total",
            "Gateway turns that took 20 ms or more: the gateway itself was held up (log event gateway_turn_slow).",
            &self.gateway_slow_turns,
        );
        counter(
            &mut out,
            "surge_journal_commits_total",
            "Group commits (one write + one fdatasync each).",
            &self.journal_commits,
        );
        counter(
            &mut out,
            "surge_journal_records_total",
            "Records made durable.",
            &self.journal_records,
        );
        self.journal_batch.render(
            &mut out,
            "surge_journal_batch_records",
            "Records per group commit.",
            1.0,
        );
        self.journal_sync_ns.render(
            &mut out,
            "surge_journal_sync_seconds",
            "One group commit from written to durable (its sync, and the wait for earlier commits in flight).",
            1e-9,
        );
        self.gate_wait_ns.render(
            &mut out,
            "surge_gate_wait_seconds",
            "From publishing a request to the gate releasing its answer.",
            1e-9,
        );
        self.request_ns.render(
            &mut out,
            "surge_request_seconds",
            "A client's request inside the server: from the read that brought its bytes to its answer queued for its connection.",
            1e-9,
        );
        gauge(
            &mut out,
            "surge_connections",
            "Open client connections.",
            &self.connections,
        );
        counter(
            &mut out,
            "surge_connections_accepted_total",
            "Client connections accepted.",
            &self.connections_accepted,
        );
        by_code(
            &mut out,
            "surge_connections_closed_total",
            "Connections the server closed, by the code it closed them with.",
            &self.connections_closed,
        );
        gauge(
            &mut out,
            "surge_waitlist_entries",
            "Buyers waiting on waitlists, all SKUs.",
            &self.waitlist_entries,
        );
        gauge(
            &mut out,
            "surge_waitlist_longest",
            "Buyers waiting on the longest waitlist.",
            &self.waitlist_longest,
        );
        gauge_value(
            &mut out,
            "surge_durable_seq",
            "Highest journal sequence synced.",
            durable,
        );
        gauge(
            &mut out,
            "surge_applied_seq",
            "Highest journal sequence applied by the engine.",
            &self.applied_seq,
        );
        gauge(
            &mut out,
            "surge_serving",
            "1 while the server takes requests, 0 while draining or failed.",
            &self.serving,
        );
        self.limits.render(&mut out);
        counter(
            &mut out,
            "surge_orders_retired_total",
            "Closed orders retired from the engine's book.",
            &self.orders_retired,
        );
        self.engine_gap_ns.render(
            &mut out,
            "surge_engine_gap_seconds",
            "Time the engine stage sat with work waiting between two batches (descheduled).",
            1e-9,
        );
        counter(
            &mut out,
            "surge_snapshots_total",
            "Snapshots written while serving.",
            &self.snapshots,
        );
        counter(
            &mut out,
            "surge_snapshot_failures_total",
            "Snapshots that could not be written (the previous one stays in use).",
            &self.snapshot_failures,
        );
        gauge(
            &mut out,
            "surge_snapshot_seq",
            "Journal sequence of the newest snapshot.",
            &self.snapshot_seq,
        );
        gauge(
            &mut out,
            "surge_snapshot_bytes",
            "Size of the newest snapshot file.",
            &self.snapshot_bytes,
        );
        gauge(
            &mut out,
            "surge_snapshot_lag_seq",
            "Durable sequences the snapshotter has not applied yet.",
            &self.snapshot_lag_seq,
        );
        self.snapshot_write_ns.render(
            &mut out,
            "surge_snapshot_write_seconds",
            "Taking one snapshot: copy, archive, write, sync, rename.",
            1e-9,
        );
        self.snapshot_engine_pause_ns.render(
            &mut out,
            "surge_snapshot_engine_pause_seconds",
            "Per snapshot, the longest the serving engine sat with work waiting meanwhile.",
            1e-9,
        );
        counter(
            &mut out,
            "surge_journal_segments_retired_total",
            "Journal segments recycled, archived or deleted after a snapshot covered them.",
            &self.segments_retired,
        );
        gauge_value(
            &mut out,
            "surge_release_bound_seq",
            "Highest journal sequence whose answers may leave (durable, and acked as the ack mode asks).",
            released,
        );
        self.feed.render(&mut out, released);
        self.checkpoint.render(&mut out);
        out
    }
}

impl FeedMetrics {
    fn render(&self, out: &mut String, bound: u64) {
        gauge(
            out,
            "surge_feed_enabled",
            "1 when this node keeps a feed and serves it.",
            &self.enabled,
        );
        gauge(
            out,
            "surge_feed_through_seq",
            "Every journal sequence at or below this has its events in the feed log.",
            &self.through_seq,
        );
        gauge(
            out,
            "surge_feed_begins_after_seq",
            "The oldest sequence a consumer may start after (older events were retired).",
            &self.begins_after_seq,
        );
        gauge(
            out,
            "surge_feed_bytes",
            "Bytes of feed log on disk.",
            &self.bytes,
        );
        counter(
            out,
            "surge_feed_events_total",
            "Events written to the feed log.",
            &self.events,
        );
        gauge(
            out,
            "surge_feed_subscribers",
            "Consumers subscribed now.",
            &self.subscribers,
        );
        gauge(
            out,
            "surge_feed_subscribers_max",
            "Subscriptions the feed port takes at most (feed.max_subscribers).",
            &self.subscribers_max,
        );
        counter(
            out,
            "surge_feed_sent_events_total",
            "Events sent to consumers.",
            &self.sent_events,
        );
        counter(
            out,
            "surge_feed_refused_total",
            "Subscriptions refused (truncated, full, bad frame).",
            &self.refused,
        );
        let slowest = self.slowest_through_seq.load(Relaxed);
        let lag = match self.subscribers.load(Relaxed) {
            0 => 0,
            _ => self
                .through_seq
                .load(Relaxed)
                .min(bound)
                .saturating_sub(slowest),
        };
        gauge_value(
            out,
            "surge_feed_consumer_lag_seq",
            "Sequences the slowest subscribed consumer is behind what the feed may send.",
            lag,
        );
    }
}

pub(crate) fn gauge(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    gauge_value(out, name, help, value.load(Relaxed));
}

pub fn gauge_value(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// A gauge in a base unit that wants a fraction (seconds).
pub fn gauge_float(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

pub(crate) fn counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    counter_value(out, name, help, value.load(Relaxed));
}

pub fn counter_value(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn by_code(out: &mut String, name: &str, help: &str, counters: &[AtomicU64]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (number, c) in counters.iter().enumerate() {
        let n = c.load(Relaxed);
        if n == 0 {
            continue;
        }
        let name_label = engine::Code::from_u16(number as u16).map_or("UNKNOWN", |c| c.name());
        let _ = writeln!(out, "{name}{{code=\"{number}\",name=\"{name_label}\"}} {n}");
    }
}
