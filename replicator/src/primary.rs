//! The primary's side: a listener for the standby, the handshake, then a sender (catch-up
//! from the journal files, then each group commit from the backlog as the journaler hands it
//! over, checkpoints, heartbeats) and an ack reader (acks, fences, silence), per standby.
//! Each standby holds a slot of the table (`standbys.rs`) by its name: one that comes back
//! replaces its own old session; one more than the slots is refused (`STANDBYS_FULL`).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use journal::Storage;

use crate::auth;
use crate::backlog::{After, Backlog};
use crate::catch_up;
use crate::checkpoints::Recent;
use crate::clock::Clock;
use crate::code::ReplicationCode;
use crate::epoch::Epochs;
use crate::net::{Listener, Stream};
use crate::standbys::{StandbyStatus, Standbys, STREAMING};
use crate::wire::{self, Message, NO_TRUNCATION};
use crate::{Hooks, Level, Settings};

/// Bytes of journal read from the files per message while catching up.
const CATCH_UP_CHUNK: usize = 4 << 20;
/// How long a connecting standby has to say hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// What the sender reads from the server.
pub struct Sources {
    pub backlog: Arc<Backlog>,
    pub checkpoints: Arc<Recent>,
    /// The journal directory, for catch-up.
    pub journal: Arc<dyn Storage>,
    /// The snapshot directory: a standby whose next sequence the journal no longer holds
    /// starts from the newest snapshot.
    pub snapshots: Arc<dyn Storage>,
    /// The payload of the journal's first record (the engine configuration).
    pub config: Vec<u8>,
}

/// The primary side of replication, running.
pub struct Primary {
    pub addr: SocketAddr,
    pub standbys: Arc<Standbys>,
    stop: Arc<AtomicBool>,
    listener: Option<std::thread::JoinHandle<()>>,
}

impl Primary {
    pub fn start(
        addr: SocketAddr,
        listener: Box<dyn Listener>,
        settings: Settings,
        sources: Sources,
        hooks: Arc<dyn Hooks>,
        standbys: Arc<Standbys>,
        clock: Arc<dyn Clock>,
    ) -> io::Result<Primary> {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Session {
            settings,
            sources,
            hooks,
            standbys: standbys.clone(),
            stop: stop.clone(),
            clock,
        });
        let handle = std::thread::Builder::new()
            .name("surge-repl-accept".into())
            .spawn(move || accept_loop(listener, shared))?;
        Ok(Primary {
            addr,
            standbys,
            stop,
            listener: Some(handle),
        })
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(h) = self.listener.take() {
            let _ = h.join();
        }
    }
}

struct Session {
    settings: Settings,
    sources: Sources,
    hooks: Arc<dyn Hooks>,
    standbys: Arc<Standbys>,
    stop: Arc<AtomicBool>,
    /// Heartbeat intervals and the heartbeat's wall time.
    clock: Arc<dyn Clock>,
}

fn accept_loop(listener: Box<dyn Listener>, session: Arc<Session>) {
    while !session.stop.load(SeqCst) {
        match listener.accept() {
            Ok(Some((stream, peer))) => {
                let session = session.clone();
                let _ = std::thread::Builder::new()
                    .name("surge-repl-send".into())
                    .spawn(move || serve(stream, peer, &session));
            }
            Ok(None) => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                session.hooks.log(
                    Level::Warn,
                    "replication_accept_failed",
                    None,
                    &format!("error={:?}", e.to_string()),
                );
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
    session.standbys.shut_down_all();
    session.sources.backlog.poke();
}

/// One standby connection, from hello to loss.
fn serve(mut stream: Stream, peer: SocketAddr, session: &Arc<Session>) {
    let hooks = &session.hooks;
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(session.settings.timeout.max(HANDSHAKE_TIMEOUT)));
    let mut buf = Vec::new();
    let mut scratch = Vec::new();
    let hello = wire::receive_at_most(&mut stream, &mut buf, wire::HANDSHAKE_FRAME_LEN_MAX);
    let (node, epoch, last_seq, hash) = match hello {
        Ok(Message::Hello {
            node,
            epoch,
            last_seq,
            hash,
            nonce: _,
        }) => (node, epoch, last_seq, hash),
        Ok(other) => {
            refuse(
                &mut stream,
                ReplicationCode::BadFrame,
                format!("expected a hello, got {other:?}"),
                hooks,
                peer,
            );
            return;
        }
        Err(e) => {
            // With TLS the handshake happens at this first read: a plaintext standby, or a
            // certificate the CA did not sign, fails here.
            let tls = crate::tls::is_tls_failure(&e);
            hooks.log(
                Level::Warn,
                "replication_handshake_failed",
                Some(match tls {
                    true => ReplicationCode::TlsRequired,
                    false => ReplicationCode::BadFrame,
                }),
                &format!("peer={peer} error=\"{e}\""),
            );
            return;
        }
    };
    if !crate::standbys::valid_node_name(&node) {
        refuse(
            &mut stream,
            ReplicationCode::BadFrame,
            format!("the standby's name {node:?} is not 1 to 64 of A-Z a-z 0-9 . _ -"),
            hooks,
            peer,
        );
        return;
    }
    match authenticate(&mut stream, &buf[1..], &session.settings.secret) {
        Ok(()) => {}
        Err(AuthFailure::Refused(why)) => {
            refuse(&mut stream, ReplicationCode::BadSecret, why, hooks, peer);
            return;
        }
        Err(AuthFailure::Abandoned(why)) => {
            hooks.log(
                Level::Info,
                "replication_handshake_abandoned",
                Some(ReplicationCode::HandshakeAbandoned),
                &format!("peer={peer} node={node} why=\"{why}\""),
            );
            return;
        }
    }
    let epochs: Epochs = hooks.epochs();
    if epoch > epochs.epoch {
        hooks.fenced_by(
            epoch,
            &format!("standby {node} at {peer} is at epoch {epoch}"),
        );
        refuse(
            &mut stream,
            ReplicationCode::StaleEpoch,
            format!(
                "this node is at epoch {}, below yours ({epoch})",
                epochs.epoch
            ),
            hooks,
            peer,
        );
        return;
    }
    if !hooks.is_primary() {
        refuse(
            &mut stream,
            ReplicationCode::NotPrimary,
            "this node is not a primary".into(),
            hooks,
            peer,
        );
        return;
    }
    let primary_last = session.sources.backlog.last_seq();
    let truncate_to = epochs.truncation_for(epoch, last_seq);
    let welcome = |truncate_to: u64| Message::Welcome {
        epoch: epochs.epoch,
        history: epochs.history.clone(),
        primary_last_seq: primary_last,
        truncate_to,
        config: session.sources.config.clone(),
    };
    if let Some(cut) = truncate_to {
        hooks.log(
            Level::Warn,
            "standby_must_truncate",
            None,
            &format!("node={node} peer={peer} standby_last_seq={last_seq} truncate_to={cut}"),
        );
        let _ = wire::send(&mut stream, &welcome(cut), &mut scratch);
        return;
    }
    if last_seq > primary_last {
        refuse(&mut stream, ReplicationCode::StandbyAhead, format!("the standby holds up to {last_seq} in epoch {epoch}; this primary ends at {primary_last}"), hooks, peer);
        return;
    }
    if let Some(mine) = session.sources.checkpoints.hash_at(last_seq) {
        if last_seq > 1 && hash != 0 && mine != hash {
            refuse(
                &mut stream,
                ReplicationCode::Diverged,
                format!("rolling hash at {last_seq}: standby {hash:#x}, primary {mine:#x}"),
                hooks,
                peer,
            );
            return;
        }
    }
    let needs_snapshot = !session.sources.holds(last_seq + 1);
    if wire::send(&mut stream, &welcome(NO_TRUNCATION), &mut scratch).is_err() {
        return;
    }
    if needs_snapshot {
        // The standby starts over from a snapshot and comes back for what follows it.
        match send_snapshot(&mut stream, &session.sources, &mut scratch) {
            Ok(seq) => {
                hooks.log(
                    Level::Info,
                    "standby_sent_snapshot",
                    None,
                    &format!(
                        "node={node} peer={peer} standby_last_seq={last_seq} snapshot_seq={seq}"
                    ),
                );
                // Closing with its acks unread would reset the connection and could drop
                // the last pieces on the way: wait for the standby to close first.
                let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
                while wire::receive(&mut stream, &mut buf).is_ok() {}
            }
            Err(why) => {
                hooks.log(
                    Level::Error,
                    "standby_catch_up_unavailable",
                    Some(ReplicationCode::CatchUpUnavailable),
                    &format!("node={node} peer={peer} why=\"{why}\""),
                );
                let _ = wire::send(
                    &mut stream,
                    &Message::refuse(ReplicationCode::CatchUpUnavailable, why),
                    &mut scratch,
                );
            }
        }
        return;
    }
    if last_seq == 0 {
        // A new standby came for the configuration and epochs; it comes back to follow.
        hooks.log(
            Level::Info,
            "standby_bootstrapped",
            None,
            &format!("node={node} peer={peer}"),
        );
        return;
    }
    // A standby that comes back replaces its own earlier session.
    let Some(claim) = session
        .standbys
        .claim(&node, stream.clone_conn().expect("clone"), last_seq)
    else {
        let slots = session.standbys.slots().len();
        refuse(
            &mut stream,
            ReplicationCode::StandbysFull,
            format!("all {slots} standby slots hold attached standbys (replication.max_standbys on the primary)"),
            hooks,
            peer,
        );
        return;
    };
    let status = &session.standbys.slots()[claim.slot];
    hooks.log(
        Level::Info,
        "standby_attached",
        None,
        &format!(
            "node={node} peer={peer} ack={} from_seq={} primary_last_seq={primary_last}",
            status.mode().name(),
            last_seq + 1
        ),
    );
    hooks.acked();

    let lost = Arc::new(AtomicBool::new(false));
    let reader = {
        let stream = stream.clone_conn().expect("clone");
        let (session, lost) = (session.clone(), lost.clone());
        std::thread::Builder::new()
            .name("surge-repl-acks".into())
            .spawn(move || {
                let status = &session.standbys.slots()[claim.slot];
                read_acks(stream, &session, status, &lost)
            })
    };
    let why = send_loop(&mut stream, last_seq, session, status, &lost);
    lost.store(true, SeqCst);
    stream.shutdown();
    if let Ok(reader) = reader {
        let _ = reader.join();
    }
    if session.standbys.release(claim) {
        hooks.log(
            Level::Warn,
            "standby_lost",
            Some(ReplicationCode::StandbyLost),
            &format!(
                "node={node} peer={peer} why=\"{why}\" acked={}",
                status.durable.load(SeqCst)
            ),
        );
        hooks.standby_lost();
    }
}

fn refuse(
    stream: &mut Stream,
    code: ReplicationCode,
    message: String,
    hooks: &Arc<dyn Hooks>,
    peer: SocketAddr,
) {
    hooks.log(
        Level::Warn,
        "standby_refused",
        Some(code),
        &format!("peer={peer} why=\"{message}\""),
    );
    let _ = wire::send(stream, &Message::refuse(code, message), &mut Vec::new());
}

/// Send what the standby lacks, then each commit as it comes; heartbeats when idle.
fn send_loop(
    stream: &mut Stream,
    mut pos: u64,
    session: &Session,
    status: &StandbyStatus,
    lost: &AtomicBool,
) -> String {
    let Session {
        sources,
        settings,
        hooks,
        stop,
        clock,
        ..
    } = session;
    let heartbeat_ns = settings.heartbeat.as_nanos() as u64;
    let mut scratch = Vec::with_capacity(1 << 20);
    let mut last_sent_ns = clock.mono_ns();
    let mut checkpoint_sent = pos;
    loop {
        if lost.load(SeqCst) {
            return "the standby stopped answering or closed".into();
        }
        if stop.load(SeqCst) {
            return "this node is stopping".into();
        }
        if !hooks.is_primary() {
            return "this node is no longer a primary".into();
        }
        let sent = match sources.backlog.after(pos, settings.heartbeat) {
            After::Chunks(chunks) => {
                let mut result = Ok(());
                for chunk in chunks {
                    let bytes = catch_up::from_seq(&chunk.bytes, chunk.first_seq, pos + 1);
                    let message = Message::Records {
                        first_seq: pos + 1,
                        last_seq: chunk.last_seq,
                        bytes: bytes.to_vec(),
                    };
                    // Before the send: an ack can come back before the send returns.
                    status.sent.fetch_max(chunk.last_seq, SeqCst);
                    result = wire::send(stream, &message, &mut scratch);
                    if result.is_err() {
                        break;
                    }
                    pos = chunk.last_seq;
                }
                mark_streaming(status, pos, hooks);
                result.map(|()| true)
            }
            After::Gone { oldest } => {
                let to = (oldest - 1).min(hooks.durable_seq());
                if to <= pos {
                    std::thread::sleep(Duration::from_micros(200));
                    Ok(false)
                } else {
                    match catch_up::read(sources.journal.as_ref(), pos + 1, to, CATCH_UP_CHUNK) {
                        Ok(Some(read)) => {
                            let message = Message::Records {
                                first_seq: read.first_seq,
                                last_seq: read.last_seq,
                                bytes: read.bytes,
                            };
                            pos = read.last_seq;
                            status.sent.fetch_max(pos, SeqCst);
                            wire::send(stream, &message, &mut scratch).map(|()| true)
                        }
                        Ok(None) => {
                            let why =
                                format!("sequence {} is no longer in the journal files", pos + 1);
                            let _ = wire::send(
                                stream,
                                &Message::refuse(ReplicationCode::CatchUpUnavailable, why.clone()),
                                &mut scratch,
                            );
                            hooks.log(
                                Level::Error,
                                "standby_catch_up_unavailable",
                                Some(ReplicationCode::CatchUpUnavailable),
                                &why,
                            );
                            return why;
                        }
                        Err(e) => return format!("reading the journal: {e}"),
                    }
                }
            }
            After::Nothing => {
                // Nothing to send: a standby that attached at this primary's last sequence
                // has caught up already (records would come only with the next command, and
                // a halted primary may sequence none until a standby streams).
                if pos >= sources.backlog.last_seq() {
                    mark_streaming(status, pos, hooks);
                }
                Ok(false)
            }
        };
        match sent {
            Ok(true) => {
                status.sent.store(pos, SeqCst);
                last_sent_ns = clock.mono_ns();
            }
            Ok(false) => {}
            Err(e) => return format!("send: {e}"),
        }
        for (seq, hash) in sources.checkpoints.between(checkpoint_sent, pos) {
            if let Err(e) = wire::send(stream, &Message::Checkpoint { seq, hash }, &mut scratch) {
                return format!("send: {e}");
            }
            checkpoint_sent = seq;
        }
        if clock.mono_ns().saturating_sub(last_sent_ns) >= heartbeat_ns {
            let heartbeat = Message::Heartbeat {
                last_seq: sources.backlog.last_seq(),
                durable_seq: hooks.durable_seq(),
                unix_ns: clock.wall_ns(),
            };
            if let Err(e) = wire::send(stream, &heartbeat, &mut scratch) {
                return format!("send: {e}");
            }
            last_sent_ns = clock.mono_ns();
        }
    }
}

/// The standby has everything this primary had to send: it streams from the backlog now.
fn mark_streaming(status: &StandbyStatus, pos: u64, hooks: &Arc<dyn Hooks>) {
    if status.state.swap(STREAMING, SeqCst) != STREAMING {
        hooks.log(
            Level::Info,
            "standby_streaming",
            None,
            &format!("node={} from_seq={pos}", status.name()),
        );
        hooks.acked();
    }
}

impl Sources {
    /// Whether `seq` can be sent from memory or from the journal files (or is not written
    /// yet: a standby that is caught up needs nothing old).
    fn holds(&self, seq: u64) -> bool {
        seq > self.backlog.last_seq()
            || self.backlog.holds(seq)
            || matches!(
                catch_up::read(self.journal.as_ref(), seq, seq, 1),
                Ok(Some(_))
            )
    }
}

/// Send the newest snapshot file (checked first); its sequence.
fn send_snapshot(
    stream: &mut Stream,
    sources: &Sources,
    scratch: &mut Vec<u8>,
) -> Result<u64, String> {
    let storage = sources.snapshots.as_ref();
    let seqs = journal::snapshot::snapshot_seqs(storage).map_err(|e| e.to_string())?;
    let Some(&seq) = seqs.last() else {
        return Err(
            "the journal no longer holds what the standby needs and there is no snapshot".into(),
        );
    };
    let name = journal::snapshot::snapshot_name(seq);
    let bytes = storage
        .read(&name)
        .map_err(|e| format!("reading {name}: {e}"))?;
    journal::snapshot::check_snapshot(&bytes).map_err(|why| format!("{name}: {why}"))?;
    let len = bytes.len() as u64;
    let send = |stream: &mut Stream, m: &Message, scratch: &mut Vec<u8>| {
        wire::send(stream, m, scratch).map_err(|e| format!("send: {e}"))
    };
    send(stream, &Message::Snapshot { seq, len }, scratch)?;
    for piece in bytes.chunks(CATCH_UP_CHUNK) {
        let chunk = Message::SnapshotChunk {
            bytes: piece.to_vec(),
        };
        send(stream, &chunk, scratch)?;
    }
    Ok(seq)
}

/// Acks (and fences) from the standby; silence past the timeout is a loss.
fn read_acks(mut stream: Stream, session: &Session, status: &StandbyStatus, lost: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(session.settings.timeout));
    let mut buf = Vec::new();
    while !lost.load(SeqCst) {
        match wire::receive(&mut stream, &mut buf) {
            Ok(Message::Ack {
                received,
                durable,
                applied,
            }) => {
                // Pair check: a standby acks only what this session sent it. More means its
                // journal holds records that are not this primary's (it led an epoch of its
                // own): its acks must not release anything.
                let sent = status.sent.load(SeqCst);
                if received.max(durable).max(applied) > sent {
                    session.hooks.log(
                        Level::Warn,
                        "standby_ack_refused",
                        Some(ReplicationCode::StandbyAhead),
                        &format!(
                            "node={} received={received} durable={durable} sent={sent} \
                             detail=\"an ack past what was sent; the session ends\"",
                            status.name()
                        ),
                    );
                    break;
                }
                status.received.fetch_max(received, SeqCst);
                status.durable.fetch_max(durable, SeqCst);
                status.applied.fetch_max(applied, SeqCst);
                session.hooks.acked();
            }
            Ok(Message::Fence { epoch }) => {
                session.hooks.fenced_by(epoch, "a fence from the standby");
            }
            Ok(Message::Refuse { code, message }) => {
                session.hooks.log(
                    Level::Warn,
                    "standby_stopped_following",
                    ReplicationCode::from_number(code),
                    &format!("why=\"{message}\""),
                );
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    lost.store(true, SeqCst);
    stream.shutdown();
    session.sources.backlog.poke();
}

/// How the challenge–response failed.
enum AuthFailure {
    /// The standby answered, and not with a good proof: refuse it (`BAD_SECRET`).
    Refused(String),
    /// The connection ended or went silent before an answer: nobody to refuse.
    Abandoned(String),
}

/// The challenge–response (`auth.rs`): send our nonce and proof for the HELLO whose body is
/// `hello_body`, and check the standby's proof.
fn authenticate(stream: &mut Stream, hello_body: &[u8], secret: &[u8]) -> Result<(), AuthFailure> {
    let nonce = auth::nonce().map_err(|e| AuthFailure::Refused(format!("drawing a nonce: {e}")))?;
    let challenge = Message::Challenge {
        nonce,
        proof: auth::primary_proof(secret, hello_body, &nonce),
    };
    wire::send(stream, &challenge, &mut Vec::new())
        .map_err(|e| AuthFailure::Abandoned(format!("challenge: {e}")))?;
    let proof = wire::receive_at_most(stream, &mut Vec::new(), wire::HANDSHAKE_FRAME_LEN_MAX);
    match proof {
        Ok(Message::Proof { proof })
            if auth::standby_proof_ok(secret, hello_body, &nonce, &proof) =>
        {
            Ok(())
        }
        Ok(Message::Proof { .. }) => Err(AuthFailure::Refused(
            "the standby could not prove it knows replication.secret".into(),
        )),
        Ok(Message::Refuse { message, .. }) => Err(AuthFailure::Refused(format!(
            "the standby refused: {message}"
        ))),
        Ok(other) => Err(AuthFailure::Refused(format!(
            "expected a PROOF, got {other:?}"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(AuthFailure::Refused(format!("proof: {e}")))
        }
        Err(e) => Err(AuthFailure::Abandoned(format!("proof: {e}"))),
    }
}
