//! The journal stage: group commit from the ring. It takes every command it can see (up to a
//! batch), appends each to the journal (checking that the writer gives it the sequence the
//! sequencer stamped), and submits them as one commit. Commits are pipelined: the stage
//! releases a batch once it is written and goes on to the next while the sync runs (up to
//! `journal.commits_in_flight` commits written and not yet durable). The gate answers nothing
//! above the durable sequence, which the writer's sync side publishes, in order, through the
//! hook set here. A failed write or sync fails the server, and the durable sequence never
//! passes it, so a restart recovers exactly what is on disk and nothing after it was answered.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::Duration;

use engine::ring::Consumer;

use journal::{DurableHook, Synced};

use crate::pipeline::journaler::Journaler;
use crate::pipeline::shared::{Shared, Wake};
use crate::pipeline::slot::Slot;
use crate::pipeline::stage::{check_sequence, Step, STAGE_POLL};
use crate::telemetry::log::{self, Level};
use replicator::follower::AckSignal;

/// Records in one group commit at most (the writer also caps a commit at 4 MiB).
const JOURNAL_BATCH_MAX: usize = 16_384;
pub struct JournalStage {
    ring: Consumer<Slot>,
    journaler: Journaler,
    shared: Arc<Shared>,
    wake: Arc<Wake>,
}

impl JournalStage {
    /// `commits_in_flight`: 1 syncs each commit on this thread before the next (what a stepped
    /// test wants: durable when `step` returns). `acker`: poked as commits become durable (a
    /// replicated node's standby side acks them).
    pub fn new(
        ring: Consumer<Slot>,
        mut journaler: Journaler,
        commits_in_flight: usize,
        shared: Arc<Shared>,
        wake: Arc<Wake>,
        acker: Option<Arc<AckSignal>>,
    ) -> JournalStage {
        journaler.set_pipeline(
            commits_in_flight,
            durable_hook(shared.clone(), wake.clone(), acker),
        );
        JournalStage {
            ring,
            journaler,
            shared,
            wake,
        }
    }

    /// How commits go to disk (the `io` of the `serving` log line).
    pub fn describe_io(&self) -> String {
        self.journaler.describe()
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
    /// all). With the pipeline full, first wait for the oldest commit's sync: a batch is
    /// taken only when it can be written at once.
    pub fn step(&mut self, wait: Option<Duration>) -> Step {
        if let Err(e) = self.journaler.wait_for_room() {
            fail_server(&self.shared, &self.wake, &e);
            return Step::Failed;
        }
        let metrics = &self.shared.metrics;
        let Some(batch) = self.ring.read_up_to(JOURNAL_BATCH_MAX, wait) else {
            return Step::Idle;
        };
        let mut records = 0u64;
        let mut last_seq = 0;
        let mut result = Ok(());
        for (_, slot) in batch.iter() {
            if !slot.is_command() {
                continue;
            }
            last_seq = slot.seq;
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
            result = self.journaler.submit().map(|_| ());
        }
        if let Err(e) = result {
            // Nothing in this batch is durable and the writer is poisoned: hold the batch
            // (the gate never passes it).
            std::mem::forget(batch);
            fail_server(&self.shared, &self.wake, &e);
            return Step::Failed;
        }
        if records > 0 {
            metrics.journal_commits.fetch_add(1, Relaxed);
            metrics.journal_records.fetch_add(records, Relaxed);
            metrics.journal_batch.observe(records);
        }
        // Written: the gate still waits for the durable sequence to pass these, and the
        // durable hook wakes it then. Only if that already happened (a fast sync, or one
        // commit in flight at most), or there is nothing to wait for (queries), did the gate
        // look before the batch was released: wake it now.
        let released = batch.len();
        drop(batch);
        // The release must be visible before the durable sequence is read: otherwise the
        // hook can publish, wake a gateway that still sees the batch unreleased, and neither
        // side wakes it again (a store buffer on x86 allows exactly that).
        std::sync::atomic::fence(SeqCst);
        if records == 0 || self.shared.release.durable() >= last_seq {
            self.wake.nudge();
        }
        Step::Released(released)
    }
}

/// The journal failed (a write here, or a sync on the sync side): answer nothing more. Logged
/// once, whichever side saw it first.
fn fail_server(shared: &Shared, wake: &Wake, e: &journal::JournalError) {
    if !shared.failed.load(SeqCst) {
        log::line(
            Level::Error,
            "journal_failed",
            Some(log::journal_code(e.code)),
            &[("error", e)],
        );
        shared.fail();
    }
    wake.nudge();
}

/// What the journal's sync side does when a commit becomes durable: publish it to the gate
/// (and to `acker`, a standby's, so it acks at once), or fail the server.
fn durable_hook(
    shared: Arc<Shared>,
    wake: Arc<Wake>,
    acker: Option<Arc<AckSignal>>,
) -> Option<DurableHook> {
    Some(Arc::new(
        move |synced: Result<Synced, &journal::JournalError>| match synced {
            Ok(synced) => {
                shared.metrics.journal_sync_ns.observe(synced.waited_ns);
                shared.release.publish_durable(synced.through_seq);
                wake.nudge();
                if let Some(acker) = &acker {
                    // A standby acks what it synced at once.
                    acker.poke();
                }
            }
            Err(e) => fail_server(&shared, &wake, e),
        },
    ))
}
