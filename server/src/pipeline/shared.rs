//! What every thread of one server shares: the metrics, the life-cycle flags (draining,
//! failed, stop), the gateway's heartbeat for the watchdog, the engine's last hash for
//! `/health`, the clock, and `Wake`, which gets the gateway out of `poll` when a stage
//! released something.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::release::Release;
use crate::telemetry::metrics::Metrics;
use crate::Clock;

pub struct Shared {
    pub metrics: Metrics,
    /// The durable sequence and the gate's bound (`release.rs`).
    pub release: Release,
    /// Stop taking requests, answer what is in flight, then stop (SIGTERM).
    pub draining: AtomicBool,
    /// The journal failed: answer nothing more.
    pub failed: AtomicBool,
    /// Stages stop once the gateway has drained.
    pub stop: AtomicBool,
    /// `clock.mono_ns()` at the gateway's last turn (the watchdog's evidence of life).
    heartbeat_ns: AtomicU64,
    /// The engine's rolling hash after the last batch it applied (`/health`).
    pub engine_hash: AtomicU64,
    pub clock: Arc<dyn Clock>,
}

impl Shared {
    pub fn new(clock: Arc<dyn Clock>) -> Shared {
        Shared {
            metrics: Metrics::default(),
            release: Release::default(),
            draining: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            heartbeat_ns: AtomicU64::new(clock.mono_ns()),
            engine_hash: AtomicU64::new(0),
            clock,
        }
    }

    pub fn fail(&self) {
        self.failed.store(true, SeqCst);
        self.metrics.serving.store(0, SeqCst);
    }

    pub fn heartbeat(&self) {
        self.heartbeat_ns.store(self.clock.mono_ns(), Relaxed);
    }

    /// Whether the gateway loop turned within `within`, and nothing failed.
    pub fn alive(&self, within: Duration) -> bool {
        let since = self
            .clock
            .mono_ns()
            .saturating_sub(self.heartbeat_ns.load(Relaxed));
        !self.failed.load(SeqCst) && since <= within.as_nanos() as u64
    }

    /// "serving", "draining", "failed" or "starting".
    pub fn status(&self) -> &'static str {
        if self.failed.load(SeqCst) {
            "failed"
        } else if self.draining.load(SeqCst) {
            "draining"
        } else if self.metrics.serving.load(SeqCst) == 1 {
            "serving"
        } else {
            "starting"
        }
    }
}

/// Wakes the gateway out of `poll` when the gate may have something to release. Stages call
/// `nudge` after every release; it costs an eventfd write only when the gateway is asleep.
pub struct Wake {
    sleeping: AtomicBool,
    waker: Option<mio::Waker>,
}

impl Wake {
    pub fn new(waker: mio::Waker) -> Wake {
        Wake {
            sleeping: AtomicBool::new(false),
            waker: Some(waker),
        }
    }

    /// A wake that wakes nobody (tests that step the stages by hand).
    pub fn none() -> Wake {
        Wake {
            sleeping: AtomicBool::new(false),
            waker: None,
        }
    }

    pub fn nudge(&self) {
        if self.sleeping.load(SeqCst) && self.sleeping.swap(false, SeqCst) {
            if let Some(waker) = &self.waker {
                let _ = waker.wake();
            }
        }
    }

    /// The gateway is about to sleep: from here a nudge wakes it.
    pub fn going_to_sleep(&self) {
        self.sleeping.store(true, SeqCst);
    }

    pub fn awake(&self) {
        self.sleeping.store(false, SeqCst);
    }
}

impl crate::group::Nudge for Wake {
    fn nudge(&self) {
        Wake::nudge(self);
    }
}
