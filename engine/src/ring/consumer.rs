//! A consumer stage: reads every published sequence in order, after the stages it depends on
//! (or straight after the producer), and releases them by advancing its own cursor.
//!
//! Several stages may read the same slot at once (the journaler and the engine side by side);
//! none of them copies it. A slot is only read, never written, by consumers.

use std::sync::Arc;
use std::time::Duration;

use super::cursor::{self, Cursor};
use super::Shared;

pub struct Consumer<T> {
    pub(crate) shared: Arc<Shared<T>>,
    pub(crate) cursor: Arc<Cursor>,
    /// The producer's cursor for a first stage, else the cursors of the stages it follows.
    pub(crate) upstream: Vec<Arc<Cursor>>,
    pub(crate) processed: u64,
    /// Upstream progress as last seen; refreshed only when everything seen is processed.
    pub(crate) available_cached: u64,
}

impl<T> Consumer<T> {
    /// The highest sequence this stage has released.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Whether there is something to read now (without taking it).
    pub fn has_ready(&mut self) -> bool {
        if self.available_cached <= self.processed {
            self.available_cached = cursor::minimum(&self.upstream);
        }
        self.available_cached > self.processed
    }

    /// Everything published upstream and not yet processed here, if there is any now.
    pub fn try_read(&mut self) -> Option<ReadBatch<'_, T>> {
        self.try_read_up_to(usize::MAX)
    }

    /// At most `max` sequences (a stage that wants to bound its batch).
    pub fn try_read_up_to(&mut self, max: usize) -> Option<ReadBatch<'_, T>> {
        assert!(max >= 1);
        if self.available_cached <= self.processed {
            self.available_cached = cursor::minimum(&self.upstream);
            if self.available_cached <= self.processed {
                return None;
            }
        }
        let last = self
            .available_cached
            .min(self.processed.saturating_add(max as u64));
        Some(ReadBatch {
            first: self.processed + 1,
            last,
            consumer: self,
        })
    }

    /// Wait (by the ring's strategy) for something to read. `None` if the timeout passes
    /// first: a caller can then look at its shutdown flag and wait again.
    pub fn read(&mut self, timeout: Option<Duration>) -> Option<ReadBatch<'_, T>> {
        self.read_up_to(usize::MAX, timeout)
    }

    pub fn read_up_to(
        &mut self,
        max: usize,
        timeout: Option<Duration>,
    ) -> Option<ReadBatch<'_, T>> {
        if self.available_cached <= self.processed {
            let (ready, seen) = cursor::wait_for_minimum(
                &self.shared.notifier,
                self.shared.strategy,
                &self.upstream,
                self.processed + 1,
                timeout,
            );
            self.available_cached = seen;
            if !ready {
                return None;
            }
        }
        self.try_read_up_to(max)
    }
}

/// Published sequences `first..=last`, readable until the batch is dropped, which releases
/// them all (the stage's cursor moves to `last` and waiters are signalled). Empty only after
/// `release_before` its first sequence.
pub struct ReadBatch<'a, T> {
    consumer: &'a mut Consumer<T>,
    first: u64,
    last: u64,
}

impl<T> ReadBatch<'_, T> {
    pub fn first_sequence(&self) -> u64 {
        self.first
    }

    pub fn last_sequence(&self) -> u64 {
        self.last
    }

    pub fn len(&self) -> usize {
        (self.last + 1 - self.first) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.last < self.first
    }

    /// Keep only the sequences before `sequence` (which must be in this batch): dropping
    /// the batch releases those, and `sequence` is read again next time. (The release gate
    /// stops at an answer that must wait for the standby.)
    pub fn release_before(&mut self, sequence: u64) {
        assert!(
            (self.first..=self.last).contains(&sequence),
            "sequence {sequence} outside batch {}..={}",
            self.first,
            self.last
        );
        self.last = sequence - 1;
    }

    /// The slot holding `sequence` (which must be in this batch).
    pub fn get(&self, sequence: u64) -> &T {
        assert!(
            (self.first..=self.last).contains(&sequence),
            "sequence {sequence} outside batch {}..={}",
            self.first,
            self.last
        );
        // SAFETY: `sequence` is published (upstream cursors, loaded with Acquire, are at or
        // past it, so the producer's writes are visible) and this stage has not released it,
        // so the producer cannot claim its slot again until this batch is dropped.
        unsafe { self.consumer.shared.slots.get(sequence) }
    }

    /// `(sequence, slot)` for every sequence in the batch, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> + '_ {
        (self.first..=self.last).map(move |s| (s, self.get(s)))
    }
}

impl<T> Drop for ReadBatch<'_, T> {
    fn drop(&mut self) {
        let consumer = &mut *self.consumer;
        consumer.processed = self.last;
        consumer.cursor.set(self.last);
        consumer.shared.notifier.signal();
    }
}
