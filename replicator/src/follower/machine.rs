//! The standby's side of a replication session as a state machine, without I/O (the shape of
//! quinn-proto's `Connection`): the handshake (HELLO; the primary's CHALLENGE, checked, and
//! this node's PROOF; WELCOME), then records, checkpoints, heartbeats and snapshots, and the
//! acks it owes. `step(now, input, standing)` takes one event with the time and the node's
//! standing, and returns what to do: dial, send, hand records to the pipeline, ask the node
//! to adopt the primary's epochs, end the session. It never reads a clock or a socket: the
//! follower thread drives it with a real one (`follower/mod.rs`), the simulator with
//! simulated ones, and both see the same decisions.
//!
//! Every input is checked against the node's standing first. Once the node no longer
//! follows (a promotion began) any handshake under way ends with a FENCE of its epoch: a
//! promoted node never follows. A WELCOME below the node's own epoch is refused the same way.

use crate::auth::{self, Nonce};
use crate::code::ReplicationCode;
use crate::epoch::Epochs;
use crate::wire::{self, kind, Message, NO_TRUNCATION};
use crate::Settings;

use super::Ended;

/// How long the handshake may take, from the dial to the WELCOME.
pub const HANDSHAKE_TIMEOUT_NS: u64 = 5_000_000_000;

/// What the node is now, as the session needs it; read afresh for every step.
#[derive(Clone, Debug)]
pub struct Standing {
    pub epochs: Epochs,
    /// A plain standby: it may follow. False once a promotion began (or the node stops).
    pub follows: bool,
    /// Sequences handed to the pipeline, synced to the journal, applied to the engine.
    pub received: u64,
    pub durable: u64,
    pub applied: u64,
    /// The engine's rolling hash at `received` (0: not known).
    pub hash: u64,
}

/// One event for the session.
#[derive(Debug)]
pub enum Input<'a> {
    /// Time passed: timers (the dial's retry, silence, heartbeats) and progress to ack.
    Tick,
    /// The dial asked for succeeded; `nonce` is fresh for this handshake.
    Connected {
        nonce: Nonce,
    },
    DialFailed(String),
    /// One whole frame from the primary, not yet decoded.
    Frame {
        kind: u8,
        body: &'a [u8],
    },
    /// The connection broke: a read or write failed, or the primary closed it.
    Disconnected(String),
    /// Bytes that are not a replication frame (a length the protocol never sends).
    Garbage(String),
    /// The node's answer to `Action::Adopt` (`Err`: why it refused).
    Adopted(Result<(), String>),
    /// The pipeline refused what it was handed (a gap, a divergence, the intake closed).
    Refused {
        code: ReplicationCode,
        why: String,
    },
    /// End for good: a promotion or a shutdown.
    Stop,
}

/// What the driver does, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Connect to the primary, then step `Connected` or `DialFailed`.
    Dial,
    Send(Message),
    /// Close the connection (after any sends before it).
    Close,
    /// Store the primary's epoch and history if the node still may (`Epochs::adopt` and its
    /// role, under one lock), then step `Adopted`. `config`: the primary's engine
    /// configuration (a new standby takes it).
    Adopt {
        epoch: u64,
        history: Vec<(u64, u64)>,
        config: Vec<u8>,
    },
    /// A session began: log `following`.
    Following {
        epoch: u64,
        from_seq: u64,
        primary_last_seq: u64,
    },
    /// Hand records `first_seq..=last_seq` to the pipeline (`Refused` if it will not).
    Records {
        first_seq: u64,
        last_seq: u64,
        bytes: Vec<u8>,
    },
    /// The primary's rolling hash after `seq`, to compare.
    Checkpoint {
        seq: u64,
        hash: u64,
    },
    /// A piece of the primary's snapshot at `offset`.
    SnapshotPiece {
        offset: u64,
        bytes: Vec<u8>,
    },
    /// The session ended (closed already): `Ended::retries` says whether another follows.
    Ended(Ended),
}

#[derive(Debug)]
enum Phase {
    /// No connection; dial at `at_ns`.
    Idle {
        at_ns: u64,
    },
    Dialing {
        since_ns: u64,
    },
    /// HELLO sent: its body as sent (both proofs cover it).
    AwaitChallenge {
        hello_body: Vec<u8>,
        since_ns: u64,
    },
    /// PROOF sent.
    AwaitWelcome {
        since_ns: u64,
    },
    /// WELCOME taken; the node is asked to adopt its epochs.
    Adopting {
        epoch: u64,
        primary_last_seq: u64,
    },
    /// Streaming: `expected` is the next record.
    Following {
        expected: u64,
    },
    /// Receiving a snapshot of `len` bytes taken at `seq`; `at` bytes so far.
    Snapshot {
        seq: u64,
        len: u64,
        at: u64,
    },
    /// Stopped for good.
    Done,
}

/// What the standby knows of its primary (for lag, failover and `/health`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    pub connected: bool,
    /// When the primary was last heard from (the machine's clock).
    pub heard_ns: u64,
    pub primary_last_seq: u64,
    pub primary_durable_seq: u64,
    /// A session was established at least once.
    pub followed: bool,
}

pub struct FollowerMachine {
    settings: Settings,
    node: String,
    /// This journal's engine configuration (empty: a new standby, which takes the primary's).
    config: Vec<u8>,
    phase: Phase,
    link: LinkState,
    /// The last ack sent, and when.
    last_ack: Option<(u64, u64, u64)>,
    ack_sent_ns: u64,
    /// The highest sequence this session handed over: acks never go past it (the journal
    /// may also hold records of this node's own, from a promotion).
    session_received: u64,
}

impl FollowerMachine {
    pub fn new(settings: Settings, node: String, config: Vec<u8>) -> FollowerMachine {
        FollowerMachine {
            settings,
            node,
            config,
            phase: Phase::Idle { at_ns: 0 },
            link: LinkState::default(),
            last_ack: None,
            ack_sent_ns: 0,
            session_received: 0,
        }
    }

    pub fn link(&self) -> LinkState {
        self.link
    }

    /// Whether a session streams now.
    pub fn following(&self) -> bool {
        matches!(self.phase, Phase::Following { .. } | Phase::Snapshot { .. })
    }

    /// Stopped for good.
    pub fn done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// When the machine next needs a `Tick`, if it waits for time at all.
    pub fn next_timer_ns(&self) -> Option<u64> {
        match self.phase {
            Phase::Idle { at_ns } => Some(at_ns),
            Phase::Dialing { since_ns }
            | Phase::AwaitChallenge { since_ns, .. }
            | Phase::AwaitWelcome { since_ns } => Some(since_ns + HANDSHAKE_TIMEOUT_NS),
            Phase::Following { .. } | Phase::Snapshot { .. } => Some(
                (self.ack_sent_ns + self.heartbeat_ns())
                    .min(self.link.heard_ns + self.timeout_ns()),
            ),
            Phase::Adopting { .. } | Phase::Done => None,
        }
    }

    fn heartbeat_ns(&self) -> u64 {
        self.settings.heartbeat.as_nanos() as u64
    }

    fn timeout_ns(&self) -> u64 {
        self.settings.timeout.as_nanos() as u64
    }

    pub fn step(&mut self, now_ns: u64, input: Input, standing: &Standing) -> Vec<Action> {
        let mut out = Vec::new();
        if !standing.follows && !matches!(self.phase, Phase::Done) {
            // Promoted (or stopping): whatever was under way ends, and a primary that got
            // as far as welcoming this node learns that it was replaced.
            let welcomed = matches!(
                self.phase,
                Phase::AwaitWelcome { .. } | Phase::Adopting { .. }
            ) || matches!(
                input,
                Input::Frame {
                    kind: kind::WELCOME,
                    ..
                }
            );
            if welcomed {
                out.push(Action::Send(Message::Fence {
                    epoch: standing.epochs.epoch,
                }));
            }
            self.end(&mut out, Ended::Halted);
            self.phase = Phase::Done;
            return out;
        }
        match input {
            Input::Stop => {
                self.end(&mut out, Ended::Halted);
                self.phase = Phase::Done;
            }
            Input::Tick => self.on_tick(now_ns, standing, &mut out),
            Input::Connected { nonce } => self.on_connected(now_ns, nonce, standing, &mut out),
            Input::DialFailed(why) => {
                if matches!(self.phase, Phase::Dialing { .. }) {
                    self.phase = Phase::Idle {
                        at_ns: now_ns + self.heartbeat_ns(),
                    };
                    out.push(Action::Ended(Ended::Lost(why)));
                }
            }
            Input::Frame { kind, body } => self.on_frame(now_ns, kind, body, standing, &mut out),
            Input::Disconnected(why) => {
                if !matches!(self.phase, Phase::Idle { .. } | Phase::Done) {
                    self.lost(now_ns, &mut out, Ended::Lost(why));
                }
            }
            Input::Garbage(why) => self.on_garbage(now_ns, why, &mut out),
            Input::Adopted(result) => self.on_adopted(now_ns, result, standing, &mut out),
            Input::Refused { code, why } => {
                if self.following() {
                    out.push(Action::Send(Message::refuse(code, why.clone())));
                    self.end(&mut out, Ended::Stopped(code, why));
                    self.phase = Phase::Done;
                }
            }
        }
        out
    }

    fn on_tick(&mut self, now_ns: u64, standing: &Standing, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Idle { at_ns } if now_ns >= at_ns => {
                self.phase = Phase::Dialing { since_ns: now_ns };
                out.push(Action::Dial);
            }
            Phase::Dialing { since_ns }
            | Phase::AwaitChallenge { since_ns, .. }
            | Phase::AwaitWelcome { since_ns }
                if now_ns >= since_ns + HANDSHAKE_TIMEOUT_NS =>
            {
                self.lost(now_ns, out, Ended::Lost("the handshake timed out".into()));
            }
            Phase::Following { .. } | Phase::Snapshot { .. } => {
                let silent_ns = now_ns.saturating_sub(self.link.heard_ns);
                if silent_ns > self.timeout_ns() {
                    let why = format!("the primary was silent for {} ms", silent_ns / 1_000_000);
                    self.lost(now_ns, out, Ended::Lost(why));
                    return;
                }
                self.ack_if_due(now_ns, standing, out);
            }
            _ => {}
        }
    }

    /// The ACK owed now, if one is (`ack_if_due`), for a thread that only sends acks.
    pub fn ack_due(&mut self, now_ns: u64, standing: &Standing) -> Option<Message> {
        let mut out = Vec::new();
        self.ack_if_due(now_ns, standing, &mut out);
        out.into_iter().find_map(|a| match a {
            Action::Send(ack) => Some(ack),
            _ => None,
        })
    }

    /// An ACK when progress moved, or a heartbeat's worth of time passed.
    fn ack_if_due(&mut self, now_ns: u64, standing: &Standing, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Following { .. }) || !standing.follows {
            return;
        }
        let received = standing.received.min(self.session_received);
        let now = (
            received,
            standing.durable.min(received),
            standing.applied.min(received),
        );
        if self.last_ack != Some(now) || now_ns >= self.ack_sent_ns + self.heartbeat_ns() {
            out.push(Action::Send(Message::Ack {
                received: now.0,
                durable: now.1,
                applied: now.2,
            }));
            self.last_ack = Some(now);
            self.ack_sent_ns = now_ns;
        }
    }

    fn on_connected(
        &mut self,
        now_ns: u64,
        nonce: Nonce,
        standing: &Standing,
        out: &mut Vec<Action>,
    ) {
        if !matches!(self.phase, Phase::Dialing { .. }) {
            out.push(Action::Close);
            return;
        }
        // The epoch this node's journal tail was written in (not a newer one it merely
        // heard of): the primary cuts what was written after that epoch ended.
        let epochs = &standing.epochs;
        let tail_epoch = epochs.history.last().map_or(epochs.epoch, |&(e, _)| e);
        let hello = Message::Hello {
            node: self.node.clone(),
            epoch: tail_epoch,
            last_seq: standing.received,
            hash: standing.hash,
            nonce,
        };
        let mut encoded = Vec::new();
        hello.encode(&mut encoded);
        self.phase = Phase::AwaitChallenge {
            hello_body: encoded[wire::FRAME_HEADER_LEN..].to_vec(),
            since_ns: now_ns,
        };
        self.session_received = standing.received;
        out.push(Action::Send(hello));
    }

    fn on_frame(
        &mut self,
        now_ns: u64,
        kind: u8,
        body: &[u8],
        standing: &Standing,
        out: &mut Vec<Action>,
    ) {
        if let Phase::AwaitChallenge { hello_body, .. } = &self.phase {
            let hello_body = hello_body.clone();
            self.on_challenge(now_ns, kind, body, &hello_body, out);
            return;
        }
        let message = match Message::decode(kind, body) {
            Ok(m) => m,
            Err(e) => {
                let code = ReplicationCode::BadFrame;
                if self.following() {
                    out.push(Action::Send(Message::refuse(code, e.clone())));
                    self.end(out, Ended::Stopped(code, e));
                    self.phase = Phase::Done;
                } else {
                    self.lost(now_ns, out, Ended::Lost(format!("welcome: {e}")));
                }
                return;
            }
        };
        if let Message::Refuse { code, message } = message {
            let code = ReplicationCode::from_number(code).unwrap_or(ReplicationCode::BadFrame);
            self.lost(now_ns, out, Ended::Refused(code, message));
            return;
        }
        match &mut self.phase {
            Phase::AwaitWelcome { .. } => self.on_welcome(now_ns, message, standing, out),
            Phase::Following { expected } => {
                let expected = *expected;
                self.link.heard_ns = now_ns;
                self.on_stream(now_ns, expected, message, standing, out);
            }
            Phase::Snapshot { seq, len, at } => {
                let (seq, len, offset) = (*seq, *len, *at);
                self.link.heard_ns = now_ns;
                match message {
                    Message::SnapshotChunk { bytes } if offset + bytes.len() as u64 <= len => {
                        let end = offset + bytes.len() as u64;
                        out.push(Action::SnapshotPiece { offset, bytes });
                        if end == len {
                            self.end(out, Ended::Snapshot(seq));
                            self.phase = Phase::Done;
                        } else {
                            self.phase = Phase::Snapshot { seq, len, at: end };
                        }
                    }
                    Message::SnapshotChunk { .. } => {
                        self.stop_bad(out, format!("snapshot pieces run past its {len} bytes"))
                    }
                    other => {
                        self.stop_bad(out, format!("expected a snapshot piece, got {other:?}"))
                    }
                }
            }
            _ => {} // a late frame of a session already given up
        }
    }

    fn on_garbage(&mut self, now_ns: u64, why: String, out: &mut Vec<Action>) {
        match self.phase {
            Phase::AwaitChallenge { .. } => {
                let why = format!(
                    "answered but is not a replication port (its answer is not a \
                     replication frame: {why}); point --primary at the primary's \
                     replication.listen address"
                );
                self.lost(
                    now_ns,
                    out,
                    Ended::Refused(ReplicationCode::NotAReplicationPort, why),
                );
            }
            Phase::Following { .. } | Phase::Snapshot { .. } => self.stop_bad(out, why),
            Phase::Idle { .. } | Phase::Done => {}
            _ => self.lost(now_ns, out, Ended::Lost(why)),
        }
    }

    fn on_challenge(
        &mut self,
        now_ns: u64,
        kind: u8,
        body: &[u8],
        hello_body: &[u8],
        out: &mut Vec<Action>,
    ) {
        if kind != kind::CHALLENGE && kind != kind::REFUSE {
            // A primary answers a HELLO with nothing else; look at the bytes before decoding
            // them as a replication message (a client port's ERROR reads as a CHECKPOINT).
            let detail = match wire::client_port::error(kind, body) {
                Some((code, message)) => format!(
                    "it looks like a surge client port: it answered with the client protocol's \
                     ERROR frame, code {code}, {message:?}"
                ),
                None => format!("it answered with a frame of kind {kind}, not a CHALLENGE"),
            };
            let why = format!(
                "answered but is not a replication port ({detail}); point --primary at the \
                 primary's replication.listen address"
            );
            self.lost(
                now_ns,
                out,
                Ended::Refused(ReplicationCode::NotAReplicationPort, why),
            );
            return;
        }
        match Message::decode(kind, body) {
            Ok(Message::Challenge { nonce, proof }) => {
                let secret = &self.settings.secret;
                if !auth::primary_proof_ok(secret, hello_body, &nonce, &proof) {
                    let why = "the primary could not prove it knows replication.secret";
                    out.push(Action::Send(Message::refuse(
                        ReplicationCode::BadSecret,
                        why,
                    )));
                    self.lost(
                        now_ns,
                        out,
                        Ended::Refused(
                            ReplicationCode::BadSecret,
                            format!("{why} (set the same secret on both nodes)"),
                        ),
                    );
                    return;
                }
                let proof = auth::standby_proof(secret, hello_body, &nonce);
                out.push(Action::Send(Message::Proof { proof }));
                self.phase = Phase::AwaitWelcome { since_ns: now_ns };
            }
            Ok(Message::Refuse { code, message }) => {
                let code = ReplicationCode::from_number(code).unwrap_or(ReplicationCode::BadFrame);
                self.lost(now_ns, out, Ended::Refused(code, message));
            }
            Ok(other) => self.lost(
                now_ns,
                out,
                Ended::Lost(format!("expected a CHALLENGE, got {other:?}")),
            ),
            Err(e) => self.lost(now_ns, out, Ended::Lost(format!("challenge: {e}"))),
        }
    }

    fn on_welcome(
        &mut self,
        now_ns: u64,
        message: Message,
        standing: &Standing,
        out: &mut Vec<Action>,
    ) {
        let Message::Welcome {
            epoch,
            history,
            primary_last_seq,
            truncate_to,
            config,
        } = message
        else {
            self.lost(
                now_ns,
                out,
                Ended::Refused(
                    ReplicationCode::BadFrame,
                    format!("expected a WELCOME, got {message:?}"),
                ),
            );
            return;
        };
        let own = standing.epochs.epoch;
        if epoch < own {
            out.push(Action::Send(Message::Fence { epoch: own }));
            self.lost(
                now_ns,
                out,
                Ended::StalePrimary {
                    primary_epoch: epoch,
                },
            );
            return;
        }
        if truncate_to != NO_TRUNCATION {
            self.end(out, Ended::Truncate(truncate_to));
            self.phase = Phase::Done;
            return;
        }
        if !self.config.is_empty() && config != self.config {
            let why = "the primary's engine configuration differs from this journal's";
            self.end(
                out,
                Ended::Stopped(ReplicationCode::ConfigMismatch, why.into()),
            );
            self.phase = Phase::Done;
            return;
        }
        self.phase = Phase::Adopting {
            epoch,
            primary_last_seq,
        };
        out.push(Action::Adopt {
            epoch,
            history,
            config,
        });
    }

    fn on_adopted(
        &mut self,
        now_ns: u64,
        result: Result<(), String>,
        standing: &Standing,
        out: &mut Vec<Action>,
    ) {
        let Phase::Adopting {
            epoch,
            primary_last_seq,
        } = self.phase
        else {
            return;
        };
        if let Err(why) = result {
            out.push(Action::Send(Message::Fence {
                epoch: standing.epochs.epoch,
            }));
            let _ = why;
            self.lost(
                now_ns,
                out,
                Ended::StalePrimary {
                    primary_epoch: epoch,
                },
            );
            return;
        }
        self.link = LinkState {
            connected: true,
            heard_ns: now_ns,
            primary_last_seq: self.link.primary_last_seq.max(primary_last_seq),
            primary_durable_seq: self.link.primary_durable_seq,
            followed: true,
        };
        self.phase = Phase::Following {
            expected: self.session_received + 1,
        };
        out.push(Action::Following {
            epoch,
            from_seq: self.session_received + 1,
            primary_last_seq,
        });
        self.last_ack = None;
        self.ack_if_due(now_ns, standing, out);
    }

    fn on_stream(
        &mut self,
        now_ns: u64,
        expected: u64,
        message: Message,
        standing: &Standing,
        out: &mut Vec<Action>,
    ) {
        match message {
            Message::Records {
                first_seq,
                last_seq,
                bytes,
            } => {
                if first_seq != expected || last_seq < first_seq {
                    let why = format!("records {first_seq}..={last_seq} but {expected} comes next");
                    let code = ReplicationCode::SequenceGap;
                    out.push(Action::Send(Message::refuse(code, why.clone())));
                    self.end(out, Ended::Stopped(code, why));
                    self.phase = Phase::Done;
                    return;
                }
                self.phase = Phase::Following {
                    expected: last_seq + 1,
                };
                self.session_received = last_seq;
                self.link.primary_last_seq = self.link.primary_last_seq.max(last_seq);
                out.push(Action::Records {
                    first_seq,
                    last_seq,
                    bytes,
                });
            }
            Message::Checkpoint { seq, hash } => out.push(Action::Checkpoint { seq, hash }),
            Message::Heartbeat {
                last_seq,
                durable_seq,
                ..
            } => {
                self.link.primary_last_seq = self.link.primary_last_seq.max(last_seq);
                self.link.primary_durable_seq = self.link.primary_durable_seq.max(durable_seq);
            }
            Message::Snapshot { seq, len } => {
                if len == 0 {
                    self.end(out, Ended::Snapshot(seq));
                    self.phase = Phase::Done;
                } else {
                    self.phase = Phase::Snapshot { seq, len, at: 0 };
                }
            }
            other => {
                self.stop_bad(out, format!("unexpected {other:?}"));
                return;
            }
        }
        self.ack_if_due(now_ns, standing, out);
    }

    fn stop_bad(&mut self, out: &mut Vec<Action>, why: String) {
        let code = ReplicationCode::BadFrame;
        out.push(Action::Send(Message::refuse(code, why.clone())));
        self.end(out, Ended::Stopped(code, why));
        self.phase = Phase::Done;
    }

    /// The session ended and another is tried after a heartbeat.
    fn lost(&mut self, now_ns: u64, out: &mut Vec<Action>, why: Ended) {
        self.end(out, why);
        self.phase = Phase::Idle {
            at_ns: now_ns + self.heartbeat_ns(),
        };
    }

    fn end(&mut self, out: &mut Vec<Action>, why: Ended) {
        out.push(Action::Close);
        out.push(Action::Ended(why));
        self.link.connected = false;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: u64 = 1_000_000;
    const SECRET: &[u8] = b"s3cret";

    fn machine() -> FollowerMachine {
        let settings = Settings {
            secret: SECRET.to_vec(),
            heartbeat: Duration::from_millis(20),
            timeout: Duration::from_millis(200),
        };
        FollowerMachine::new(settings, "b".into(), b"config".to_vec())
    }

    fn standing(epoch: u64, history: &[(u64, u64)], received: u64) -> Standing {
        Standing {
            epochs: Epochs {
                epoch,
                history: history.to_vec(),
            },
            follows: true,
            received,
            durable: received,
            applied: received,
            hash: 0,
        }
    }

    fn frame(m: &Message) -> (u8, Vec<u8>) {
        let mut bytes = Vec::new();
        m.encode(&mut bytes);
        (
            bytes[wire::FRAME_HEADER_LEN - 1],
            bytes[wire::FRAME_HEADER_LEN..].to_vec(),
        )
    }

    fn deliver(m: &mut FollowerMachine, now: u64, message: &Message, s: &Standing) -> Vec<Action> {
        let (kind, body) = frame(message);
        m.step(now, Input::Frame { kind, body: &body }, s)
    }

    /// Through the challenge: the HELLO's body, to answer with the primary's proof.
    fn dial_and_hello(m: &mut FollowerMachine, s: &Standing) -> Vec<u8> {
        assert_eq!(m.step(0, Input::Tick, s), vec![Action::Dial]);
        let out = m.step(MS, Input::Connected { nonce: [7; 32] }, s);
        let [Action::Send(hello @ Message::Hello { .. })] = out.as_slice() else {
            panic!("{out:?}")
        };
        let mut bytes = Vec::new();
        hello.encode(&mut bytes);
        bytes[wire::FRAME_HEADER_LEN..].to_vec()
    }

    fn challenge(hello_body: &[u8]) -> Message {
        let nonce = [9; 32];
        Message::Challenge {
            nonce,
            proof: auth::primary_proof(SECRET, hello_body, &nonce),
        }
    }

    fn welcome(epoch: u64, history: &[(u64, u64)]) -> Message {
        Message::Welcome {
            epoch,
            history: history.to_vec(),
            primary_last_seq: 10,
            truncate_to: NO_TRUNCATION,
            config: b"config".to_vec(),
        }
    }

    #[test]
    fn a_handshake_then_records_and_acks() {
        let mut m = machine();
        let s = standing(1, &[(1, 1)], 5);
        let body = dial_and_hello(&mut m, &s);
        let out = deliver(&mut m, 2 * MS, &challenge(&body), &s);
        assert!(matches!(
            out.as_slice(),
            [Action::Send(Message::Proof { .. })]
        ));
        let out = deliver(&mut m, 3 * MS, &welcome(1, &[(1, 1)]), &s);
        assert!(
            matches!(&out[..], [Action::Adopt { epoch: 1, .. }]),
            "{out:?}"
        );
        let out = m.step(3 * MS, Input::Adopted(Ok(())), &s);
        assert_eq!(
            out[0],
            Action::Following {
                epoch: 1,
                from_seq: 6,
                primary_last_seq: 10
            }
        );
        let records = Message::Records {
            first_seq: 6,
            last_seq: 8,
            bytes: vec![1, 2, 3],
        };
        let out = deliver(&mut m, 4 * MS, &records, &s);
        assert!(matches!(
            out[0],
            Action::Records {
                first_seq: 6,
                last_seq: 8,
                ..
            }
        ));
        // The pipeline took them, synced two: the ack says so, never past what came.
        let mut s = s;
        s.received = 8;
        s.durable = 7;
        let ack = m.ack_due(5 * MS, &s);
        assert_eq!(
            ack,
            Some(Message::Ack {
                received: 8,
                durable: 7,
                applied: 5
            })
        );
        // A gap stops the session with a refusal.
        let gap = Message::Records {
            first_seq: 10,
            last_seq: 10,
            bytes: vec![],
        };
        let out = deliver(&mut m, 6 * MS, &gap, &s);
        assert!(matches!(out[0], Action::Send(Message::Refuse { .. })));
        assert!(m.done());
    }

    #[test]
    fn a_handshake_under_way_when_the_node_promotes_ends_with_a_fence_and_never_follows() {
        let mut m = machine();
        let s = standing(1, &[(1, 1)], 5);
        let body = dial_and_hello(&mut m, &s);
        deliver(&mut m, 2 * MS, &challenge(&body), &s);
        // Promoted to epoch 2 while the primary was silent; then its WELCOME arrives.
        let mut promoted = standing(2, &[(1, 1), (2, 6)], 5);
        promoted.follows = false;
        let out = deliver(&mut m, 3_000 * MS, &welcome(1, &[(1, 1)]), &promoted);
        assert_eq!(out[0], Action::Send(Message::Fence { epoch: 2 }));
        assert!(out.contains(&Action::Ended(Ended::Halted)));
        assert!(!out.iter().any(|a| matches!(a, Action::Adopt { .. })));
        assert!(m.done());
        assert_eq!(m.step(4_000 * MS, Input::Tick, &promoted), vec![]);
    }

    #[test]
    fn a_welcome_below_the_nodes_epoch_is_fenced_not_followed() {
        let mut m = machine();
        let s = standing(3, &[(1, 1), (3, 4)], 5);
        let body = dial_and_hello(&mut m, &s);
        deliver(&mut m, 2 * MS, &challenge(&body), &s);
        let out = deliver(&mut m, 3 * MS, &welcome(2, &[(1, 1), (2, 3)]), &s);
        assert_eq!(out[0], Action::Send(Message::Fence { epoch: 3 }));
        assert!(out.contains(&Action::Ended(Ended::StalePrimary { primary_epoch: 2 })));
        // It retries later (another primary may answer there), after a heartbeat.
        assert_eq!(m.step(10 * MS, Input::Tick, &s), vec![]);
        assert_eq!(m.step(30 * MS, Input::Tick, &s), vec![Action::Dial]);
    }

    #[test]
    fn a_refused_adoption_fences_the_primary() {
        let mut m = machine();
        let s = standing(1, &[(1, 1)], 5);
        let body = dial_and_hello(&mut m, &s);
        deliver(&mut m, 2 * MS, &challenge(&body), &s);
        deliver(&mut m, 3 * MS, &welcome(1, &[(1, 1)]), &s);
        let out = m.step(3 * MS, Input::Adopted(Err("promoted".into())), &s);
        assert_eq!(out[0], Action::Send(Message::Fence { epoch: 1 }));
        assert!(!m.following());
    }

    #[test]
    fn a_wrong_proof_or_a_silent_primary_ends_the_session() {
        let mut m = machine();
        let s = standing(1, &[(1, 1)], 5);
        let body = dial_and_hello(&mut m, &s);
        let forged = Message::Challenge {
            nonce: [9; 32],
            proof: auth::primary_proof(b"other", &body, &[9; 32]),
        };
        let out = deliver(&mut m, 2 * MS, &forged, &s);
        assert!(matches!(out[0], Action::Send(Message::Refuse { .. })));
        assert!(out.iter().any(|a| matches!(
            a,
            Action::Ended(Ended::Refused(ReplicationCode::BadSecret, _))
        )));

        let mut m = machine();
        let body = dial_and_hello(&mut m, &s);
        deliver(&mut m, 2 * MS, &challenge(&body), &s);
        deliver(&mut m, 3 * MS, &welcome(1, &[(1, 1)]), &s);
        m.step(3 * MS, Input::Adopted(Ok(())), &s);
        assert!(m.following());
        assert!(m
            .step(150 * MS, Input::Tick, &s)
            .iter()
            .all(|a| !matches!(a, Action::Ended(_))));
        let out = m.step(300 * MS, Input::Tick, &s);
        assert!(
            out.iter()
                .any(|a| matches!(a, Action::Ended(Ended::Lost(_)))),
            "{out:?}"
        );
    }
}
