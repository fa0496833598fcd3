//! The standby's side: connect to the primary, say hello (node, epoch, last sequence, rolling
//! hash, secret), then read records, checkpoints and heartbeats and hand them to the `Sink`
//! (the standby's pipeline), while an acker thread reports what is received, durable and
//! applied: at once when it changes, and every heartbeat otherwise.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::auth;
use crate::clock::Clock;
use crate::code::ReplicationCode;
use crate::epoch::Epochs;
use crate::net::{Dialer, Stream};
use crate::wire::{self, Message, NO_TRUNCATION};
use crate::Settings;

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
    /// to follow and starts over from it (the SNAPSHOT message said its sequence and length;
    /// `receive_snapshot` checks the pieces add up to it).
    fn snapshot_piece(
        &mut self,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), (ReplicationCode, String)>;
}

/// What the standby reports back, read by the acker.
pub trait Progress: Send + Sync {
    fn received(&self) -> u64;
    fn durable(&self) -> u64;
    fn applied(&self) -> u64;
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

/// What the standby knows of its primary, for lag and failover.
#[derive(Default)]
pub struct Link {
    pub connected: AtomicBool,
    /// The primary's last sequenced and durable sequence, as last heard.
    pub primary_last_seq: AtomicU64,
    pub primary_durable_seq: AtomicU64,
    /// Milliseconds (on `clock`) when the primary was last heard from.
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
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Could not connect, or the connection dropped: try again.
    Lost(String),
    /// The primary refused, with a code.
    Refused(ReplicationCode, String),
    /// The primary is of an older epoch: it was told, and is not followed.
    StalePrimary { primary_epoch: u64 },
    /// Failback: cut the journal after this sequence, then come back.
    Truncate(u64),
    /// The sink refused what came (divergence, a gap): stop following.
    Stopped(ReplicationCode, String),
    /// `stop` was set (promotion or shutdown).
    Halted,
    /// The primary sent its snapshot at this sequence (the sink has it all): start over from
    /// it, then come back for what follows.
    Snapshot(u64),
}

pub struct Hello {
    pub node: String,
    pub epochs: Epochs,
    pub last_seq: u64,
    pub hash: u64,
}

/// A successful handshake: the primary's epoch and history, and its engine configuration.
pub struct Accepted {
    pub epoch: u64,
    pub history: Vec<(u64, u64)>,
    pub primary_last_seq: u64,
    pub config: Vec<u8>,
}

/// Connect through `dialer` and shake hands. `Err(ended)`: no session (unreachable, refused,
/// a stale primary, or a journal to cut first).
pub fn handshake(
    dialer: &dyn Dialer,
    primary: SocketAddr,
    settings: &Settings,
    hello: &Hello,
) -> Result<(Stream, Accepted), Ended> {
    let mut stream = dialer
        .dial(primary, settings.timeout.max(Duration::from_millis(200)))
        .map_err(|e| Ended::Lost(format!("connect {primary}: {e}")))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut scratch = Vec::new();
    // The epoch this node's journal tail was written in (not a newer one it merely heard
    // of): the primary cuts what was written after that epoch ended.
    let tail_epoch = hello
        .epochs
        .history
        .last()
        .map_or(hello.epochs.epoch, |&(e, _)| e);
    let standby_nonce = auth::nonce().map_err(|e| Ended::Lost(format!("drawing a nonce: {e}")))?;
    let message = Message::Hello {
        node: hello.node.clone(),
        epoch: tail_epoch,
        last_seq: hello.last_seq,
        hash: hello.hash,
        nonce: standby_nonce,
    };
    wire::send(&mut stream, &message, &mut scratch)
        .map_err(|e| Ended::Lost(format!("hello: {e}")))?;
    // The HELLO's body as sent: both proofs cover it.
    let hello_body = scratch[wire::FRAME_HEADER_LEN..].to_vec();
    match wire::receive_frame(&mut stream, &mut scratch) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(not_a_replication_port(
                primary,
                &format!("its answer is not a replication frame: {e}"),
            ));
        }
        Err(e) => return Err(Ended::Lost(format!("challenge: {e}"))),
    }
    let (kind, body) = (scratch[0], &scratch[1..]);
    if kind != wire::kind::CHALLENGE && kind != wire::kind::REFUSE {
        // A primary answers a HELLO with nothing else; look at the bytes before decoding
        // them as a replication message (a client port's ERROR reads as a CHECKPOINT).
        let detail = match wire::client_port::error(kind, body) {
            Some((code, message)) => format!(
                "it looks like a surge client port: it answered with the client protocol's \
                 ERROR frame, code {code}, {message:?}"
            ),
            None => format!("it answered with a frame of kind {kind}, not a CHALLENGE"),
        };
        return Err(not_a_replication_port(primary, &detail));
    }
    match Message::decode(kind, body) {
        Ok(Message::Challenge { nonce, proof }) => {
            if !auth::primary_proof_ok(&settings.secret, &hello_body, &nonce, &proof) {
                let why = "the primary could not prove it knows replication.secret";
                let _ = wire::send(
                    &mut stream,
                    &Message::refuse(ReplicationCode::BadSecret, why),
                    &mut Vec::new(),
                );
                return Err(Ended::Refused(
                    ReplicationCode::BadSecret,
                    format!("{primary}: {why} (set the same secret on both nodes)"),
                ));
            }
            let proof = auth::standby_proof(&settings.secret, &hello_body, &nonce);
            wire::send(&mut stream, &Message::Proof { proof }, &mut Vec::new())
                .map_err(|e| Ended::Lost(format!("proof: {e}")))?;
        }
        Ok(Message::Refuse { code, message }) => {
            return Err(Ended::Refused(
                ReplicationCode::from_number(code).unwrap_or(ReplicationCode::BadFrame),
                message,
            ))
        }
        Ok(other) => unreachable!("kind {kind} decoded as {other:?}"),
        Err(e) => return Err(Ended::Lost(format!("challenge: {e}"))),
    }
    wire::receive_frame(&mut stream, &mut scratch)
        .map_err(|e| Ended::Lost(format!("welcome: {e}")))?;
    let (kind, body) = (scratch[0], &scratch[1..]);
    match Message::decode(kind, body) {
        Ok(Message::Welcome {
            epoch,
            history,
            primary_last_seq,
            truncate_to,
            config,
        }) => {
            if epoch < hello.epochs.epoch {
                let _ = wire::send(
                    &mut stream,
                    &Message::Fence {
                        epoch: hello.epochs.epoch,
                    },
                    &mut Vec::new(),
                );
                return Err(Ended::StalePrimary {
                    primary_epoch: epoch,
                });
            }
            if truncate_to != NO_TRUNCATION {
                return Err(Ended::Truncate(truncate_to));
            }
            Ok((
                stream,
                Accepted {
                    epoch,
                    history,
                    primary_last_seq,
                    config,
                },
            ))
        }
        Ok(Message::Refuse { code, message }) => Err(Ended::Refused(
            ReplicationCode::from_number(code).unwrap_or(ReplicationCode::BadFrame),
            message,
        )),
        Ok(other) => Err(Ended::Refused(
            ReplicationCode::BadFrame,
            format!("expected a WELCOME, got {other:?}"),
        )),
        Err(e) => Err(Ended::Lost(format!("welcome: {e}"))),
    }
}

/// Tell a primary this node will not follow it (it is at `epoch`, newer than the primary's,
/// or it promoted) and close: best effort.
pub fn refuse_primary(stream: &mut Stream, epoch: u64) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = wire::send(stream, &Message::Fence { epoch }, &mut Vec::new());
    stream.shutdown();
}

/// The refusal for an address that answered the HELLO, but not as a primary's replication
/// port does: what it looked like, and what to set instead.
fn not_a_replication_port(primary: SocketAddr, detail: &str) -> Ended {
    Ended::Refused(
        ReplicationCode::NotAReplicationPort,
        format!(
            "{primary} answered but is not a replication port ({detail}); point --primary at \
             the primary's replication.listen address"
        ),
    )
}

/// Everything a standby's follower shares with its server.
pub struct Follower {
    pub settings: Settings,
    pub link: Arc<Link>,
    /// The clock `Link::heard_ms` counts on (its `mono_ns`, in milliseconds), and the acker's.
    pub clock: Arc<dyn Clock>,
    /// Set to end the session (promotion, shutdown).
    pub stop: Arc<AtomicBool>,
    pub progress: Arc<dyn Progress>,
    pub signal: Arc<AckSignal>,
}

impl Follower {
    pub fn heard_ms_ago(&self) -> u64 {
        mono_ms(self.clock.as_ref()).saturating_sub(self.link.heard_ms.load(SeqCst))
    }

    /// Follow on an accepted stream until it ends.
    pub fn follow(&self, mut stream: Stream, sink: &mut dyn Sink) -> Ended {
        let Follower {
            settings,
            link,
            clock,
            stop,
            progress,
            signal,
        } = self;
        let _ = stream.set_read_timeout(Some(settings.heartbeat));
        *link.stream.lock().expect("link lock") = stream.clone_conn().ok();
        link.connected.store(true, SeqCst);
        link.followed.store(true, SeqCst);
        link.heard_ms.store(mono_ms(clock.as_ref()), SeqCst);
        let done = Arc::new(AtomicBool::new(false));
        let acker = stream.clone_conn().ok().map(|s| {
            let (done, settings) = (done.clone(), settings.clone());
            let (progress, signal, clock) = (progress.clone(), signal.clone(), clock.clone());
            std::thread::Builder::new()
                .name("surge-repl-ack".into())
                .spawn(move || {
                    ack_loop(
                        s,
                        &settings,
                        &done,
                        progress.as_ref(),
                        &signal,
                        clock.as_ref(),
                    )
                })
        });
        let mut buf = Vec::new();
        let mut expected = progress.received() + 1;
        let ended = loop {
            if stop.load(SeqCst) {
                break Ended::Halted;
            }
            let message = match wire::receive(&mut stream, &mut buf) {
                Ok(m) => m,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    let silent = mono_ms(clock.as_ref()).saturating_sub(link.heard_ms.load(SeqCst));
                    if silent > settings.timeout.as_millis() as u64 {
                        break Ended::Lost(format!("the primary was silent for {silent} ms"));
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    break Ended::Stopped(ReplicationCode::BadFrame, e.to_string());
                }
                Err(_) if stop.load(SeqCst) => break Ended::Halted,
                Err(e) => break Ended::Lost(format!("read: {e}")),
            };
            link.heard_ms.store(mono_ms(clock.as_ref()), SeqCst);
            let result = match message {
                Message::Records {
                    first_seq,
                    last_seq,
                    bytes,
                } => {
                    if first_seq != expected || last_seq < first_seq {
                        Err((
                            ReplicationCode::SequenceGap,
                            format!("records {first_seq}..={last_seq} but {expected} comes next"),
                        ))
                    } else {
                        let r = sink.records(first_seq, last_seq, &bytes);
                        expected = last_seq + 1;
                        link.primary_last_seq.fetch_max(last_seq, SeqCst);
                        signal.poke();
                        r
                    }
                }
                Message::Checkpoint { seq, hash } => sink.checkpoint(seq, hash),
                Message::Snapshot { seq, len } => {
                    // Pieces are megabytes: give each the silence timeout, not a heartbeat.
                    let patience = settings.timeout.max(Duration::from_secs(5));
                    let _ = stream.set_read_timeout(Some(patience));
                    let received = receive_snapshot(&mut stream, &mut buf, len, |at, bytes| {
                        sink.snapshot_piece(at, bytes)
                    });
                    match received {
                        Ok(()) => break Ended::Snapshot(seq),
                        // The link broke mid-way: try again (a new snapshot is sent).
                        Err((ReplicationCode::PrimaryUnreachable, why)) => break Ended::Lost(why),
                        Err(e) => Err(e),
                    }
                }
                Message::Heartbeat {
                    last_seq,
                    durable_seq,
                    ..
                } => {
                    link.primary_last_seq.fetch_max(last_seq, SeqCst);
                    link.primary_durable_seq.fetch_max(durable_seq, SeqCst);
                    Ok(())
                }
                Message::Refuse { code, message } => {
                    break Ended::Refused(
                        ReplicationCode::from_number(code).unwrap_or(ReplicationCode::BadFrame),
                        message,
                    )
                }
                other => Err((ReplicationCode::BadFrame, format!("unexpected {other:?}"))),
            };
            if let Err((code, why)) = result {
                let _ = wire::send(
                    &mut stream,
                    &Message::refuse(code, why.clone()),
                    &mut Vec::new(),
                );
                break Ended::Stopped(code, why);
            }
        };
        done.store(true, SeqCst);
        signal.poke();
        link.connected.store(false, SeqCst);
        if let Some(s) = link.stream.lock().expect("link lock").take() {
            s.shutdown();
        }
        if let Some(Ok(acker)) = acker {
            let _ = acker.join();
        }
        ended
    }
}

/// Receive a snapshot file of `len` bytes in SNAPSHOT_CHUNK frames, handing each piece and
/// its offset to `piece`.
pub fn receive_snapshot(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    len: u64,
    mut piece: impl FnMut(u64, &[u8]) -> Result<(), (ReplicationCode, String)>,
) -> Result<(), (ReplicationCode, String)> {
    let mut at = 0u64;
    while at < len {
        match wire::receive(stream, buf) {
            Ok(Message::SnapshotChunk { bytes }) => {
                if at + bytes.len() as u64 > len {
                    return Err((
                        ReplicationCode::BadFrame,
                        format!("snapshot pieces run past its {len} bytes"),
                    ));
                }
                piece(at, &bytes)?;
                at += bytes.len() as u64;
            }
            Ok(other) => {
                return Err((
                    ReplicationCode::BadFrame,
                    format!("expected a snapshot piece, got {other:?}"),
                ))
            }
            Err(e) => {
                return Err((
                    ReplicationCode::PrimaryUnreachable,
                    format!("receiving the snapshot: {e}"),
                ))
            }
        }
    }
    Ok(())
}

fn ack_loop(
    mut stream: Stream,
    settings: &Settings,
    done: &AtomicBool,
    progress: &dyn Progress,
    signal: &AckSignal,
    clock: &dyn Clock,
) {
    let mut scratch = Vec::new();
    let mut seen = 0;
    let mut last = (u64::MAX, u64::MAX, u64::MAX);
    let heartbeat_ns = settings.heartbeat.as_nanos() as u64;
    let mut last_sent_ns = clock.mono_ns();
    while !done.load(SeqCst) {
        // Never ack past what this session received: the journal may hold records of this
        // node's own (it promoted meanwhile), which the primary does not have.
        let received = progress.received();
        let now = (
            received,
            progress.durable().min(received),
            progress.applied().min(received),
        );
        if now != last || clock.mono_ns().saturating_sub(last_sent_ns) >= heartbeat_ns {
            let ack = Message::Ack {
                received: now.0,
                durable: now.1,
                applied: now.2,
            };
            if wire::send(&mut stream, &ack, &mut scratch).is_err() {
                return;
            }
            last = now;
            last_sent_ns = clock.mono_ns();
        }
        seen = signal.wait(seen, settings.heartbeat);
    }
}

fn mono_ms(clock: &dyn Clock) -> u64 {
    clock.mono_ns() / 1_000_000
}
