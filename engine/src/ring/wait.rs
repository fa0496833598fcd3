//! How a stage waits for another's progress.
//!
//! - `BusySpin`: spin on the cursor. Lowest latency, burns its core: only when every stage
//!   has a core of its own.
//! - `Yield`: spin a little, then `yield_now`. Gives the core away when others want it.
//! - `Block`: spin a little, yield for a short while, then sleep on a condition variable
//!   until signalled. For when threads outnumber cores (a 2-core laptop or VM): an idle stage
//!   costs nothing, and a busy one rarely reaches the sleep (whose wake-up is a syscall on
//!   both sides: sleeping at once cost 20× throughput in the 1→3 pipeline bench on 2 cores).
//!
//! Every progress (a publish, a consumer releasing slots) calls `Notifier::signal`, which is a
//! single atomic load unless someone is actually asleep.

use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Spins before `Yield` and `Block` give up the core.
const SPINS_BEFORE_BACKOFF: u32 = 128;
/// How often a busy spin looks at the clock for its deadline.
const SPINS_PER_CLOCK_CHECK: u32 = 1024;
/// `Block` yields this long before it sleeps.
const YIELD_BEFORE_SLEEP: Duration = Duration::from_micros(200);
/// A sleeper wakes this often even without a signal: a safety net, never the mechanism.
const BLOCK_SLICE: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    BusySpin,
    Yield,
    Block,
}

impl WaitStrategy {
    /// Spin only when every busy thread has a core to itself; yield when they fit with one
    /// to spare for the OS; block otherwise.
    pub fn for_threads(threads: usize, cores: usize) -> WaitStrategy {
        if threads < cores {
            WaitStrategy::BusySpin
        } else if threads == cores {
            WaitStrategy::Yield
        } else {
            WaitStrategy::Block
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WaitStrategy::BusySpin => "busy-spin",
            WaitStrategy::Yield => "yield",
            WaitStrategy::Block => "block",
        }
    }
}

impl std::str::FromStr for WaitStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "busy-spin" | "spin" => Ok(WaitStrategy::BusySpin),
            "yield" => Ok(WaitStrategy::Yield),
            "block" => Ok(WaitStrategy::Block),
            other => Err(format!(
                "unknown wait strategy {other:?} (busy-spin, yield, block)"
            )),
        }
    }
}

/// Wakes sleeping `Block` waiters. Shared by every stage of one ring.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    sleepers: AtomicU32,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Notifier {
    /// Called after a cursor store. The fence orders that store before the `sleepers` load;
    /// a sleeper orders its `sleepers` increment before re-checking the cursor. So either the
    /// sleeper sees the new cursor or we see the sleeper (and wake it under the lock, which it
    /// holds from its re-check until it is inside `wait`).
    #[inline]
    pub(crate) fn signal(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
    }

    /// Wait until `ready()` or the deadline. Returns whether it became ready.
    pub(crate) fn wait_until(
        &self,
        strategy: WaitStrategy,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        let mut spins: u32 = 0;
        let mut yielding_since: Option<Instant> = None;
        loop {
            if ready() {
                return true;
            }
            spins = spins.wrapping_add(1);
            let backing_off = strategy != WaitStrategy::BusySpin && spins > SPINS_BEFORE_BACKOFF;
            if (backing_off || spins.is_multiple_of(SPINS_PER_CLOCK_CHECK))
                && deadline.is_some_and(|d| Instant::now() >= d)
            {
                return ready();
            }
            if !backing_off {
                std::hint::spin_loop();
                continue;
            }
            match strategy {
                WaitStrategy::BusySpin => unreachable!(),
                WaitStrategy::Yield => std::thread::yield_now(),
                WaitStrategy::Block => {
                    let since = *yielding_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < YIELD_BEFORE_SLEEP {
                        std::thread::yield_now();
                    } else if self.sleep(deadline, &mut ready) {
                        return true;
                    }
                }
            }
        }
    }

    fn sleep(&self, deadline: Option<Instant>, ready: &mut impl FnMut() -> bool) -> bool {
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let became_ready = ready();
        if !became_ready {
            let slice = deadline
                .map(|d| d.saturating_duration_since(Instant::now()).min(BLOCK_SLICE))
                .unwrap_or(BLOCK_SLICE);
            let _ = self.wake.wait_timeout(guard, slice);
        } else {
            drop(guard);
        }
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        became_ready
    }
}
