//! The single producer: claims a batch of free slots, fills them, publishes them with one
//! cursor store.
//!
//! A slot for sequence `s` is free once every consumer has released `s - capacity` (the
//! previous lap's occupant). The producer gates on the pipeline's last stages only: each of
//! them is behind everything upstream of it, so the slowest of them bounds them all.

use std::sync::Arc;
use std::time::Duration;

use super::cursor::{self, Cursor};
use super::Shared;

pub struct Producer<T> {
    pub(crate) shared: Arc<Shared<T>>,
    pub(crate) published: Arc<Cursor>,
    pub(crate) gating: Vec<Arc<Cursor>>,
    /// Highest sequence published (the producer is the only writer, so no load needed).
    pub(crate) last_published: u64,
    /// The slowest last stage as last seen; refreshed only when it seems to block a claim.
    pub(crate) gate_cached: u64,
}

impl<T> Producer<T> {
    pub fn capacity(&self) -> usize {
        self.shared.slots.capacity() as usize
    }

    /// The highest sequence published so far.
    pub fn published(&self) -> u64 {
        self.last_published
    }

    /// Slots that could be claimed right now.
    pub fn free_slots(&mut self) -> usize {
        self.gate_cached = cursor::minimum(&self.gating);
        let in_use = self.last_published - self.gate_cached;
        self.capacity() - in_use as usize
    }

    /// Claim `n` consecutive slots if they are free now (1 ≤ n ≤ capacity).
    pub fn try_claim(&mut self, n: usize) -> Option<Claim<'_, T>> {
        assert!(n >= 1 && n <= self.capacity(), "claim of {n} slots");
        let last = self.last_published + n as u64;
        let must_be_released = last.saturating_sub(self.shared.slots.capacity());
        if must_be_released > self.gate_cached {
            self.gate_cached = cursor::minimum(&self.gating);
            if must_be_released > self.gate_cached {
                return None;
            }
        }
        Some(Claim {
            first: self.last_published + 1,
            last,
            producer: self,
        })
    }

    /// Claim `n` slots, waiting (by the ring's strategy) for consumers to free them. `None`
    /// if the timeout passes first.
    pub fn claim(&mut self, n: usize, timeout: Option<Duration>) -> Option<Claim<'_, T>> {
        assert!(n >= 1 && n <= self.capacity(), "claim of {n} slots");
        let must_be_released =
            (self.last_published + n as u64).saturating_sub(self.shared.slots.capacity());
        if must_be_released > self.gate_cached {
            let (freed, seen) = cursor::wait_for_minimum(
                &self.shared.notifier,
                self.shared.strategy,
                &self.gating,
                must_be_released,
                timeout,
            );
            self.gate_cached = seen;
            if !freed {
                return None;
            }
        }
        self.try_claim(n)
    }
}

/// Claimed, not yet visible slots. `publish` makes them visible; dropping the claim instead
/// abandons it (nothing was visible, and the next claim reuses the same sequences).
pub struct Claim<'a, T> {
    producer: &'a mut Producer<T>,
    first: u64,
    last: u64,
}

impl<T> Claim<'_, T> {
    pub fn first_sequence(&self) -> u64 {
        self.first
    }

    pub fn last_sequence(&self) -> u64 {
        self.last
    }

    pub fn len(&self) -> usize {
        (self.last - self.first + 1) as usize
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `i`th claimed slot (0-based), to fill in place.
    pub fn slot_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.len(), "slot {i} outside a claim of {}", self.len());
        // SAFETY: sequence `first + i` is claimed by this (only) producer and not published,
        // so no consumer reads it; `try_claim` saw every last stage release the previous
        // occupant (`- capacity`), so no consumer still reads that either. `&mut self` keeps
        // this the only reference.
        unsafe { self.producer.shared.slots.get_mut(self.first + i as u64) }
    }

    /// Make every claimed slot visible to the first stages, and wake any that sleep.
    pub fn publish(self) {
        let producer = self.producer;
        producer.published.set(self.last);
        producer.last_published = self.last;
        producer.shared.notifier.signal();
    }
}
