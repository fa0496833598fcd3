//! The engine stage: applies each command (speculatively: before it is durable; nothing it
//! computes leaves until the gate says so), answers each query, and writes the result into
//! the slot for the gate. It prefetches what the request a few slots ahead will touch, so
//! that cache miss overlaps this one's work. It checks that each command's sequence is the
//! next, records rolling-hash checkpoints, keeps the waitlist gauges exact, and drafts each
//! command's feed events for the feed stage when the feed is on.

use std::collections::HashMap;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::Duration;

use engine::feed::FeedEvent;
use engine::ring::Consumer;
use engine::{Command, Engine, Event, Outcome, Output, Query, Request, SkuId};

use crate::group::node::Node;
use crate::pipeline::checkpoints::Checkpointer;
use crate::pipeline::shared::{Shared, Wake};
use crate::pipeline::slot::Slot;
use crate::pipeline::stage::{check_sequence, Step, STAGE_POLL};

/// How long the stage waits for work while a checkpoint is under way (then steps it).
pub const CHECKPOINT_POLL: Duration = Duration::from_micros(100);

/// How far ahead of the command being applied the engine stage prefetches.
const PREFETCH_DISTANCE: u64 = 4;

pub struct EngineStage {
    ring: Consumer<Slot>,
    engine: Engine,
    /// The sequence the next command must carry.
    next_seq: u64,
    shared: Arc<Shared>,
    wake: Arc<Wake>,
    node: Arc<Node>,
    waitlists: WaitlistGauge,
    /// When the last batch was done, and whether more was waiting then: the next batch's
    /// start minus that is time the stage sat with work waiting (descheduled).
    last_done_ns: u64,
    more_waiting: bool,
    /// Checkpoints of this engine, if they are on.
    checkpoints: Option<Checkpointer>,
    /// Set when the feed is on: each command's events are drafted into its slot.
    feed_scratch: Option<Vec<FeedEvent>>,
}

impl EngineStage {
    pub fn new(
        ring: Consumer<Slot>,
        engine: Engine,
        next_seq: u64,
        shared: Arc<Shared>,
        wake: Arc<Wake>,
        node: Arc<Node>,
    ) -> EngineStage {
        EngineStage {
            ring,
            engine,
            next_seq,
            shared,
            wake,
            node,
            waitlists: WaitlistGauge::default(),
            last_done_ns: 0,
            more_waiting: false,
            checkpoints: None,
            feed_scratch: None,
        }
    }

    /// Draft each command's feed events into its slot for the feed stage.
    pub fn with_feed(mut self) -> EngineStage {
        self.feed_scratch = Some(Vec::new());
        self
    }

    /// Checkpoint the engine as `checkpoints` says (`Server::start_node`).
    pub fn with_checkpoints(mut self, checkpoints: Checkpointer) -> EngineStage {
        self.checkpoints = Some(checkpoints);
        self
    }

    /// Whether a checkpoint is under way: whoever steps this stage looks again within
    /// `CHECKPOINT_POLL` instead of sleeping, so the checkpoint goes on while it is quiet.
    pub fn checkpoint_under_way(&self) -> bool {
        self.checkpoints.as_ref().is_some_and(|c| c.under_way())
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn run(mut self) {
        loop {
            // A checkpoint under way goes on while the ring is quiet: look, don't sleep.
            let wait = match self.checkpoint_under_way() {
                true => CHECKPOINT_POLL,
                false => STAGE_POLL,
            };
            if self.step(Some(wait)) == Step::Idle {
                if self.shared.stop.load(SeqCst) {
                    return;
                }
                self.while_idle();
            }
        }
    }

    /// Nothing was waiting: go on with a checkpoint under way while the ring stays quiet.
    pub fn while_idle(&mut self) {
        if let Some(c) = &mut self.checkpoints {
            let ring = &mut self.ring;
            let mut quiet = || !ring.has_ready();
            c.while_quiet(&mut self.engine, self.next_seq - 1, &mut quiet);
        }
    }

    /// Apply what is published, waiting up to `wait` for something.
    pub fn step(&mut self, wait: Option<Duration>) -> Step {
        let Some(batch) = self.ring.read(wait) else {
            return Step::Idle;
        };
        let metrics = &self.shared.metrics;
        if self.more_waiting {
            let gap = self
                .shared
                .clock
                .mono_ns()
                .saturating_sub(self.last_done_ns);
            metrics.engine_gap_ns.observe(gap);
            metrics.engine_gap_max_ns.fetch_max(gap, Relaxed);
        }
        let engine = &mut self.engine;
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
                    out.output.events.clear();
                    out.answer = Some(engine.query(query));
                }
                None => {
                    check_sequence("engine", slot.seq, self.next_seq);
                    engine.apply(slot.timestamp_ns, &slot.request, &mut out.output);
                    out.answer = None;
                    if let Some(scratch) = &mut self.feed_scratch {
                        let (seq, at_ns) = (slot.seq, slot.timestamp_ns);
                        out.feed
                            .draft(engine, seq, at_ns, &slot.request, &out.output, scratch);
                    }
                    if replicator::checkpoints::is_checkpoint(slot.seq) {
                        self.node.checkpoint(slot.seq, engine.hash());
                    }
                    self.next_seq += 1;
                    self.waitlists.after(engine, &slot.request, &out.output);
                }
            }
        }
        let released = batch.len();
        metrics.applied_seq.store(self.next_seq - 1, Relaxed);
        metrics.limits.store(&engine.limits());
        metrics
            .orders_retired
            .store(engine.retired().retired_total(), Relaxed);
        self.shared.engine_hash.store(engine.hash(), Relaxed);
        metrics
            .waitlist_entries
            .store(self.waitlists.total, Relaxed);
        metrics
            .waitlist_longest
            .store(u64::from(self.waitlists.max), Relaxed);
        drop(batch);
        self.wake.nudge();
        self.last_done_ns = self.shared.clock.mono_ns();
        self.more_waiting = self.ring.has_ready();
        // After the release: the gate and the clients never wait for a checkpoint's step.
        if let Some(c) = &mut self.checkpoints {
            c.between_batches(&mut self.engine, self.next_seq - 1);
        }
        Step::Released(released)
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
