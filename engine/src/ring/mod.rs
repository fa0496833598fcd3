//! `engine::ring`: an LMAX-style ring buffer. One producer claims and publishes slots in
//! batches; any number of consumer stages read them in place, each with its own cache-padded
//! cursor, each after the producer or after other stages (the journaler and the engine side
//! by side, a release gate after both). Slots are allocated once and reused forever.
//!
//! ```text
//!  producer ──publish──▶ [ slots ] ──▶ journaler ─┐
//!                                  └─▶ engine ────┴─▶ gate
//! ```
//!
//! Memory ordering: a cursor is stored with `Release` by its owner after it is done with the
//! slots, and loaded with `Acquire` by those that wait on it. So a consumer that sees the
//! producer's cursor at `s` sees the slot contents for `..=s`, and a producer that sees every
//! last stage at `s` knows no one reads slots `..=s` any more.

mod consumer;
mod cursor;
mod producer;
mod slots;
mod stage_cell;
mod wait;

use std::sync::Arc;

pub use consumer::{Consumer, ReadBatch};
pub use cursor::Cursor;
pub use producer::{Claim, Producer};
pub use stage_cell::StageCell;
pub use wait::WaitStrategy;

use slots::Slots;
use wait::Notifier;

pub(crate) struct Shared<T> {
    slots: Slots<T>,
    notifier: Notifier,
    strategy: WaitStrategy,
}

/// Names a stage while the ring is being built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageId(usize);

/// Declares the stages, then builds the ring.
///
/// ```
/// use engine::ring::{RingBuilder, WaitStrategy};
/// let mut ring = RingBuilder::<u64>::new(1024, WaitStrategy::Block);
/// let journal = ring.stage(&[]);
/// let engine = ring.stage(&[]);
/// let gate = ring.stage(&[journal, engine]);
/// let (mut producer, mut stages) = ring.build();
/// let mut claim = producer.try_claim(1).unwrap();
/// *claim.slot_mut(0) = 42;
/// claim.publish();
/// assert_eq!(*stages[journal.index()].try_read().unwrap().get(1), 42);
/// assert!(stages[gate.index()].try_read().is_none()); // the engine has not seen it yet
/// ```
pub struct RingBuilder<T> {
    capacity: usize,
    strategy: WaitStrategy,
    fill: Box<dyn FnMut() -> T>,
    stages: Vec<Vec<StageId>>,
}

impl StageId {
    /// Position of this stage's consumer in the vector `build` returns.
    pub fn index(self) -> usize {
        self.0
    }
}

impl<T: Default + 'static> RingBuilder<T> {
    pub fn new(capacity: usize, strategy: WaitStrategy) -> RingBuilder<T> {
        RingBuilder::with_fill(capacity, strategy, T::default)
    }
}

impl<T> RingBuilder<T> {
    /// `fill` makes each slot's initial value (slots are allocated here, once).
    pub fn with_fill(
        capacity: usize,
        strategy: WaitStrategy,
        fill: impl FnMut() -> T + 'static,
    ) -> RingBuilder<T> {
        RingBuilder {
            capacity,
            strategy,
            fill: Box::new(fill),
            stages: Vec::new(),
        }
    }

    /// A stage that reads each sequence after every stage in `after` has (or, with `after`
    /// empty, as soon as it is published).
    pub fn stage(&mut self, after: &[StageId]) -> StageId {
        assert!(after.iter().all(|s| s.0 < self.stages.len()));
        self.stages.push(after.to_vec());
        StageId(self.stages.len() - 1)
    }

    pub fn build(self) -> (Producer<T>, Vec<Consumer<T>>) {
        assert!(!self.stages.is_empty(), "a ring needs at least one stage");
        let shared = Arc::new(Shared {
            slots: Slots::new(self.capacity, self.fill),
            notifier: Notifier::default(),
            strategy: self.strategy,
        });
        let published = Arc::new(Cursor::default());
        let cursors: Vec<Arc<Cursor>> = self.stages.iter().map(|_| Arc::default()).collect();
        let followed: Vec<bool> = (0..self.stages.len())
            .map(|i| self.stages.iter().any(|after| after.contains(&StageId(i))))
            .collect();
        let consumers = self
            .stages
            .iter()
            .enumerate()
            .map(|(i, after)| Consumer {
                shared: shared.clone(),
                cursor: cursors[i].clone(),
                upstream: if after.is_empty() {
                    vec![published.clone()]
                } else {
                    after.iter().map(|s| cursors[s.0].clone()).collect()
                },
                processed: 0,
                available_cached: 0,
            })
            .collect();
        let gating = (0..self.stages.len())
            .filter(|&i| !followed[i])
            .map(|i| cursors[i].clone())
            .collect();
        let producer = Producer {
            shared,
            published,
            gating,
            last_published: 0,
            gate_cached: 0,
        };
        (producer, consumers)
    }
}

#[cfg(test)]
mod tests;
