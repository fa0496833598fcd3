//! A sequence cursor: one `AtomicU64` on its own cache line, so a producer and its consumers
//! polling each other's progress do not false-share.
//!
//! A cursor holds the highest sequence its owner has finished with (published, for the
//! producer; processed, for a consumer). Sequences start at 1; 0 means "nothing yet".
//! Only the owner stores, with `Release`, after it is done with the slots; everyone else
//! loads with `Acquire`, so whatever the owner wrote to those slots is visible to them.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

#[derive(Debug, Default)]
pub struct Cursor {
    value: CachePadded<AtomicU64>,
}

impl Cursor {
    #[inline]
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Owner only. Everything the owner did to slots up to `sequence` happens-before any
    /// `get` that observes it.
    #[inline]
    pub(crate) fn set(&self, sequence: u64) {
        debug_assert!(
            sequence >= self.value.load(Ordering::Relaxed),
            "cursors never go back"
        );
        self.value.store(sequence, Ordering::Release);
    }
}

/// The smallest of several cursors (the slowest of a group of stages).
#[inline]
pub(crate) fn minimum(cursors: &[std::sync::Arc<Cursor>]) -> u64 {
    cursors.iter().map(|c| c.get()).min().unwrap_or(u64::MAX)
}

/// Wait (by `strategy`) until the slowest of `cursors` reaches `at_least`, or the timeout.
/// Returns whether it did and the slowest position last seen (for the caller's cache).
pub(crate) fn wait_for_minimum(
    notifier: &super::wait::Notifier,
    strategy: super::WaitStrategy,
    cursors: &[std::sync::Arc<Cursor>],
    at_least: u64,
    timeout: Option<std::time::Duration>,
) -> (bool, u64) {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let mut seen = 0;
    let reached = notifier.wait_until(strategy, deadline, || {
        seen = minimum(cursors);
        seen >= at_least
    });
    (reached, seen)
}
