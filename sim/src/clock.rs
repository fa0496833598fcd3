//! Simulated time. One global clock, in nanoseconds since the run began, moved only by the
//! event loop; each node reads it through a `SimClock` of its own, which runs at a rate off
//! by a few hundred parts per million (real clocks drift; the lease's margin covers it) and
//! starts counting when the node's process starts, as a real monotonic clock does.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use server::Clock;

/// The wall clock at the start of every run: 2026-12-01T00:00:00Z.
pub const WALL_START_NS: u64 = 1_796_083_200_000_000_000;

/// The run's time, shared by every clock.
#[derive(Clone, Default)]
pub struct Now(Arc<AtomicU64>);

impl Now {
    pub fn get(&self) -> u64 {
        self.0.load(SeqCst)
    }

    pub fn set(&self, ns: u64) {
        debug_assert!(ns >= self.get(), "time never goes back");
        self.0.store(ns, SeqCst);
    }
}

/// One process's clocks.
pub struct SimClock {
    now: Now,
    /// The run's time when the process started (its monotonic origin).
    origin_ns: u64,
    /// Parts per million this clock runs fast (negative: slow).
    skew_ppm: i64,
}

impl SimClock {
    pub fn new(now: Now, skew_ppm: i64) -> SimClock {
        let origin_ns = now.get();
        SimClock {
            now,
            origin_ns,
            skew_ppm,
        }
    }

    fn skewed(&self, ns: u64) -> u64 {
        let ns = i128::from(ns);
        (ns + ns * i128::from(self.skew_ppm) / 1_000_000).max(0) as u64
    }
}

impl Clock for SimClock {
    fn wall_ns(&self) -> u64 {
        WALL_START_NS + self.skewed(self.now.get())
    }

    fn mono_ns(&self) -> u64 {
        self.skewed(self.now.get() - self.origin_ns)
    }
}
