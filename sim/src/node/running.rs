//! A simulated process once it has joined: its pipeline, its node, the standby's session
//! and the primary's sessions, stepped by one turn as the gateway thread and the drivers
//! would step them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;
use engine::wire::Operation;
use engine::{ClientId, Code};
use replicator::follower::{
    Action as FollowerAction, FollowerMachine, Input as FollowerInput, Standing,
};
use replicator::primary::session::{
    Action as SessionAction, Context, Input as SessionInput, Session,
};
use replicator::primary::Sources;
use replicator::Settings;
use server::drivers::primary_hooks::PrimaryHooks;
use server::group::follower_side::{decode_records, Replicated};
use server::group::node::Node;
use server::group::role::Role;
use server::pipeline::engine_stage::EngineStage;
use server::pipeline::gate::Gate;
use server::pipeline::journal_stage::JournalStage;
use server::pipeline::promote;
use server::pipeline::sequencer::Sequencer;
use server::pipeline::shared::Shared;
use server::pipeline::slot::ConnRef;
use server::Clock;

use crate::clock::SimClock;
use crate::net::{ConnId, Delivery, NodeId};

use super::*;

/// The primary's sessions end a standby's older session through this: the connection is
/// closed at the end of the turn.
pub(super) struct SimCloser {
    pub(super) conn: ConnId,
    pub(super) closing: Arc<Mutex<Vec<ConnId>>>,
}

impl replicator::standbys::Closer for SimCloser {
    fn close(&self) {
        self.closing.lock().expect("closing").push(self.conn);
    }
}

/// The standby's session and its connection.
pub(super) struct Follow {
    pub(super) machine: FollowerMachine,
    pub(super) primary: NodeId,
    pub(super) conn: Option<ConnId>,
}

/// A process that has joined and runs.
pub(super) struct Up {
    pub(super) settings: Settings,
    pub(super) node: Arc<Node>,
    pub(super) shared: Arc<Shared>,
    pub(super) clock: Arc<SimClock>,
    pub(super) sequencer: Sequencer,
    pub(super) journal: JournalStage,
    pub(super) engine: EngineStage,
    pub(super) saver: super::checkpoints::SimSaver,
    pub(super) idle_turns: u64,
    pub(super) gate: Gate,
    pub(super) sources: Sources,
    pub(super) intake: Sender<Vec<Replicated>>,
    pub(super) follow: Option<Follow>,
    pub(super) sessions: BTreeMap<ConnId, Session>,
    pub(super) closing: Arc<Mutex<Vec<ConnId>>>,
    /// The feed events the engine stage drafted for each command this process released, as
    /// a hash of their bytes by sequence (`SimNode::drafted`).
    pub(super) drafted: Arc<Mutex<BTreeMap<u64, u64>>>,
    /// Requests waiting for room in the ring.
    pub(super) waiting: VecDeque<Request>,
    /// A promotion or new term asked for, not completed yet.
    pub(super) promoting: bool,
    /// With a slow disk: no commit before this (the run's time).
    pub(super) journal_next_ns: u64,
    pub(super) release_early: bool,
    pub(super) corrupt_seq: Option<u64>,
    pub(super) refuse_writes: bool,
}

impl Up {
    pub(super) fn send(
        &self,
        ctx: &mut Ctx,
        from: NodeId,
        conn: ConnId,
        message: &replicator::wire::Message,
    ) {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        ctx.due
            .extend(ctx.net.send(ctx.now, ctx.rng, conn, from, bytes));
    }

    /// A network delivery: to the standby's session or to a primary's session.
    pub(super) fn deliver(&mut self, ctx: &mut Ctx, id: NodeId, name: &str, delivery: Delivery) {
        match delivery {
            Delivery::Accepted { conn, from } => {
                let mut nonce = [0u8; 32];
                for chunk in nonce.chunks_mut(8) {
                    chunk.copy_from_slice(&ctx.rng.next_u64().to_le_bytes());
                }
                let closer = SimCloser {
                    conn,
                    closing: self.closing.clone(),
                };
                let peer = format!("10.0.0.{from}:{}", 40_000 + conn % 20_000);
                let session = Session::new(
                    self.settings.clone(),
                    peer,
                    self.clock.mono_ns(),
                    nonce,
                    Box::new(closer),
                );
                self.sessions.insert(conn, session);
            }
            Delivery::Dialed { conn, ok } => {
                let ours = self.follow.as_ref().is_some_and(|f| f.conn == Some(conn));
                if !ours {
                    return;
                }
                let input = if ok {
                    let mut nonce = [0u8; 32];
                    for chunk in nonce.chunks_mut(8) {
                        chunk.copy_from_slice(&ctx.rng.next_u64().to_le_bytes());
                    }
                    FollowerInput::Connected { nonce }
                } else {
                    if let Some(f) = &mut self.follow {
                        f.conn = None;
                    }
                    FollowerInput::DialFailed(format!("dial {name}'s primary failed"))
                };
                self.follower_step(ctx, id, input);
            }
            Delivery::Frame { conn, bytes } => {
                let (kind, body) = (
                    bytes[replicator::wire::FRAME_HEADER_LEN - 1],
                    &bytes[replicator::wire::FRAME_HEADER_LEN..],
                );
                if self.follow.as_ref().is_some_and(|f| f.conn == Some(conn)) {
                    self.follower_step(ctx, id, FollowerInput::Frame { kind, body });
                } else if self.sessions.contains_key(&conn) {
                    self.session_step(ctx, id, conn, SessionInput::Frame { kind, body });
                }
            }
            Delivery::Closed { conn } => {
                if self.follow.as_ref().is_some_and(|f| f.conn == Some(conn)) {
                    if let Some(f) = &mut self.follow {
                        f.conn = None;
                    }
                    self.follower_step(
                        ctx,
                        id,
                        FollowerInput::Disconnected("the primary closed".into()),
                    );
                } else if self.sessions.contains_key(&conn) {
                    let why = "the standby stopped answering or closed".into();
                    self.session_step(ctx, id, conn, SessionInput::Disconnected(why));
                }
            }
        }
    }

    pub(super) fn standing(&self) -> Standing {
        server::drivers::follower::standing_of(&self.node, &self.shared)
    }

    pub(super) fn follower_tick(&mut self, ctx: &mut Ctx, id: NodeId) {
        if self.follow.is_some() {
            self.follower_step(ctx, id, FollowerInput::Tick);
        }
    }

    /// Step the standby's session and carry out what it says, as `Follower::session` does.
    pub(super) fn follower_step(&mut self, ctx: &mut Ctx, id: NodeId, input: FollowerInput) {
        let mut pending: VecDeque<FollowerAction> = {
            let standing = self.standing();
            let Some(f) = &mut self.follow else { return };
            f.machine
                .step(self.clock.mono_ns(), input, &standing)
                .into()
        };
        while let Some(action) = pending.pop_front() {
            let answer = match action {
                FollowerAction::Dial => {
                    let f = self.follow.as_mut().expect("following");
                    let to = f.primary;
                    let dues = ctx.net.dial(ctx.now, ctx.rng, id, to, ctx.up[to]);
                    if let Some((_, _, Delivery::Dialed { conn, .. })) =
                        dues.iter().find(|(_, to_node, d)| {
                            *to_node == id && matches!(d, Delivery::Dialed { .. })
                        })
                    {
                        f.conn = Some(*conn);
                    }
                    ctx.due.extend(dues);
                    None
                }
                FollowerAction::Send(message) => {
                    if let Some(conn) = self.follow.as_ref().and_then(|f| f.conn) {
                        self.send(ctx, id, conn, &message);
                    }
                    None
                }
                FollowerAction::Close => {
                    if let Some(conn) = self.follow.as_mut().and_then(|f| f.conn.take()) {
                        ctx.due.extend(ctx.net.close(ctx.now, ctx.rng, conn, id));
                    }
                    None
                }
                FollowerAction::Adopt { epoch, history, .. } => {
                    match self.node.adopt(epoch, &history) {
                        Ok(result) => Some(FollowerInput::Adopted(result)),
                        Err(e) => Some(FollowerInput::Refused {
                            code: replicator::ReplicationCode::NotPrimary,
                            why: format!("storing the epochs: {e}"),
                        }),
                    }
                }
                FollowerAction::Following {
                    epoch,
                    from_seq,
                    primary_last_seq,
                } => {
                    server::telemetry::log::info(
                        "following",
                        &[
                            ("epoch", &epoch),
                            ("from_seq", &from_seq),
                            ("primary_last_seq", &primary_last_seq),
                        ],
                    );
                    ctx.seen.push(Seen::Follows { node: id, epoch });
                    None
                }
                FollowerAction::Records {
                    first_seq,
                    last_seq,
                    bytes,
                } => {
                    let corrupt = self.corrupt_seq;
                    let handed = decode_records(first_seq, last_seq, &bytes)
                        .map(|mut batch| {
                            for r in batch.iter_mut().filter(|r| Some(r.seq) == corrupt) {
                                r.request.client = ClientId(r.request.client.0 ^ 0x40);
                            }
                            batch
                        })
                        .and_then(|batch| self.node.follower().hand_over(batch, &self.intake));
                    match handed {
                        Ok(None) => None,
                        Ok(Some(_)) => unreachable!("the simulated intake is unbounded"),
                        Err((code, why)) => Some(FollowerInput::Refused { code, why }),
                    }
                }
                FollowerAction::Checkpoint { seq, hash } => {
                    match self.node.follower().comparer.theirs(seq, hash) {
                        Ok(()) => None,
                        Err(d) => {
                            self.node.follower().diverge(d);
                            Some(FollowerInput::Refused {
                                code: replicator::ReplicationCode::Diverged,
                                why: format!("rolling hash differs at {seq}"),
                            })
                        }
                    }
                }
                FollowerAction::SnapshotPiece { .. } => Some(FollowerInput::Refused {
                    code: replicator::ReplicationCode::CatchUpUnavailable,
                    why: "the simulator keeps every journal segment: no snapshot is sent".into(),
                }),
                FollowerAction::Ended(ended) => {
                    self.ended(ended);
                    None
                }
            };
            if let Some(input) = answer {
                let standing = self.standing();
                if let Some(f) = &mut self.follow {
                    pending.extend(f.machine.step(self.clock.mono_ns(), input, &standing));
                }
            }
        }
    }

    /// A standby session ended: log it as the follower thread does; a cut restarts the
    /// process (`pipeline_turn` sees `truncate_to`).
    pub(super) fn ended(&mut self, ended: replicator::follower::Ended) {
        use replicator::follower::Ended;
        if !ended.retries() {
            self.follow = None; // the session machine stopped for good
        }
        match ended {
            Ended::Halted => {}
            Ended::Truncate(seq) => {
                *self.node.follower().truncate_to.lock().expect("node lock") = Some(seq);
            }
            Ended::Stopped(code, why) => server::telemetry::log::line(
                server::telemetry::log::Level::Error,
                "standby_stopped",
                Some(server::telemetry::log::repl_code(code)),
                &[("why", &why)],
            ),
            Ended::Snapshot(_) => unreachable!("no snapshot is sent in the simulator"),
            Ended::Lost(why) | Ended::Refused(_, why) => {
                server::telemetry::log::info("primary_unreachable", &[("why", &why)])
            }
            Ended::StalePrimary { primary_epoch } => server::telemetry::log::info(
                "stale_primary_ignored",
                &[("primary_epoch", &primary_epoch)],
            ),
        }
    }

    pub(super) fn sessions_tick(&mut self, ctx: &mut Ctx, id: NodeId) {
        let conns: Vec<ConnId> = self.sessions.keys().copied().collect();
        for conn in conns {
            self.session_step(ctx, id, conn, SessionInput::Tick);
        }
    }

    /// Step a primary's session with one standby, as `primary::Conn::step` does.
    pub(super) fn session_step(
        &mut self,
        ctx: &mut Ctx,
        id: NodeId,
        conn: ConnId,
        input: SessionInput,
    ) {
        let hooks = PrimaryHooks {
            node: self.node.clone(),
            shared: self.shared.clone(),
        };
        let context = Context {
            sources: &self.sources,
            hooks: &hooks,
            standbys: self.node.standbys(),
            wall_ns: self.clock.wall_ns(),
        };
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let mut pending: VecDeque<SessionAction> =
            session.step(self.clock.mono_ns(), input, &context).into();
        while let Some(action) = pending.pop_front() {
            match action {
                SessionAction::Send(message) => {
                    let mut bytes = Vec::new();
                    message.encode(&mut bytes);
                    ctx.due
                        .extend(ctx.net.send(ctx.now, ctx.rng, conn, id, bytes));
                }
                SessionAction::SendSnapshot => {
                    let sent = Err("the simulator keeps no snapshots".to_string());
                    let session = self.sessions.get_mut(&conn).expect("stepping it");
                    pending.extend(session.step(
                        self.clock.mono_ns(),
                        SessionInput::SnapshotSent(sent),
                        &context,
                    ));
                }
                SessionAction::Close => ctx.due.extend(ctx.net.close(ctx.now, ctx.rng, conn, id)),
            }
        }
        if self.sessions.get(&conn).is_some_and(|s| s.done()) {
            self.sessions.remove(&conn);
        }
    }

    /// The gateway's turn: intake, replicated records, promotion, Ticks, both stages, the
    /// gate.
    pub(super) fn pipeline_turn(
        &mut self,
        ctx: &mut Ctx,
        id: NodeId,
        slow_disk: bool,
    ) -> Option<Exit> {
        if let Some(seq) = self
            .node
            .follower()
            .truncate_to
            .lock()
            .expect("node lock")
            .take()
        {
            return Some(Exit::Truncate(seq));
        }
        let now_ns = self.clock.mono_ns();
        // Intake: what the role refuses is answered at once; the rest is sequenced.
        while let Some(r) = self.waiting.front() {
            if r.max_epoch > self.node.epoch() {
                self.node.fenced_by(
                    r.max_epoch,
                    &format!("client {} was welcomed at epoch {}", r.client, r.max_epoch),
                );
            }
            let refusal = match r.op {
                Operation::Command(_) if self.refuse_writes => Some(Code::StandbyUnavailable),
                Operation::Command(_) => self.node.write_refusal(),
                Operation::Query(_) => None,
            };
            if let Some(code) = refusal {
                let r = self.waiting.pop_front().expect("front");
                ctx.answers.push(ClientAnswer {
                    client: r.client,
                    generation: r.generation,
                    request: r.id,
                    node: id,
                    epoch: self.node.epoch(),
                    seq: 0,
                    reply: Reply::Refused(code),
                });
                continue;
            }
            if self.sequencer.free_slots() == 0 {
                break; // backpressure: the rest waits for room
            }
            let r = self.waiting.pop_front().expect("front");
            let conn = ConnRef {
                index: r.client as u32,
                generation: r.generation,
            };
            self.sequencer.publish_requests(
                conn,
                ClientId(client_id(r.client)),
                now_ns,
                [(r.id, r.op)].into_iter(),
            );
        }
        self.sequencer.publish_replicated();
        promote::try_complete(&self.node, &mut self.sequencer);
        if self.promoting {
            match self.node.promotion_outcome() {
                Some(Ok(p)) => {
                    self.promoting = false;
                    ctx.seen.push(Seen::Leads {
                        node: id,
                        epoch: p.epoch,
                        last_seq: p.start_seq - 1,
                    });
                }
                Some(Err(e)) => return Some(Exit::Rejoin(format!("promotion failed: {e}"))),
                None => {}
            }
        }
        if self.node.role() == Role::Primary {
            self.sequencer.maybe_tick();
        }
        use server::pipeline::stage::Step;
        if ctx.now >= self.journal_next_ns {
            let step = self.journal.step(Some(Duration::ZERO));
            if step == Step::Failed || self.shared.failed.load(SeqCst) {
                return Some(Exit::Failed("the journal failed".into()));
            }
            if slow_disk && matches!(step, Step::Released(_)) {
                self.journal_next_ns = ctx.now + ctx.rng.between(5, 60) * 1_000_000;
            }
        }
        // Quiet steps on one idle turn in sixteen: a checkpoint mostly goes a step per batch,
        // so writes race the copier and copy-on-update is exercised.
        if self.engine.step(Some(Duration::ZERO)) == Step::Idle {
            self.idle_turns += 1;
            if self.idle_turns.is_multiple_of(16) {
                self.engine.while_idle();
            }
        }
        self.saver.turn(self.shared.release.durable());
        // The gate: what is durable and within the replication bound leaves.
        let durable = self.shared.release.durable();
        let bound = match self.release_early {
            true => durable, // planted: no wait for the standbys
            false => self.node.release_bound(now_ns).min(durable),
        };
        self.shared.release.set_bound(bound);
        let epoch = self.node.epoch();
        let answers = &mut *ctx.answers;
        let mut drafted = self.drafted.lock().expect("drafted");
        self.gate.release(bound, |slot| {
            // SAFETY: the gate follows the engine stage, which wrote the output.
            let out = unsafe { slot.output.get() };
            if slot.is_command() {
                drafted.insert(slot.seq, super::feed_hash(out.feed.bytes()));
            }
            if slot.conn == ConnRef::NONE {
                return;
            }
            let reply = match &out.answer {
                Some(answer) => Reply::Answer(answer.clone()),
                None => Reply::Outcome(out.output.outcome),
            };
            answers.push(ClientAnswer {
                client: slot.conn.index as usize,
                generation: slot.conn.generation,
                request: slot.request.request,
                node: id,
                epoch,
                seq: slot.seq,
                reply,
            });
        });
        for conn in std::mem::take(&mut *self.closing.lock().expect("closing")) {
            ctx.due.extend(ctx.net.close(ctx.now, ctx.rng, conn, id));
            self.sessions.remove(&conn);
        }
        None
    }
}
