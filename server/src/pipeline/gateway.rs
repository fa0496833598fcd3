//! The gateway thread: one loop that turns the wheel. Each turn it polls (sleeping only when
//! it has nothing to do now), accepts connections and reads frames (`intake.rs`), which go
//! into the ring (`sequencer.rs`); publishes a standby's replicated records; completes a
//! promotion (`promotion.rs`); inserts a Tick when idle; releases what the gate lets through
//! (`gate.rs`) into the connections' write buffers (`connections.rs`); flushes; times out
//! stalled frames; and, once asked to drain, stops when everything in the ring is answered.
//! In the `single` layout it also steps the journal and engine stages between the reads and
//! the release, so a request is answered in the turn that read it.

use std::io;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::Duration;

use engine::ring::WaitStrategy;
use mio::{Events, Interest, Poll, Token};

use crate::config::GatewaySection;
use crate::error::{Result, ServerError};
use crate::group::node::Node;
use crate::group::role::Role;
use crate::pipeline::connections::{Connections, FIRST_CONNECTION};
use crate::pipeline::engine_stage::{EngineStage, CHECKPOINT_POLL};
use crate::pipeline::gate::Gate;
use crate::pipeline::intake::Intake;
use crate::pipeline::journal_stage::JournalStage;
use crate::pipeline::net::ClientListener;
use crate::pipeline::promote;
use crate::pipeline::sequencer::Sequencer;
use crate::pipeline::shared::{Shared, Wake};
use crate::pipeline::slot::ConnRef;
use crate::pipeline::stage::Step;
use crate::telemetry::log;

pub const LISTENER: Token = Token(0);
pub const WAKER: Token = Token(1);
/// How often connection timeouts are looked at, and the longest sleep of a standby (which
/// has no Ticks of its own to wake it).
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(100);
/// A gateway turn at least this long is counted and logged (`note_turn`).
const SLOW_TURN: Duration = Duration::from_millis(20);

pub struct Gateway<L: ClientListener> {
    poll: Poll,
    intake: Intake<L>,
    conns: Connections<L::Stream>,
    sequencer: Sequencer,
    gate: Gate,
    shared: Arc<Shared>,
    wake: Arc<Wake>,
    node: Arc<Node>,
    spin: bool,
    drain_timeout: Duration,
    last_housekeeping_ns: u64,
    last_slow_turn_log_ns: u64,
    /// The `single` layout: the journal and engine stages, stepped on this thread.
    stages: Option<Stages>,
}

/// The journal and engine stages, when the gateway steps them itself (`Layout::Single`):
/// a request read in a turn is journaled, applied and answered in the same turn, with no
/// hand-off to another thread (the journal's sync is the one wait).
pub struct Stages {
    pub journal: JournalStage,
    pub engine: EngineStage,
}

impl Stages {
    /// Step both over what is published; whether either did anything. A failed journal
    /// has set the server's failed flag: the gateway's next turn fails every connection.
    fn step(&mut self) -> bool {
        let journaled = self.journal.step(Some(Duration::ZERO));
        if journaled == Step::Failed {
            return false;
        }
        let applied = self.engine.step(Some(Duration::ZERO));
        journaled != Step::Idle || applied != Step::Idle
    }
}

/// The parts the gateway turns.
pub struct Parts<L> {
    pub poll: Poll,
    pub listener: L,
    pub sequencer: Sequencer,
    pub gate: Gate,
    pub shared: Arc<Shared>,
    pub wake: Arc<Wake>,
    pub node: Arc<Node>,
}

impl<L: ClientListener> Gateway<L> {
    pub fn new(parts: Parts<L>, limits: GatewaySection, strategy: WaitStrategy) -> Result<Self> {
        let Parts {
            poll,
            mut listener,
            sequencer,
            gate,
            shared,
            wake,
            node,
        } = parts;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| ServerError::io("registering the listener", e))?;
        let registry = poll
            .registry()
            .try_clone()
            .map_err(|e| ServerError::io("cloning the poll registry", e))?;
        let now_ns = shared.clock.mono_ns();
        Ok(Gateway {
            poll,
            conns: Connections::new(registry, limits.clone()),
            drain_timeout: Duration::from_millis(limits.drain_timeout_ms),
            intake: Intake::new(listener, limits),
            sequencer,
            gate,
            shared,
            wake,
            node,
            spin: strategy == WaitStrategy::BusySpin,
            last_housekeeping_ns: now_ns,
            last_slow_turn_log_ns: 0,
            stages: None,
        })
    }

    /// Step the journal and engine stages on this thread (`Layout::Single`).
    pub fn with_stages(mut self, stages: Stages) -> Self {
        self.stages = Some(stages);
        self
    }

    fn now_ns(&self) -> u64 {
        self.shared.clock.mono_ns()
    }

    /// Serve until drained after a shutdown request, or until the journal fails.
    pub fn run(mut self) -> Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut drain_deadline_ns: Option<u64> = None;
        let mut released = 0;
        let mut stepped = false;
        let mut turn_started_ns = None;
        loop {
            if let Some(started_ns) = turn_started_ns.take() {
                self.note_turn(started_ns);
            }
            self.shared.heartbeat();
            self.poll_once(&mut events, released, stepped)?;
            let now_ns = self.now_ns();
            turn_started_ns = Some(now_ns);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self
                        .intake
                        .accept(&mut self.conns, now_ns, &self.shared.metrics),
                    WAKER => {}
                    Token(t) => {
                        let index = t - FIRST_CONNECTION;
                        if let Some(conn) = self.conns.get_mut(index) {
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                conn.readable = true;
                            }
                            if event.is_writable() {
                                self.conns.flush(index, &self.shared.metrics);
                            }
                        }
                    }
                }
            }
            if self.shared.failed.load(SeqCst) {
                self.conns.fail_all();
                return Err(ServerError::Pipeline("the journal failed".into()));
            }
            let draining = self.shared.draining.load(SeqCst);
            if draining && drain_deadline_ns.is_none() {
                drain_deadline_ns = Some(self.begin_drain());
            }
            // While draining, requests still arriving are answered SHUTTING_DOWN.
            self.sequencer.publish_replicated();
            promote::try_complete(&self.node, &mut self.sequencer);
            self.intake.serve_reads(
                &mut self.conns,
                &mut self.sequencer,
                &self.node,
                &self.shared,
            );
            if !draining && self.node.role() == Role::Primary {
                self.sequencer.maybe_tick();
            }
            stepped = self.step_stages();
            released = self.release();
            self.conns.flush_all(&self.shared.metrics);
            self.housekeeping();
            self.shared
                .metrics
                .ring_occupancy
                .store(self.sequencer.published() - self.gate.processed(), Relaxed);
            if let Some(deadline_ns) = drain_deadline_ns {
                let all_answered = self.gate.processed() == self.sequencer.published();
                let all_sent = self.conns.all_sent();
                if (all_answered && all_sent) || self.now_ns() >= deadline_ns {
                    log::info(
                        "drained",
                        &[
                            ("answered_all", &all_answered),
                            ("sent_all", &all_sent),
                            ("last_seq", &self.shared.release.durable()),
                        ],
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Step the journal and engine stages if this thread holds them (until neither has
    /// anything published left); with nothing to step, a checkpoint under way goes on.
    /// Whether they did anything.
    fn step_stages(&mut self) -> bool {
        let Some(stages) = &mut self.stages else {
            return false;
        };
        let mut any = false;
        while stages.step() {
            any = true;
        }
        if !any && !self.shared.failed.load(SeqCst) {
            stages.engine.while_idle();
        }
        any
    }

    /// Poll without sleeping only when there is work this thread can do now: socket bytes
    /// not yet read (a turn gave way to others), connections held back by backpressure that
    /// the answers just released may have freed, replicated records waiting, stages that
    /// stepped this turn (their answers may be durable by now). A connection that stays
    /// blocked waits for the next release, asleep: never a spin.
    fn poll_once(&mut self, events: &mut Events, released: u64, stepped: bool) -> Result<()> {
        let any_blocked = self.conns.iter().any(|c| c.blocked);
        let busy = stepped
            || (released > 0 && any_blocked)
            || self.sequencer.replicated_waiting()
            || self
                .conns
                .iter()
                .any(|c| c.readable && !c.blocked && !c.closing);
        let checkpointing = self
            .stages
            .as_ref()
            .is_some_and(|s| s.engine.checkpoint_under_way());
        let timeout = if self.spin || busy {
            Duration::ZERO
        } else if checkpointing {
            CHECKPOINT_POLL // a checkpoint under way goes on while the node is quiet
        } else if self.node.role().follows() {
            HOUSEKEEPING_EVERY // no Ticks of its own: the primary's arrive
        } else {
            self.sequencer.until_next_tick().min(HOUSEKEEPING_EVERY)
        };
        let mut timeout = Some(timeout);
        if timeout != Some(Duration::ZERO) {
            self.wake.going_to_sleep();
            // Anything that arrived before the flag was up would not wake us: look once more.
            let bound = self.release_bound();
            if self.gate.ready(bound)
                || self.sequencer.replicated_waiting()
                || self.node.role() == Role::Promoting
            {
                timeout = Some(Duration::ZERO);
            }
        }
        let polled = self.poll.poll(events, timeout);
        self.wake.awake();
        match polled {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(ServerError::io("poll", e)),
        }
    }

    /// A turn (from the poll's return to the next poll) that took long means the gateway
    /// itself was held up: every request in the ring waited for it. Counted, and logged at
    /// most once a second, so a stall can be told apart from a slow disk or a busy engine.
    fn note_turn(&mut self, started_ns: u64) {
        let now_ns = self.now_ns();
        let took_ns = now_ns.saturating_sub(started_ns);
        if took_ns < SLOW_TURN.as_nanos() as u64 {
            return;
        }
        self.shared.metrics.gateway_slow_turns.fetch_add(1, Relaxed);
        if now_ns >= self.last_slow_turn_log_ns + 1_000_000_000 {
            self.last_slow_turn_log_ns = now_ns;
            log::line(
                log::Level::Warn,
                "gateway_turn_slow",
                None,
                &[("ms", &(took_ns / 1_000_000))],
            );
        }
    }

    /// The highest sequence whose answer may leave: durable here (the journal's commits are
    /// pipelined, so the journal stage passing a slot means written, not yet synced) and
    /// within the replication bound.
    fn release_bound(&self) -> u64 {
        let now_ns = self.shared.clock.mono_ns();
        self.shared.release.compute(&self.node, now_ns)
    }

    /// Move every answer the gate lets through into its connection's write buffer; how many.
    fn release(&mut self) -> u64 {
        let bound = self.release_bound();
        // A standby's clients get the primary's events from the primary.
        let push_events = !self.node.role().follows();
        let Gateway {
            gate,
            conns,
            shared,
            ..
        } = self;
        let metrics = &shared.metrics;
        let now_ns = shared.clock.mono_ns();
        gate.release(bound, |slot| {
            metrics
                .gate_wait_ns
                .observe(now_ns.saturating_sub(slot.published_mono_ns));
            if slot.conn != ConnRef::NONE {
                metrics
                    .request_ns
                    .observe(now_ns.saturating_sub(slot.received_mono_ns));
            }
            conns.deliver(slot, push_events, metrics);
        })
    }

    fn housekeeping(&mut self) {
        let now_ns = self.now_ns();
        if now_ns < self.last_housekeeping_ns + HOUSEKEEPING_EVERY.as_nanos() as u64 {
            return;
        }
        self.last_housekeeping_ns = now_ns;
        self.conns.time_out_frames(now_ns, &self.shared.metrics);
    }

    /// Stop taking connections and requests; answer what is in the ring. The deadline.
    fn begin_drain(&mut self) -> u64 {
        self.intake.stop_listening(self.poll.registry());
        self.shared.metrics.serving.store(0, Relaxed);
        log::info(
            "draining",
            &[(
                "in_ring",
                &(self.sequencer.published() - self.gate.processed()),
            )],
        );
        self.now_ns() + self.drain_timeout.as_nanos() as u64
    }
}
