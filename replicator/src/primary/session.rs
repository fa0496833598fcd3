//! One standby's session on the primary's side, as a state machine without I/O: the
//! handshake (its HELLO, this primary's CHALLENGE, its PROOF) and what follows from where the
//! standby stands (fence this node if the standby knows a newer epoch; refuse when this node
//! is no primary; tell a failback standby where to cut; refuse one ahead or diverged; send a
//! snapshot to one too far behind; let a new one take the configuration; claim its slot),
//! then the stream (catch-up from the journal files, commits from the backlog, checkpoints,
//! heartbeats) and its acks. `step(now, input, ctx)` returns what to send; the table of
//! standbys and the node's hooks are updated as it goes. The primary's threads drive it
//! with sockets (`primary/mod.rs`); the simulator with simulated ones.

use crate::auth::{self, Nonce};
use crate::backlog::After;
use crate::catch_up;
use crate::code::ReplicationCode;
use crate::epoch::Epochs;
use crate::standbys::{Claim, Closer, Standbys, STREAMING};
use crate::wire::{Message, NO_TRUNCATION};
use crate::{Hooks, Level, Settings};

use super::Sources;

/// Bytes of journal read from the files per message while catching up.
pub const CATCH_UP_CHUNK: usize = 4 << 20;
/// How long a connecting standby has for the handshake.
pub const HANDSHAKE_TIMEOUT_NS: u64 = 5_000_000_000;

/// What a session reads and updates on the primary.
pub struct Context<'a> {
    pub sources: &'a Sources,
    pub hooks: &'a dyn Hooks,
    pub standbys: &'a Standbys,
    /// Wall-clock nanoseconds now (heartbeats carry it).
    pub wall_ns: u64,
}

#[derive(Debug)]
pub enum Input<'a> {
    /// One whole frame from the standby, not yet decoded.
    Frame { kind: u8, body: &'a [u8] },
    /// Bytes that are not a replication frame, or a TLS handshake that failed (`tls`).
    Garbage { why: String, tls: bool },
    /// The connection broke, or the standby closed it.
    Disconnected(String),
    /// Time passed, or the backlog moved: send what is due.
    Tick,
    /// `Action::SendSnapshot` is done: its sequence, or why it could not be sent.
    SnapshotSent(Result<u64, String>),
}

pub enum Action {
    Send(Message),
    /// Send the newest snapshot file (checked first) in SNAPSHOT_CHUNK frames, then step
    /// `SnapshotSent`.
    SendSnapshot,
    /// Close the connection (after the sends before it); the session is over.
    Close,
}

enum Phase {
    AwaitHello {
        /// Fresh for this session's CHALLENGE.
        nonce: Nonce,
        since_ns: u64,
    },
    AwaitProof {
        hello: Hello,
        /// The HELLO's body as received: both proofs cover it.
        body: Vec<u8>,
        nonce: Nonce,
        since_ns: u64,
    },
    /// The snapshot is being sent.
    Snapshot {
        node: String,
        last_seq: u64,
    },
    /// Nothing more to send; the standby closes (its acks are read and dropped).
    Draining {
        since_ns: u64,
    },
    Streaming(Stream),
    Done,
}

struct Hello {
    node: String,
    epoch: u64,
    last_seq: u64,
    hash: u64,
}

struct Stream {
    node: String,
    claim: Claim,
    /// The last sequence sent.
    pos: u64,
    checkpoint_sent: u64,
    last_sent_ns: u64,
}

pub struct Session {
    settings: Settings,
    /// The standby's address, for logs.
    peer: String,
    phase: Phase,
    heard_ns: u64,
    /// Filled by `step` when the table needs a closer for this session.
    closer: Option<Box<dyn Closer>>,
}

impl Session {
    /// A session for the connection from `peer`, accepted at `now_ns`; `nonce` is fresh for
    /// its CHALLENGE; `closer` ends it from outside (a newer session of the same standby
    /// takes its slot).
    pub fn new(
        settings: Settings,
        peer: String,
        now_ns: u64,
        nonce: Nonce,
        closer: Box<dyn Closer>,
    ) -> Session {
        Session {
            settings,
            peer,
            phase: Phase::AwaitHello {
                nonce,
                since_ns: now_ns,
            },
            heard_ns: now_ns,
            closer: Some(closer),
        }
    }

    /// Ended: the driver closes the connection and its threads stop.
    pub fn done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    pub fn streaming(&self) -> bool {
        matches!(self.phase, Phase::Streaming(_))
    }

    /// In the handshake (the driver reads with the handshake's small frame limit).
    pub fn handshaking(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitHello { .. } | Phase::AwaitProof { .. }
        )
    }

    /// The last sequence sent, while streaming (the driver waits for the backlog past it).
    pub fn position(&self) -> Option<u64> {
        match &self.phase {
            Phase::Streaming(s) => Some(s.pos),
            _ => None,
        }
    }

    pub fn step(&mut self, now_ns: u64, input: Input, ctx: &Context) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Frame { kind, body } => {
                self.heard_ns = now_ns;
                self.on_frame(now_ns, kind, body, ctx, &mut out);
            }
            Input::Garbage { why, tls } => {
                if matches!(self.phase, Phase::AwaitHello { .. }) {
                    // With TLS the handshake happens at the first read: a plaintext standby,
                    // or a certificate the CA did not sign, fails here.
                    let code = match tls {
                        true => ReplicationCode::TlsRequired,
                        false => ReplicationCode::BadFrame,
                    };
                    self.log(
                        ctx,
                        Level::Warn,
                        "replication_handshake_failed",
                        Some(code),
                        format!("peer={} error=\"{why}\"", self.peer),
                    );
                    self.end(ctx, &mut out, "an unreadable frame");
                } else {
                    self.end(ctx, &mut out, &format!("read: {why}"));
                }
            }
            Input::Disconnected(why) => {
                if matches!(self.phase, Phase::AwaitProof { .. }) {
                    self.abandoned(ctx, &why);
                }
                self.end(ctx, &mut out, &why);
            }
            Input::Tick => self.on_tick(now_ns, ctx, &mut out),
            Input::SnapshotSent(result) => self.on_snapshot_sent(now_ns, result, ctx, &mut out),
        }
        out
    }

    fn on_tick(&mut self, now_ns: u64, ctx: &Context, out: &mut Vec<Action>) {
        match &self.phase {
            Phase::AwaitHello { since_ns, .. }
            | Phase::AwaitProof { since_ns, .. }
            | Phase::Draining { since_ns }
                if now_ns >= since_ns + HANDSHAKE_TIMEOUT_NS =>
            {
                if let Phase::AwaitProof { .. } = &self.phase {
                    self.abandoned(ctx, "no PROOF within the handshake's time");
                }
                self.end(ctx, out, "the handshake timed out");
            }
            Phase::Streaming(_) => {
                if now_ns.saturating_sub(self.heard_ns) > self.settings.timeout.as_nanos() as u64 {
                    self.end(ctx, out, "the standby stopped answering or closed");
                    return;
                }
                self.stream(now_ns, ctx, out);
            }
            _ => {}
        }
    }

    fn on_frame(
        &mut self,
        now_ns: u64,
        kind: u8,
        body: &[u8],
        ctx: &Context,
        out: &mut Vec<Action>,
    ) {
        let message = match Message::decode(kind, body) {
            Ok(m) => m,
            Err(e) => {
                let why = format!("expected a hello: {e}");
                match self.phase {
                    Phase::AwaitHello { .. } => {
                        self.refuse(ctx, out, ReplicationCode::BadFrame, why)
                    }
                    _ => self.end(ctx, out, &format!("a bad frame: {e}")),
                }
                return;
            }
        };
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::AwaitHello { nonce, since_ns } => match message {
                Message::Hello {
                    node,
                    epoch,
                    last_seq,
                    hash,
                    nonce: _,
                } => {
                    if !crate::standbys::valid_node_name(&node) {
                        let why = format!(
                            "the standby's name {node:?} is not 1 to 64 of A-Z a-z 0-9 . _ -"
                        );
                        self.refuse(ctx, out, ReplicationCode::BadFrame, why);
                        return;
                    }
                    let secret = &self.settings.secret;
                    out.push(Action::Send(Message::Challenge {
                        nonce,
                        proof: auth::primary_proof(secret, body, &nonce),
                    }));
                    self.phase = Phase::AwaitProof {
                        hello: Hello {
                            node,
                            epoch,
                            last_seq,
                            hash,
                        },
                        body: body.to_vec(),
                        nonce,
                        since_ns,
                    };
                }
                other => self.refuse(
                    ctx,
                    out,
                    ReplicationCode::BadFrame,
                    format!("expected a hello, got {other:?}"),
                ),
            },
            Phase::AwaitProof {
                hello, body, nonce, ..
            } => match message {
                Message::Proof { proof }
                    if auth::standby_proof_ok(&self.settings.secret, &body, &nonce, &proof) =>
                {
                    self.admit(now_ns, hello, ctx, out)
                }
                Message::Proof { .. } => self.refuse(
                    ctx,
                    out,
                    ReplicationCode::BadSecret,
                    "the standby could not prove it knows replication.secret".into(),
                ),
                Message::Refuse { message, .. } => self.refuse(
                    ctx,
                    out,
                    ReplicationCode::BadSecret,
                    format!("the standby refused: {message}"),
                ),
                other => self.refuse(
                    ctx,
                    out,
                    ReplicationCode::BadSecret,
                    format!("expected a PROOF, got {other:?}"),
                ),
            },
            Phase::Streaming(stream) => {
                self.phase = Phase::Streaming(stream);
                self.on_stream_message(message, ctx, out);
            }
            Phase::Draining { since_ns } => self.phase = Phase::Draining { since_ns },
            other => self.phase = other,
        }
    }

    /// The standby proved it knows the secret: decide from where it stands.
    fn admit(&mut self, now_ns: u64, hello: Hello, ctx: &Context, out: &mut Vec<Action>) {
        let Hello {
            node,
            epoch,
            last_seq,
            hash,
        } = hello;
        let hooks = ctx.hooks;
        let sources = ctx.sources;
        let epochs: Epochs = hooks.epochs();
        let peer = self.peer.clone();
        if epoch > epochs.epoch {
            hooks.fenced_by(
                epoch,
                &format!("standby {node} at {peer} is at epoch {epoch}"),
            );
            let why = format!(
                "this node is at epoch {}, below yours ({epoch})",
                epochs.epoch
            );
            self.refuse(ctx, out, ReplicationCode::StaleEpoch, why);
            return;
        }
        if !hooks.is_primary() {
            self.refuse(
                ctx,
                out,
                ReplicationCode::NotPrimary,
                "this node is not a primary".into(),
            );
            return;
        }
        let primary_last = sources.backlog.last_seq();
        let welcome = |truncate_to: u64| Message::Welcome {
            epoch: epochs.epoch,
            history: epochs.history.clone(),
            primary_last_seq: primary_last,
            truncate_to,
            config: sources.config.clone(),
        };
        if let Some(cut) = epochs.truncation_for(epoch, last_seq) {
            self.log(
                ctx,
                Level::Warn,
                "standby_must_truncate",
                None,
                format!("node={node} peer={peer} standby_last_seq={last_seq} truncate_to={cut}"),
            );
            out.push(Action::Send(welcome(cut)));
            self.phase = Phase::Draining { since_ns: now_ns };
            return;
        }
        if last_seq > primary_last {
            let why = format!(
                "the standby holds up to {last_seq} in epoch {epoch}; this primary ends at {primary_last}"
            );
            self.refuse(ctx, out, ReplicationCode::StandbyAhead, why);
            return;
        }
        if let Some(mine) = sources.checkpoints.hash_at(last_seq) {
            if last_seq > 1 && hash != 0 && mine != hash {
                let why =
                    format!("rolling hash at {last_seq}: standby {hash:#x}, primary {mine:#x}");
                self.refuse(ctx, out, ReplicationCode::Diverged, why);
                return;
            }
        }
        out.push(Action::Send(welcome(NO_TRUNCATION)));
        if !sources.holds(last_seq + 1) {
            // The standby starts over from a snapshot and comes back for what follows it.
            out.push(Action::SendSnapshot);
            self.phase = Phase::Snapshot { node, last_seq };
            return;
        }
        if last_seq == 0 {
            // A new standby came for the configuration and epochs; it comes back to follow.
            self.log(
                ctx,
                Level::Info,
                "standby_bootstrapped",
                None,
                format!("node={node} peer={peer}"),
            );
            self.phase = Phase::Draining { since_ns: now_ns };
            return;
        }
        // A standby that comes back replaces its own earlier session.
        let closer = self.closer.take().expect("claimed once");
        let Some(claim) = ctx.standbys.claim(&node, closer, last_seq) else {
            let slots = ctx.standbys.slots().len();
            let why = format!(
                "all {slots} standby slots hold attached standbys (replication.max_standbys on the primary)"
            );
            self.refuse(ctx, out, ReplicationCode::StandbysFull, why);
            return;
        };
        let status = &ctx.standbys.slots()[claim.slot];
        self.log(
            ctx,
            Level::Info,
            "standby_attached",
            None,
            format!(
                "node={node} peer={peer} ack={} from_seq={} primary_last_seq={primary_last}",
                status.mode().name(),
                last_seq + 1
            ),
        );
        hooks.acked();
        self.phase = Phase::Streaming(Stream {
            node,
            claim,
            pos: last_seq,
            checkpoint_sent: last_seq,
            last_sent_ns: now_ns,
        });
        self.stream(now_ns, ctx, out);
    }

    /// Send what the standby lacks, checkpoints, and a heartbeat when idle.
    fn stream(&mut self, now_ns: u64, ctx: &Context, out: &mut Vec<Action>) {
        if !ctx.hooks.is_primary() {
            self.end(ctx, out, "this node is no longer a primary");
            return;
        }
        let Phase::Streaming(stream) = &mut self.phase else {
            return;
        };
        let sources = ctx.sources;
        let status = &ctx.standbys.slots()[stream.claim.slot];
        let mut sent = false;
        let mut caught_up = false;
        match sources.backlog.after(stream.pos, std::time::Duration::ZERO) {
            After::Chunks(chunks) => {
                for chunk in chunks {
                    let bytes = catch_up::from_seq(&chunk.bytes, chunk.first_seq, stream.pos + 1);
                    // Before the send: an ack can come back before the send returns.
                    status
                        .sent
                        .fetch_max(chunk.last_seq, std::sync::atomic::Ordering::SeqCst);
                    out.push(Action::Send(Message::Records {
                        first_seq: stream.pos + 1,
                        last_seq: chunk.last_seq,
                        bytes: bytes.to_vec(),
                    }));
                    stream.pos = chunk.last_seq;
                }
                sent = true;
                caught_up = true;
            }
            After::Gone { oldest } => {
                let to = (oldest - 1).min(ctx.hooks.durable_seq());
                if to > stream.pos {
                    match catch_up::read(
                        sources.journal.as_ref(),
                        stream.pos + 1,
                        to,
                        CATCH_UP_CHUNK,
                    ) {
                        Ok(Some(read)) => {
                            stream.pos = read.last_seq;
                            status
                                .sent
                                .fetch_max(read.last_seq, std::sync::atomic::Ordering::SeqCst);
                            out.push(Action::Send(Message::Records {
                                first_seq: read.first_seq,
                                last_seq: read.last_seq,
                                bytes: read.bytes,
                            }));
                            sent = true;
                        }
                        Ok(None) => {
                            let why = format!(
                                "sequence {} is no longer in the journal files",
                                stream.pos + 1
                            );
                            out.push(Action::Send(Message::refuse(
                                ReplicationCode::CatchUpUnavailable,
                                why.clone(),
                            )));
                            self.log(
                                ctx,
                                Level::Error,
                                "standby_catch_up_unavailable",
                                Some(ReplicationCode::CatchUpUnavailable),
                                why.clone(),
                            );
                            self.end(ctx, out, &why);
                            return;
                        }
                        Err(e) => {
                            self.end(ctx, out, &format!("reading the journal: {e}"));
                            return;
                        }
                    }
                }
            }
            // Nothing to send: a standby at this primary's last sequence has caught up
            // already (records would come only with the next command, and a halted primary
            // may sequence none until a standby streams).
            After::Nothing => caught_up = stream.pos >= sources.backlog.last_seq(),
        }
        if caught_up
            && status
                .state
                .swap(STREAMING, std::sync::atomic::Ordering::SeqCst)
                != STREAMING
        {
            let line = format!("node={} from_seq={}", stream.node, stream.pos);
            ctx.hooks.log(Level::Info, "standby_streaming", None, &line);
            ctx.hooks.acked();
        }
        if sent {
            stream.last_sent_ns = now_ns;
        }
        for (seq, hash) in sources
            .checkpoints
            .between(stream.checkpoint_sent, stream.pos)
        {
            out.push(Action::Send(Message::Checkpoint { seq, hash }));
            stream.checkpoint_sent = seq;
        }
        if now_ns.saturating_sub(stream.last_sent_ns) >= self.settings.heartbeat.as_nanos() as u64 {
            out.push(Action::Send(Message::Heartbeat {
                last_seq: sources.backlog.last_seq(),
                durable_seq: ctx.hooks.durable_seq(),
                unix_ns: ctx.wall_ns,
            }));
            stream.last_sent_ns = now_ns;
        }
    }

    /// Acks, fences and refusals from a streaming standby.
    fn on_stream_message(&mut self, message: Message, ctx: &Context, out: &mut Vec<Action>) {
        let Phase::Streaming(stream) = &self.phase else {
            return;
        };
        let status = &ctx.standbys.slots()[stream.claim.slot];
        match message {
            Message::Ack {
                received,
                durable,
                applied,
            } => {
                use std::sync::atomic::Ordering::SeqCst;
                // Pair check: a standby acks only what this session sent it. More means its
                // journal holds records that are not this primary's (it led an epoch of its
                // own): its acks must not release anything.
                let sent = status.sent.load(SeqCst);
                if received.max(durable).max(applied) > sent {
                    let line = format!(
                        "node={} received={received} durable={durable} sent={sent} \
                         detail=\"an ack past what was sent; the session ends\"",
                        stream.node
                    );
                    ctx.hooks.log(
                        Level::Warn,
                        "standby_ack_refused",
                        Some(ReplicationCode::StandbyAhead),
                        &line,
                    );
                    self.end(ctx, out, "an ack past what was sent");
                    return;
                }
                status.received.fetch_max(received, SeqCst);
                status.durable.fetch_max(durable, SeqCst);
                status.applied.fetch_max(applied, SeqCst);
                ctx.hooks.acked();
            }
            Message::Fence { epoch } => ctx.hooks.fenced_by(epoch, "a fence from the standby"),
            Message::Refuse { code, message } => {
                ctx.hooks.log(
                    Level::Warn,
                    "standby_stopped_following",
                    ReplicationCode::from_number(code),
                    &format!("why=\"{message}\""),
                );
                self.end(ctx, out, &format!("the standby refused: {message}"));
            }
            _ => {}
        }
    }

    fn on_snapshot_sent(
        &mut self,
        now_ns: u64,
        result: Result<u64, String>,
        ctx: &Context,
        out: &mut Vec<Action>,
    ) {
        let Phase::Snapshot { node, last_seq } = std::mem::replace(&mut self.phase, Phase::Done)
        else {
            return;
        };
        let peer = self.peer.clone();
        match result {
            Ok(seq) => {
                self.log(
                    ctx,
                    Level::Info,
                    "standby_sent_snapshot",
                    None,
                    format!(
                        "node={node} peer={peer} standby_last_seq={last_seq} snapshot_seq={seq}"
                    ),
                );
                // Closing with its acks unread would reset the connection and could drop
                // the last pieces on the way: wait for the standby to close first.
                self.phase = Phase::Draining { since_ns: now_ns };
            }
            Err(why) => {
                self.log(
                    ctx,
                    Level::Error,
                    "standby_catch_up_unavailable",
                    Some(ReplicationCode::CatchUpUnavailable),
                    format!("node={node} peer={peer} why=\"{why}\""),
                );
                out.push(Action::Send(Message::refuse(
                    ReplicationCode::CatchUpUnavailable,
                    why,
                )));
                out.push(Action::Close);
            }
        }
    }

    /// Refuse the standby with `code` and end.
    fn refuse(&mut self, ctx: &Context, out: &mut Vec<Action>, code: ReplicationCode, why: String) {
        self.log(
            ctx,
            Level::Warn,
            "standby_refused",
            Some(code),
            format!("peer={} why=\"{why}\"", self.peer),
        );
        out.push(Action::Send(Message::refuse(code, why)));
        self.phase = Phase::Done;
        out.push(Action::Close);
    }

    fn abandoned(&self, ctx: &Context, why: &str) {
        self.log(
            ctx,
            Level::Info,
            "replication_handshake_abandoned",
            Some(ReplicationCode::HandshakeAbandoned),
            format!("peer={} why=\"{why}\"", self.peer),
        );
    }

    /// The session is over: release the slot (unless a newer session of the standby took
    /// it) and say so if that loses the standby.
    fn end(&mut self, ctx: &Context, out: &mut Vec<Action>, why: &str) {
        if let Phase::Streaming(stream) = std::mem::replace(&mut self.phase, Phase::Done) {
            if ctx.standbys.release(stream.claim) {
                let status = &ctx.standbys.slots()[stream.claim.slot];
                let line = format!(
                    "node={} peer={} why=\"{why}\" acked={}",
                    stream.node,
                    self.peer,
                    status.durable.load(std::sync::atomic::Ordering::SeqCst)
                );
                ctx.hooks.log(
                    Level::Warn,
                    "standby_lost",
                    Some(ReplicationCode::StandbyLost),
                    &line,
                );
                ctx.hooks.standby_lost();
            }
        }
        self.phase = Phase::Done;
        out.push(Action::Close);
    }

    fn log(
        &self,
        ctx: &Context,
        level: Level,
        event: &str,
        code: Option<ReplicationCode>,
        fields: String,
    ) {
        ctx.hooks.log(level, event, code, &fields);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use journal::FaultStorage;

    use super::*;
    use crate::backlog::Backlog;
    use crate::checkpoints::Recent;
    use crate::standbys::{AckMode, CATCHING_UP};
    use crate::wire;

    const MS: u64 = 1_000_000;
    const SECRET: &[u8] = b"s3cret";

    /// The node as a session sees it.
    struct Node {
        epochs: Mutex<Epochs>,
        primary: AtomicBool,
        fenced_at: AtomicU64,
        events: Mutex<Vec<String>>,
    }

    impl Hooks for Node {
        fn log(&self, _: Level, event: &str, _: Option<ReplicationCode>, _: &str) {
            self.events.lock().unwrap().push(event.to_string());
        }
        fn acked(&self) {}
        fn standby_lost(&self) {}
        fn fenced_by(&self, epoch: u64, _: &str) {
            self.fenced_at.store(epoch, SeqCst);
        }
        fn is_primary(&self) -> bool {
            self.primary.load(SeqCst)
        }
        fn epochs(&self) -> Epochs {
            self.epochs.lock().unwrap().clone()
        }
        fn durable_seq(&self) -> u64 {
            10
        }
    }

    struct NoCloser;
    impl Closer for NoCloser {
        fn close(&self) {}
    }

    struct World {
        node: Node,
        sources: Sources,
        standbys: Standbys,
    }

    impl World {
        fn new(epochs: Epochs, last_seq: u64) -> World {
            let backlog = Backlog::new(1 << 20, last_seq);
            World {
                node: Node {
                    epochs: Mutex::new(epochs),
                    primary: AtomicBool::new(true),
                    fenced_at: AtomicU64::new(0),
                    events: Mutex::new(Vec::new()),
                },
                sources: Sources {
                    backlog: Arc::new(backlog),
                    checkpoints: Arc::new(Recent::default()),
                    journal: Arc::new(FaultStorage::new()),
                    snapshots: Arc::new(FaultStorage::new()),
                    newest_chain: None,
                    config: b"config".to_vec(),
                },
                standbys: Standbys::new(2, AckMode::Durable, vec![], false),
            }
        }

        fn ctx(&self) -> Context<'_> {
            Context {
                sources: &self.sources,
                hooks: &self.node,
                standbys: &self.standbys,
                wall_ns: 0,
            }
        }
    }

    fn settings() -> Settings {
        Settings {
            secret: SECRET.to_vec(),
            heartbeat: Duration::from_millis(20),
            timeout: Duration::from_millis(200),
        }
    }

    fn feed(s: &mut Session, w: &World, now: u64, m: &Message) -> Vec<Action> {
        let mut bytes = Vec::new();
        m.encode(&mut bytes);
        let (kind, body) = (
            bytes[wire::FRAME_HEADER_LEN - 1],
            &bytes[wire::FRAME_HEADER_LEN..],
        );
        s.step(now, Input::Frame { kind, body }, &w.ctx())
    }

    fn sent(actions: &[Action]) -> Vec<&Message> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// HELLO and PROOF from a standby at `epoch`/`last_seq`: what the session answered last.
    fn handshake(s: &mut Session, w: &World, epoch: u64, last_seq: u64) -> Vec<Action> {
        let hello = Message::Hello {
            node: "b".into(),
            epoch,
            last_seq,
            hash: 0,
            nonce: [1; 32],
        };
        let mut bytes = Vec::new();
        hello.encode(&mut bytes);
        let body = bytes[wire::FRAME_HEADER_LEN..].to_vec();
        let out = feed(s, w, MS, &hello);
        let [Message::Challenge { nonce, proof }] = sent(&out)[..] else {
            panic!("no challenge")
        };
        assert!(auth::primary_proof_ok(SECRET, &body, nonce, proof));
        let proof = auth::standby_proof(SECRET, &body, nonce);
        feed(s, w, 2 * MS, &Message::Proof { proof })
    }

    fn session() -> Session {
        Session::new(settings(), "peer".into(), 0, [5; 32], Box::new(NoCloser))
    }

    #[test]
    fn a_standby_attached_at_the_primarys_last_sequence_streams_at_once() {
        let w = World::new(Epochs::first(), 40);
        let mut s = session();
        let out = handshake(&mut s, &w, 1, 40);
        assert!(matches!(
            sent(&out)[0],
            Message::Welcome {
                truncate_to: NO_TRUNCATION,
                ..
            }
        ));
        assert!(s.streaming());
        // Nothing to send, and nothing will come until a command is sequenced: it is caught up.
        assert_eq!(w.standbys.slots()[0].state.load(SeqCst), STREAMING);
        assert!(w
            .node
            .events
            .lock()
            .unwrap()
            .contains(&"standby_streaming".to_string()));
    }

    #[test]
    fn a_standby_behind_catches_up_from_the_backlog_and_acks_count_only_to_what_was_sent() {
        let w = World::new(Epochs::first(), 40);
        let mut s = session();
        handshake(&mut s, &w, 1, 40);
        w.sources.backlog.push(41, 43, &[0; 30]);
        w.standbys.slots()[0].state.store(CATCHING_UP, SeqCst);
        let out = s.step(3 * MS, Input::Tick, &w.ctx());
        assert!(matches!(
            sent(&out)[0],
            Message::Records {
                first_seq: 41,
                last_seq: 43,
                ..
            }
        ));
        assert_eq!(w.standbys.slots()[0].state.load(SeqCst), STREAMING);
        let ack = Message::Ack {
            received: 43,
            durable: 42,
            applied: 41,
        };
        feed(&mut s, &w, 4 * MS, &ack);
        assert_eq!(w.standbys.slots()[0].acked(), 42);
        // Its journal holds records of its own past what it was sent: it releases nothing.
        let ahead = Message::Ack {
            received: 43,
            durable: 50,
            applied: 43,
        };
        let out = feed(&mut s, &w, 5 * MS, &ahead);
        assert!(out.iter().any(|a| matches!(a, Action::Close)));
        assert!(s.done());
        assert_eq!(w.standbys.slots()[0].acked(), 42);
    }

    #[test]
    fn a_standby_at_a_newer_epoch_fences_this_node_and_a_failback_standby_is_told_to_cut() {
        let w = World::new(Epochs::first(), 40);
        let mut s = session();
        let out = handshake(&mut s, &w, 3, 40);
        assert!(matches!(sent(&out)[0], Message::Refuse { .. }));
        assert_eq!(w.node.fenced_at.load(SeqCst), 3);

        let mut epochs = Epochs::first();
        epochs.promote(21);
        let w = World::new(epochs, 40);
        let mut s = session();
        let out = handshake(&mut s, &w, 1, 30);
        assert!(matches!(
            sent(&out)[0],
            Message::Welcome {
                truncate_to: 20,
                ..
            }
        ));
        assert!(!s.streaming());
    }

    #[test]
    fn a_standby_that_goes_away_mid_handshake_is_abandoned_not_refused() {
        let w = World::new(Epochs::first(), 40);
        let mut s = session();
        let hello = Message::Hello {
            node: "b".into(),
            epoch: 1,
            last_seq: 40,
            hash: 0,
            nonce: [1; 32],
        };
        feed(&mut s, &w, MS, &hello);
        s.step(2 * MS, Input::Disconnected("eof".into()), &w.ctx());
        let events = w.node.events.lock().unwrap().clone();
        assert_eq!(events, vec!["replication_handshake_abandoned".to_string()]);
        assert!(s.done());
    }

    #[test]
    fn a_silent_standby_is_lost() {
        let w = World::new(Epochs::first(), 40);
        let mut s = session();
        handshake(&mut s, &w, 1, 40);
        s.step(100 * MS, Input::Tick, &w.ctx());
        assert!(s.streaming());
        s.step(300 * MS, Input::Tick, &w.ctx());
        assert!(s.done());
        assert!(w
            .node
            .events
            .lock()
            .unwrap()
            .contains(&"standby_lost".to_string()));
    }
}
