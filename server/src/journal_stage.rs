//! The journal stage: group commit from the ring. It takes every command it can see (up to a
//! batch), appends each to the journal (checking that the writer gives it the sequence the
//! sequencer stamped), writes and syncs them as one commit, and releases them: that release
//! is what lets the gate answer them. A failed write or sync holds the batch forever (the gate
//! never passes it) and fails the server, so a restart recovers exactly what is on disk.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::Duration;

use engine::ring::Consumer;

use crate::journaler::Journaler;
use crate::node::Node;
use crate::ops::log::{self, Level};
use crate::shared::{Shared, Wake};
use crate::slot::Slot;
use crate::stage::{check_sequence, Step, STAGE_POLL};

/// Records in one group commit at most (the writer also caps a commit at 4 MiB).
const JOURNAL_BATCH_MAX: usize = 16_384;
pub struct JournalStage {
    ring: Consumer<Slot>,
    journaler: Journaler,
    shared: Arc<Shared>,
    wake: Arc<Wake>,
    node: Arc<Node>,
}

impl JournalStage {
    pub fn new(
        ring: Consumer<Slot>,
        journaler: Journaler,
        shared: Arc<Shared>,
        wake: Arc<Wake>,
        node: Arc<Node>,
    ) -> JournalStage {
        JournalStage {
            ring,
            journaler,
            shared,
            wake,
            node,
        }
    }

    /// Until the server stops or the journal fails.
    pub fn run(mut self) {
        loop {
            match self.step(Some(STAGE_POLL)) {
                Step::Failed => return,
                Step::Idle if self.shared.stop.load(SeqCst) => return,
                _ => {}
            }
        }
    }

    /// Commit what is published, waiting up to `wait` for something (`Some(ZERO)`: not at
    /// all).
    pub fn step(&mut self, wait: Option<Duration>) -> Step {
        let metrics = &self.shared.metrics;
        let Some(batch) = self.ring.read_up_to(JOURNAL_BATCH_MAX, wait) else {
            return Step::Idle;
        };
        let started_ns = self.shared.clock.mono_ns();
        let mut records = 0u64;
        let mut result = Ok(self.journaler.next_seq() - 1);
        for (_, slot) in batch.iter() {
            if !slot.is_command() {
                continue;
            }
            match self.journaler.append(slot.timestamp_ns, &slot.request) {
                Ok(seq) => check_sequence("journal", slot.seq, seq),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            records += 1;
        }
        if result.is_ok() && records > 0 {
            result = self.journaler.commit();
        }
        match result {
            Ok(durable) => {
                if records > 0 {
                    metrics.journal_commits.fetch_add(1, Relaxed);
                    metrics.journal_records.fetch_add(records, Relaxed);
                    metrics.journal_batch.observe(records);
                    metrics
                        .journal_sync_ns
                        .observe(self.shared.clock.mono_ns().saturating_sub(started_ns));
                }
                metrics.durable_seq.store(durable, Relaxed);
                let released = batch.len();
                // Releasing the batch is what lets the gate answer these sequences.
                drop(batch);
                self.wake.nudge();
                if self.node.policy.replicated && records > 0 {
                    // A standby acks what it synced at once.
                    self.node.follower.ack_signal.poke();
                }
                Step::Released(released)
            }
            Err(e) => {
                log::line(
                    Level::Error,
                    "journal_failed",
                    Some(log::journal_code(e.code)),
                    &[("error", &e)],
                );
                self.shared.fail();
                self.wake.nudge();
                // Nothing in this batch is durable and the writer is poisoned: hold the batch
                // (the gate never passes it).
                std::mem::forget(batch);
                Step::Failed
            }
        }
    }
}
