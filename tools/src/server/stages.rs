//! The two stages that consume the ring side by side: the journaler (group commit: every
//! command it can see, one write, one sync, then it releases them) and the engine (applies
//! each command, answers each query, writes the answer into the slot). Neither waits for the
//! other; the release gate waits for both.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::ring::Consumer;
use std::collections::HashMap;

use engine::{Command, Engine, Event, Outcome, Output, Query, Request, SkuId};

use super::log::{self, Level};
use super::node::Node;
use super::slot::Slot;
use super::{Shared, Wake};
use crate::data_dir::Journaler;

/// Records in one group commit at most (the writer also caps a commit at 4 MiB).
const JOURNAL_BATCH_MAX: usize = 16_384;
/// A stage looks at the stop flag at least this often.
const STAGE_POLL: Duration = Duration::from_millis(50);
/// How far ahead of the command being applied the engine stage prefetches.
const PREFETCH_DISTANCE: u64 = 4;

pub fn run_journaler(
    mut ring: Consumer<Slot>,
    mut journaler: Journaler,
    shared: Arc<Shared>,
    wake: Arc<Wake>,
    node: Arc<Node>,
) {
    let metrics = &shared.metrics;
    loop {
        let Some(batch) = ring.read_up_to(JOURNAL_BATCH_MAX, Some(STAGE_POLL)) else {
            if shared.stop.load(SeqCst) {
                return;
            }
            continue;
        };
        let mut records = 0u64;
        let started = Instant::now();
        let mut result = Ok(journaler.next_seq() - 1);
        for (_, slot) in batch.iter() {
            if slot.is_command() {
                if let Err(e) = journaler.append(slot.timestamp_ns, &slot.request) {
                    result = Err(e);
                    break;
                }
                records += 1;
            }
        }
        if result.is_ok() && records > 0 {
            result = journaler.commit();
        }
        match result {
            Ok(durable) => {
                if records > 0 {
                    metrics.journal_commits.fetch_add(1, Relaxed);
                    metrics.journal_records.fetch_add(records, Relaxed);
                    metrics.journal_batch.observe(records);
                    metrics
                        .journal_sync_ns
                        .observe(started.elapsed().as_nanos() as u64);
                }
                metrics.durable_seq.store(durable, Relaxed);
                // Releasing the batch is what lets the gate answer these sequences.
                drop(batch);
                wake.nudge();
                if node.replicated && records > 0 {
                    node.ack_signal.poke(); // a standby acks what it synced at once
                }
            }
            Err(e) => {
                // Nothing in this batch is durable and the writer is poisoned: hold the batch
                // (the gate never passes it), tell the gateway, and let the process exit so a
                // restart recovers exactly what is on disk.
                let code = e
                    .downcast_ref::<journal::JournalError>()
                    .map(|j| log::journal_code(j.code));
                log::line(
                    Level::Error,
                    "journal_failed",
                    code,
                    &[("error", &format!("{e:#}"))],
                );
                shared.fail();
                wake.nudge();
                std::mem::forget(batch);
                return;
            }
        }
    }
}

pub fn run_engine(
    mut ring: Consumer<Slot>,
    mut engine: Engine,
    mut next_seq: u64,
    shared: Arc<Shared>,
    wake: Arc<Wake>,
    node: Arc<Node>,
) {
    let metrics = &shared.metrics;
    let mut waitlists = WaitlistGauge::default();
    loop {
        let Some(batch) = ring.read(Some(STAGE_POLL)) else {
            if shared.stop.load(SeqCst) {
                return;
            }
            continue;
        };
        for (seq, slot) in batch.iter() {
            let ahead = seq + PREFETCH_DISTANCE;
            if ahead <= batch.last_sequence() {
                let next = batch.get(ahead);
                if next.is_command() {
                    engine.prefetch(&next.request);
                }
            }
            // SAFETY: the engine stage is the only writer of `output`, it holds `seq` in
            // this batch, and the gate (the only reader) follows this stage.
            let out = unsafe { slot.output.get_mut() };
            match &slot.query {
                Some(query) => {
                    out.seq = 0;
                    out.output.events.clear();
                    out.answer = Some(engine.query(query));
                }
                None => {
                    engine.apply(slot.timestamp_ns, &slot.request, &mut out.output);
                    out.seq = next_seq;
                    out.answer = None;
                    if replicator::checkpoints::is_checkpoint(next_seq) {
                        node.checkpoint(next_seq, engine.hash());
                    }
                    next_seq += 1;
                    waitlists.after(&engine, &slot.request, &out.output);
                }
            }
        }
        metrics.applied_seq.store(next_seq - 1, Relaxed);
        shared.engine_hash.store(engine.hash(), Relaxed);
        metrics.waitlist_entries.store(waitlists.total, Relaxed);
        metrics
            .waitlist_longest
            .store(u64::from(waitlists.max), Relaxed);
        drop(batch);
        wake.nudge();
    }
}

/// Buyers on waitlists, kept exact by re-reading the length of every SKU whose list a
/// command may have changed (a retried join changes nothing, and reading tells so).
#[derive(Default)]
struct WaitlistGauge {
    lengths: HashMap<SkuId, u32>,
    total: u64,
    max: u32,
}

impl WaitlistGauge {
    fn after(&mut self, engine: &Engine, request: &Request, out: &Output) {
        match (&request.command, &out.outcome) {
            (_, Outcome::WaitlistJoined { sku, .. }) | (_, Outcome::SkuDelisted { sku, .. }) => {
                self.refresh(engine, *sku)
            }
            (Command::Restock { sku, .. }, _) => self.refresh(engine, *sku),
            _ => {}
        }
        for event in &out.events {
            if let Event::WaitlistOrderCreated { sku, .. } | Event::WaitlistDropped { sku, .. } =
                event
            {
                self.refresh(engine, *sku);
            }
        }
    }

    fn refresh(&mut self, engine: &Engine, sku: SkuId) {
        let len = match engine.query(&Query::Stock { sku }) {
            engine::Answer::Stock(view) => view.waitlist_len,
            _ => 0,
        };
        let old = if len == 0 {
            self.lengths.remove(&sku)
        } else {
            self.lengths.insert(sku, len)
        };
        let old = old.unwrap_or(0);
        self.total = self.total + u64::from(len) - u64::from(old);
        if len >= self.max {
            self.max = len;
        } else if old == self.max {
            self.max = self.lengths.values().copied().max().unwrap_or(0);
        }
    }
}
