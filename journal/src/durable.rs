//! The highest durable sequence, published by the writer for others to wait on (the release
//! gate, the replicator). A store with `Release` after the sync returned; readers load with
//! `Acquire`. Waiters sleep on a condition variable; publishing wakes them only when someone
//! is waiting. A failed sync marks it failed, which wakes them for good: it will not move.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct DurableSeq {
    seq: AtomicU64,
    failed: AtomicBool,
    waiters: AtomicU32,
    lock: Mutex<()>,
    changed: Condvar,
}

impl DurableSeq {
    pub fn new(seq: u64) -> DurableSeq {
        DurableSeq {
            seq: AtomicU64::new(seq),
            ..DurableSeq::default()
        }
    }

    pub fn get(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Writer only: everything up to `seq` is durable.
    pub fn publish(&self, seq: u64) {
        debug_assert!(seq >= self.seq.load(Ordering::Relaxed));
        self.seq.store(seq, Ordering::Release);
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.changed.notify_all();
        }
    }

    /// Writer only: a sync failed; nothing more will be published. Wakes every waiter.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.changed.notify_all();
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Wait until `seq` is durable, the sequence failed, or the timeout passes; returns the
    /// durable sequence.
    pub fn wait_for(&self, seq: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.get();
            if now >= seq || self.failed() {
                return now;
            }
            self.waiters.fetch_add(1, Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::SeqCst);
            let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            let left = deadline.saturating_duration_since(Instant::now());
            if self.get() < seq && !self.failed() && !left.is_zero() {
                let _ = self.changed.wait_timeout(guard, left);
            } else {
                drop(guard);
            }
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            if Instant::now() >= deadline {
                return self.get();
            }
        }
    }
}
