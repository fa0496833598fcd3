//! The standby's side of replication: `machine.rs` decides (handshake, stream, acks); this
//! file drives it with a real connection. One session at a time (`Follower::session`): wait
//! for the machine to ask for a dial, dial, then read frames into it, carrying out what it
//! says (send, hand records to the `Sink`, ask the node to adopt the primary's epochs) until
//! it ends the session. An acker thread steps it too, when progress moves (`AckSignal`) or a
//! heartbeat passes, so acks leave as soon as something is synced.

pub mod machine;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::auth;
use crate::clock::Clock;
use crate::code::ReplicationCode;
use crate::net::{Dialer, Stream};
use crate::wire::{self, Message};
use crate::Settings;

pub use machine::{Action, FollowerMachine, Input, LinkState, Standing};

/// Where the standby's pipeline takes what the primary sends.
pub trait Sink: Send {
    /// Records `first..=last`, back to back as the primary journaled them.
    fn records(
        &mut self,
        first: u64,
        last: u64,
        bytes: &[u8],
    ) -> Result<(), (ReplicationCode, String)>;
    /// The primary's rolling hash after `seq`.
    fn checkpoint(&mut self, seq: u64, hash: u64) -> Result<(), (ReplicationCode, String)>;
    /// A piece of the primary's snapshot file at `offset`: this standby is too far behind
    /// to follow and starts over from it.
    fn snapshot_piece(
        &mut self,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), (ReplicationCode, String)>;
}

/// The node a session follows for: where it stands, and whether it takes a primary's epochs.
pub trait StandbyNode: Send + Sync {
    fn standing(&self) -> Standing;
    /// Take the primary's epoch and history (and, for a new standby, its engine
    /// configuration) if this node still follows: `Ok(Err(why))` when it refuses.
    fn adopt(
        &self,
        epoch: u64,
        history: &[(u64, u64)],
        config: &[u8],
    ) -> io::Result<Result<(), String>>;
    /// A session began.
    fn following(&self, epoch: u64, from_seq: u64, primary_last_seq: u64);
}

/// Pokes the acker when received, durable or applied moved.
#[derive(Default)]
pub struct AckSignal {
    turns: Mutex<u64>,
    changed: Condvar,
}

impl AckSignal {
    pub fn poke(&self) {
        *self.turns.lock().expect("ack lock") += 1;
        self.changed.notify_one();
    }

    fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let turns = self.turns.lock().expect("ack lock");
        let (turns, _) = self
            .changed
            .wait_timeout_while(turns, timeout, |t| *t == seen)
            .expect("ack lock");
        *turns
    }
}

/// What the standby knows of its primary, for lag, failover and `/health` (the machine's
/// `LinkState`, published for other threads).
#[derive(Default)]
pub struct Link {
    pub connected: AtomicBool,
    /// The primary's last sequenced and durable sequence, as last heard.
    pub primary_last_seq: AtomicU64,
    pub primary_durable_seq: AtomicU64,
    /// Milliseconds (on the follower's clock) when the primary was last heard from.
    pub heard_ms: AtomicU64,
    /// Whether this standby ever followed a primary since it started.
    pub followed: AtomicBool,
    stream: Mutex<Option<Stream>>,
}

impl Link {
    /// Tell the primary about a newer epoch (best effort) and end the session.
    pub fn fence_and_close(&self, epoch: u64) {
        if let Some(mut s) = self.stream.lock().expect("link lock").take() {
            let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = wire::send(&mut s, &Message::Fence { epoch }, &mut Vec::new());
            s.shutdown();
        }
    }

    fn publish(&self, state: LinkState) {
        self.connected.store(state.connected, SeqCst);
        self.primary_last_seq
            .fetch_max(state.primary_last_seq, SeqCst);
        self.primary_durable_seq
            .fetch_max(state.primary_durable_seq, SeqCst);
        self.heard_ms.store(state.heard_ns / 1_000_000, SeqCst);
        if state.followed {
            self.followed.store(true, SeqCst);
        }
    }
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Could not connect, or the connection dropped: try again.
    Lost(String),
    /// The primary refused, with a code.
    Refused(ReplicationCode, String),
    /// The primary is of an older epoch, or the node would not take its history: it was
    /// told this node's epoch, and is not followed.
    StalePrimary { primary_epoch: u64 },
    /// Failback: cut the journal after this sequence, then come back.
    Truncate(u64),
    /// The sink refused what came (divergence, a gap), or the configurations differ: stop
    /// following.
    Stopped(ReplicationCode, String),
    /// Stopped for good: a promotion or a shutdown.
    Halted,
    /// The primary sent its snapshot at this sequence (the sink has it all): start over from
    /// it, then come back for what follows.
    Snapshot(u64),
}

impl Ended {
    /// Whether another session is tried after this one.
    pub fn retries(&self) -> bool {
        matches!(
            self,
            Ended::Lost(_) | Ended::Refused(..) | Ended::StalePrimary { .. }
        )
    }
}

/// How often the wait for the next dial looks at the stop flag.
const IDLE_POLL: Duration = Duration::from_millis(20);

/// A standby's follower: the session machine and what other threads see of it.
pub struct Follower {
    pub settings: Settings,
    pub link: Arc<Link>,
    /// The machine's clock (`Link::heard_ms` counts on it too).
    pub clock: Arc<dyn Clock>,
    /// Set to end the session for good (promotion, shutdown).
    pub stop: Arc<AtomicBool>,
    pub signal: Arc<AckSignal>,
    machine: Mutex<FollowerMachine>,
}

/// A session's connection, shared by its reader and its acker.
struct Conn {
    reader: Stream,
    writer: Mutex<Stream>,
}

impl Follower {
    /// `config`: this journal's engine configuration (empty for a new standby).
    pub fn new(
        settings: Settings,
        node: String,
        config: Vec<u8>,
        link: Arc<Link>,
        clock: Arc<dyn Clock>,
        stop: Arc<AtomicBool>,
        signal: Arc<AckSignal>,
    ) -> Follower {
        Follower {
            machine: Mutex::new(FollowerMachine::new(settings.clone(), node, config)),
            settings,
            link,
            clock,
            stop,
            signal,
        }
    }

    /// Milliseconds since the primary was last heard from.
    pub fn heard_ms_ago(&self) -> u64 {
        (self.clock.mono_ns() / 1_000_000).saturating_sub(self.link.heard_ms.load(SeqCst))
    }

    /// Step the machine with the node's standing now; publish its link state.
    fn step(&self, input: Input, node: &dyn StandbyNode) -> Vec<Action> {
        let standing = node.standing();
        let mut machine = self.machine.lock().expect("follower lock");
        let input = match input {
            _ if self.stop.load(SeqCst) => Input::Stop,
            other => other,
        };
        let actions = machine.step(self.clock.mono_ns(), input, &standing);
        self.link.publish(machine.link());
        actions
    }

    /// One session with the primary at `primary`, from the wait for the next dial to its
    /// end: why it ended.
    pub fn session(
        &self,
        dialer: &dyn Dialer,
        primary: SocketAddr,
        node: &dyn StandbyNode,
        sink: &mut dyn Sink,
    ) -> Ended {
        // Until the machine asks for a dial (it waits a heartbeat after a lost session).
        loop {
            let actions = self.step(Input::Tick, node);
            if let Some(ended) = ended_in(&actions) {
                return ended;
            }
            if actions.contains(&Action::Dial) {
                break;
            }
            std::thread::sleep(IDLE_POLL);
        }
        let dial_timeout = self.settings.timeout.max(Duration::from_millis(200));
        let stream = match dialer.dial(primary, dial_timeout) {
            Ok(stream) => stream,
            Err(e) => {
                let why = format!("connect {primary}: {e}");
                let actions = self.step(Input::DialFailed(why.clone()), node);
                return ended_in(&actions).unwrap_or(Ended::Lost(why));
            }
        };
        let conn = match stream.clone_conn() {
            Ok(writer) => Conn {
                reader: stream,
                writer: Mutex::new(writer),
            },
            Err(e) => return Ended::Lost(format!("cloning the connection: {e}")),
        };
        let _ = conn.reader.set_read_timeout(Some(self.settings.heartbeat));
        if let Ok(w) = conn.writer.lock() {
            let _ = w.set_write_timeout(Some(self.settings.timeout.max(Duration::from_secs(1))));
        }
        *self.link.stream.lock().expect("link lock") = conn.reader.clone_conn().ok();
        let nonce = match auth::nonce() {
            Ok(nonce) => nonce,
            Err(e) => return Ended::Lost(format!("drawing a nonce: {e}")),
        };
        let done = AtomicBool::new(false);
        let ended = std::thread::scope(|scope| {
            let mut acker = None;
            let mut input = Some(Input::Connected { nonce });
            let mut buf = Vec::new();
            let mut reader = match conn.reader.clone_conn() {
                Ok(r) => r,
                Err(e) => return Ended::Lost(format!("cloning the connection: {e}")),
            };
            loop {
                let actions = match input.take() {
                    Some(input) => self.step(input, node),
                    None => match wire::receive_frame(&mut reader, &mut buf) {
                        Ok(()) => self.step(
                            Input::Frame {
                                kind: buf[0],
                                body: &buf[1..],
                            },
                            node,
                        ),
                        Err(e) if timed_out(&e) => self.step(Input::Tick, node),
                        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                            self.step(Input::Garbage(e.to_string()), node)
                        }
                        Err(e) => self.step(Input::Disconnected(format!("read: {e}")), node),
                    },
                };
                if let Some(ended) =
                    self.carry_out(actions, &conn, node, sink, &mut acker, scope, &done)
                {
                    done.store(true, SeqCst);
                    self.signal.poke();
                    return ended;
                }
            }
        });
        self.link.connected.store(false, SeqCst);
        if let Some(s) = self.link.stream.lock().expect("link lock").take() {
            s.shutdown();
        }
        conn.reader.shutdown();
        naming(ended, primary)
    }

    /// Do what the machine said, feeding back what the node and the sink answer; the end
    /// of the session if it ended.
    #[allow(clippy::too_many_arguments)]
    fn carry_out<'scope, 'env>(
        &'env self,
        actions: Vec<Action>,
        conn: &'env Conn,
        node: &'env dyn StandbyNode,
        sink: &mut dyn Sink,
        acker: &mut Option<std::thread::ScopedJoinHandle<'scope, ()>>,
        scope: &'scope std::thread::Scope<'scope, 'env>,
        done: &'env AtomicBool,
    ) -> Option<Ended> {
        let mut pending: std::collections::VecDeque<Action> = actions.into();
        let mut scratch = Vec::new();
        while let Some(action) = pending.pop_front() {
            let answer = match action {
                Action::Dial => None,
                Action::Send(message) => {
                    let mut w = conn.writer.lock().expect("writer lock");
                    match wire::send(&mut *w, &message, &mut scratch) {
                        Ok(()) => None,
                        Err(e) => Some(Input::Disconnected(format!("send: {e}"))),
                    }
                }
                Action::Close => {
                    conn.reader.shutdown();
                    None
                }
                Action::Adopt {
                    epoch,
                    history,
                    config,
                } => match node.adopt(epoch, &history, &config) {
                    Ok(result) => Some(Input::Adopted(result)),
                    Err(e) => Some(Input::Refused {
                        code: ReplicationCode::NotPrimary,
                        why: format!("storing the epochs: {e}"),
                    }),
                },
                Action::Following {
                    epoch,
                    from_seq,
                    primary_last_seq,
                } => {
                    node.following(epoch, from_seq, primary_last_seq);
                    if acker.is_none() {
                        let writer = &conn.writer;
                        *acker = Some(scope.spawn(move || self.ack_loop(writer, node, done)));
                    }
                    None
                }
                Action::Records {
                    first_seq,
                    last_seq,
                    bytes,
                } => refused(sink.records(first_seq, last_seq, &bytes)),
                Action::Checkpoint { seq, hash } => refused(sink.checkpoint(seq, hash)),
                Action::SnapshotPiece { offset, bytes } => {
                    refused(sink.snapshot_piece(offset, &bytes))
                }
                Action::Ended(ended) => return Some(ended),
            };
            if let Some(input) = answer {
                pending.extend(self.step(input, node));
            }
        }
        None
    }

    /// The acker: sends the ack the machine owes when progress moved or a heartbeat
    /// passed. Everything else (timers, silence) is the reader's.
    fn ack_loop(&self, writer: &Mutex<Stream>, node: &dyn StandbyNode, done: &AtomicBool) {
        let mut seen = 0;
        let mut scratch = Vec::new();
        while !done.load(SeqCst) {
            seen = self.signal.wait(seen, self.settings.heartbeat);
            if done.load(SeqCst) {
                return;
            }
            let standing = node.standing();
            let ack = self
                .machine
                .lock()
                .expect("follower lock")
                .ack_due(self.clock.mono_ns(), &standing);
            if let Some(ack) = ack {
                let mut w = writer.lock().expect("writer lock");
                if wire::send(&mut *w, &ack, &mut scratch).is_err() {
                    return;
                }
            }
        }
    }
}

/// A refusal's reason with the primary's address in it, where the operator needs it.
fn naming(ended: Ended, primary: SocketAddr) -> Ended {
    match ended {
        Ended::Refused(code @ ReplicationCode::NotAReplicationPort, why) => {
            Ended::Refused(code, format!("{primary} {why}"))
        }
        Ended::Refused(code @ ReplicationCode::BadSecret, why) => {
            Ended::Refused(code, format!("{primary}: {why}"))
        }
        other => other,
    }
}

fn refused(result: Result<(), (ReplicationCode, String)>) -> Option<Input<'static>> {
    result.err().map(|(code, why)| Input::Refused { code, why })
}

fn ended_in(actions: &[Action]) -> Option<Ended> {
    actions.iter().find_map(|a| match a {
        Action::Ended(e) => Some(e.clone()),
        _ => None,
    })
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
