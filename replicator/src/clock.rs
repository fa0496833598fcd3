//! Time at the edges, behind one small trait: the server's sequencer stamps commands with
//! `wall_ns`, and it and the replicator measure intervals (Ticks, heartbeats, silence) with
//! `mono_ns`. Production runs on `SystemClock`; tests and a simulator run on `ManualClock`,
//! which moves only when told, so nothing races real time.
//!
//! It lives here, the lowest crate that reads a clock; the server re-exports it.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Nanoseconds since the Unix epoch, as the wall clock says (it may step back).
    fn wall_ns(&self) -> u64;
    /// Nanoseconds since an origin fixed when the clock was made; never goes back.
    fn mono_ns(&self) -> u64;
}

/// The machine's clocks.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn wall_ns(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }

    fn mono_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// A clock that moves only by `advance` (both readings together) or `set_wall`.
#[derive(Debug, Default)]
pub struct ManualClock {
    wall_ns: AtomicU64,
    mono_ns: AtomicU64,
}

impl ManualClock {
    pub fn new(wall_ns: u64) -> ManualClock {
        ManualClock {
            wall_ns: AtomicU64::new(wall_ns),
            mono_ns: AtomicU64::new(0),
        }
    }

    pub fn advance(&self, by: Duration) {
        let ns = by.as_nanos() as u64;
        self.wall_ns.fetch_add(ns, SeqCst);
        self.mono_ns.fetch_add(ns, SeqCst);
    }

    /// Step the wall clock alone (an NTP correction); the monotonic reading stays.
    pub fn set_wall(&self, wall_ns: u64) {
        self.wall_ns.store(wall_ns, SeqCst);
    }
}

impl Clock for ManualClock {
    fn wall_ns(&self) -> u64 {
        self.wall_ns.load(SeqCst)
    }

    fn mono_ns(&self) -> u64 {
        self.mono_ns.load(SeqCst)
    }
}

/// Milliseconds between two `mono_ns` readings (0 if `earlier` is later).
pub fn ms_between(earlier_ns: u64, later_ns: u64) -> u64 {
    later_ns.saturating_sub(earlier_ns) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!((clock.wall_ns(), clock.mono_ns()), (1_000, 0));
        clock.advance(Duration::from_millis(3));
        assert_eq!((clock.wall_ns(), clock.mono_ns()), (3_001_000, 3_000_000));
        clock.set_wall(5);
        assert_eq!((clock.wall_ns(), clock.mono_ns()), (5, 3_000_000));
        assert_eq!(ms_between(1_000_000, 3_000_000), 2);
        assert_eq!(ms_between(3_000_000, 1_000_000), 0);
    }

    #[test]
    fn the_system_clock_is_monotonic_and_near_the_wall() {
        let clock = SystemClock::new();
        let (a, b) = (clock.mono_ns(), clock.mono_ns());
        assert!(b >= a);
        assert!(clock.wall_ns() > 1_600_000_000_000_000_000);
    }
}
