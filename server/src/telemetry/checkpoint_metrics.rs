//! The checkpoint figures in `/metrics`: how many were taken (full or delta) and failed, how
//! far the newest goes, the bytes they write, how long the engine stage paused for a cut and
//! for each step, how long each took to reach the disk, and the memory their frames hold.

use std::sync::atomic::AtomicU64;

use super::metrics::{counter, gauge, Histogram, LATENCY_BOUNDS_NS, SNAPSHOT_BOUNDS_NS};

pub struct CheckpointMetrics {
    /// 1 when this node checkpoints its engine.
    pub enabled: AtomicU64,
    pub taken: AtomicU64,
    pub full: AtomicU64,
    pub failures: AtomicU64,
    /// The journal sequence the newest checkpoint on disk reaches.
    pub seq: AtomicU64,
    pub number: AtomicU64,
    /// Bytes of checkpoint files written, all told.
    pub bytes: AtomicU64,
    pub last_bytes: AtomicU64,
    /// Bytes of frames encoded by the engine stage and not yet written (bounded by
    /// `checkpoint.queue_mib`).
    pub queued_bytes: AtomicU64,
    pub queue_limit_bytes: AtomicU64,
    /// Bytes of checkpoint files on disk now.
    pub disk_bytes: AtomicU64,
    /// The engine stage's pause at a cut.
    pub cut_ns: Histogram,
    /// The engine stage's pause for one step (copying chunks), wall clock.
    pub step_ns: Histogram,
    /// The same step's CPU time on the engine's thread (the wall clock less any time the
    /// thread was descheduled).
    pub step_cpu_ns: Histogram,
    /// From the cut to the file in place.
    pub write_ns: Histogram,
}

impl Default for CheckpointMetrics {
    fn default() -> CheckpointMetrics {
        CheckpointMetrics {
            enabled: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            full: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            number: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_bytes: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            queue_limit_bytes: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(0),
            cut_ns: Histogram::new(LATENCY_BOUNDS_NS),
            step_ns: Histogram::new(LATENCY_BOUNDS_NS),
            step_cpu_ns: Histogram::new(LATENCY_BOUNDS_NS),
            write_ns: Histogram::new(SNAPSHOT_BOUNDS_NS),
        }
    }
}

impl CheckpointMetrics {
    pub(crate) fn render(&self, out: &mut String) {
        let g = |out: &mut String, name, help, v| gauge(out, name, help, v);
        let c = |out: &mut String, name, help, v| counter(out, name, help, v);
        g(
            out,
            "surge_checkpoint_enabled",
            "1 when this node checkpoints its serving engine.",
            &self.enabled,
        );
        c(
            out,
            "surge_checkpoints_total",
            "Checkpoints written (full and delta).",
            &self.taken,
        );
        c(
            out,
            "surge_checkpoints_full_total",
            "Full checkpoints written.",
            &self.full,
        );
        c(
            out,
            "surge_checkpoint_failures_total",
            "Checkpoints abandoned (the next one is full).",
            &self.failures,
        );
        g(
            out,
            "surge_checkpoint_seq",
            "Journal sequence the newest checkpoint reaches.",
            &self.seq,
        );
        g(
            out,
            "surge_checkpoint_number",
            "Number of the newest checkpoint file.",
            &self.number,
        );
        c(
            out,
            "surge_checkpoint_written_bytes_total",
            "Bytes of checkpoint files written.",
            &self.bytes,
        );
        g(
            out,
            "surge_checkpoint_last_bytes",
            "Size of the newest checkpoint file.",
            &self.last_bytes,
        );
        g(
            out,
            "surge_checkpoint_disk_bytes",
            "Bytes of checkpoint files on disk.",
            &self.disk_bytes,
        );
        g(
            out,
            "surge_checkpoint_queued_bytes",
            "Chunks copied and encoded by the engine stage, not yet written.",
            &self.queued_bytes,
        );
        g(
            out,
            "surge_checkpoint_queue_limit_bytes",
            "The most chunk bytes queued for the writer (checkpoint.queue_mib).",
            &self.queue_limit_bytes,
        );
        let seconds = 1e-9;
        self.cut_ns.render(
            out,
            "surge_checkpoint_cut_seconds",
            "The engine stage's pause at a checkpoint's cut.",
            seconds,
        );
        self.step_cpu_ns.render(
            out,
            "surge_checkpoint_step_cpu_seconds",
            "The engine thread's CPU time for one checkpoint step.",
            seconds,
        );
        self.step_ns.render(
            out,
            "surge_checkpoint_step_seconds",
            "The engine stage's pause for one checkpoint step.",
            seconds,
        );
        self.write_ns.render(
            out,
            "surge_checkpoint_write_seconds",
            "From a checkpoint's cut to its file in place.",
            seconds,
        );
    }
}
