//! The primary's side: a listener for the standbys, and per standby a session
//! (`session.rs` decides: the handshake, what follows from where the standby stands, the
//! stream, the acks) driven here by two threads: a sender (it waits for the backlog to move
//! or a heartbeat to pass, then steps the session and writes what it says) and an ack
//! reader (it reads frames into the session). Each standby holds a slot of the table
//! (`standbys.rs`) by its name: one that comes back replaces its own old session; one more
//! than the slots is refused (`STANDBYS_FULL`).

pub mod session;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use journal::Storage;

use crate::auth;
use crate::backlog::Backlog;
use crate::catch_up;
use crate::checkpoints::Recent;
use crate::clock::Clock;
use crate::net::{Listener, Stream};
use crate::standbys::Standbys;
use crate::wire::{self, Message};
use crate::{Hooks, Level, Settings};

use session::{Action, Context, Input, Session, CATCH_UP_CHUNK};

/// How often the accept loop looks at its stop flag, and a sender not yet streaming at its
/// session.
const POLL: Duration = Duration::from_millis(20);
/// How long a connecting standby has for the handshake (and TLS's, at the first read).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_nanos(session::HANDSHAKE_TIMEOUT_NS);

/// A checkpoint chain a standby can start from: the sequence it reaches, and its files,
/// oldest (the full one) first.
pub struct Chain {
    pub seq: u64,
    pub files: Vec<(u64, std::path::PathBuf)>,
}

/// Finds the newest whole checkpoint chain (the server decides what a whole chain is).
pub type ChainFinder = Arc<dyn Fn() -> Result<Option<Chain>, String> + Send + Sync>;

/// What the sender reads from the server.
pub struct Sources {
    pub backlog: Arc<Backlog>,
    pub checkpoints: Arc<Recent>,
    /// The journal directory, for catch-up.
    pub journal: Arc<dyn Storage>,
    /// The snapshot directory: a standby whose next sequence the journal no longer holds
    /// starts from the newest snapshot, or from the newest checkpoint chain if that is newer.
    pub snapshots: Arc<dyn Storage>,
    /// The newest whole checkpoint chain, if the server keeps checkpoints.
    pub newest_chain: Option<ChainFinder>,
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
        let shared = Arc::new(Shared {
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

/// What every session of this primary shares.
struct Shared {
    settings: Settings,
    sources: Sources,
    hooks: Arc<dyn Hooks>,
    standbys: Arc<Standbys>,
    stop: Arc<AtomicBool>,
    /// Heartbeat intervals and the heartbeat's wall time.
    clock: Arc<dyn Clock>,
}

fn accept_loop(listener: Box<dyn Listener>, shared: Arc<Shared>) {
    while !shared.stop.load(SeqCst) {
        match listener.accept() {
            Ok(Some((stream, peer))) => {
                let shared = shared.clone();
                let _ = std::thread::Builder::new()
                    .name("surge-repl-send".into())
                    .spawn(move || serve(stream, peer, &shared));
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                shared.hooks.log(
                    Level::Warn,
                    "replication_accept_failed",
                    None,
                    &format!("error={:?}", e.to_string()),
                );
                std::thread::sleep(POLL);
            }
        }
    }
    shared.standbys.shut_down_all();
    shared.sources.backlog.poke();
}

/// One standby's connection and its session.
struct Conn<'a> {
    shared: &'a Shared,
    session: Mutex<Session>,
    writer: Mutex<Stream>,
    /// Shut down to end the session (the reader's blocking read returns).
    shutdown: Mutex<Stream>,
}

impl Conn<'_> {
    /// Step the session, then carry out what it says; whether it is still going. The writer
    /// is held from the decision to the last send, so two threads' sends never interleave
    /// out of the order the session decided them in.
    fn step(&self, input: Input) -> bool {
        let shared = self.shared;
        let ctx = Context {
            sources: &shared.sources,
            hooks: shared.hooks.as_ref(),
            standbys: &shared.standbys,
            wall_ns: shared.clock.wall_ns(),
        };
        let mut writer = self.writer.lock().expect("writer lock");
        let step = |input: Input| {
            let mut session = self.session.lock().expect("session lock");
            session.step(shared.clock.mono_ns(), input, &ctx)
        };
        let mut pending = step(input);
        let mut scratch = Vec::new();
        while !pending.is_empty() {
            let mut then = Vec::new();
            for action in pending {
                match action {
                    Action::Send(message) => {
                        if let Err(e) = wire::send(&mut *writer, &message, &mut scratch) {
                            then.extend(step(Input::Disconnected(format!("send: {e}"))));
                            break;
                        }
                    }
                    Action::SendSnapshot => {
                        let sent = send_snapshot(&mut writer, &shared.sources, &mut scratch);
                        then.extend(step(Input::SnapshotSent(sent)));
                    }
                    Action::Close => self.shutdown.lock().expect("conn lock").shutdown(),
                }
            }
            pending = then;
        }
        drop(writer);
        !self.session.lock().expect("session lock").done()
    }

    /// Read frames into the session until it ends: the handshake's small frames first, then
    /// the stream's acks.
    fn read(&self, mut reader: Stream) {
        let mut buf = Vec::new();
        let mut streaming = false;
        // The handshake (with TLS, its own handshake happens at the first read) gets the
        // handshake's time; the stream's acks, the silence timeout.
        let _ = reader.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        loop {
            let handshaking = self.session.lock().expect("session lock").handshaking();
            if !handshaking && !streaming {
                streaming = true;
                let _ = reader.set_read_timeout(Some(self.shared.settings.timeout));
            }
            let limit = match handshaking {
                true => wire::HANDSHAKE_FRAME_LEN_MAX,
                false => wire::FRAME_LEN_MAX,
            };
            let read = wire::receive_frame_at_most(&mut reader, &mut buf, limit);
            let input = read_input(read, &buf);
            if !self.step(input) {
                return;
            }
        }
    }
}

/// A closer for a connection that cannot be shared (its TLS handshake failed).
struct Unshared;

impl crate::standbys::Closer for Unshared {
    fn close(&self) {}
}

/// What the reader made of one read.
fn read_input<'a>(result: io::Result<()>, buf: &'a [u8]) -> Input<'a> {
    match result {
        Ok(()) => Input::Frame {
            kind: buf[0],
            body: &buf[1..],
        },
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Input::Tick
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData || crate::tls::is_tls_failure(&e) => {
            Input::Garbage {
                tls: crate::tls::is_tls_failure(&e),
                why: e.to_string(),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Input::Disconnected("the standby stopped answering or closed".into())
        }
        Err(e) => Input::Disconnected(format!("the standby stopped answering or closed ({e})")),
    }
}

/// One standby connection, from hello to loss.
fn serve(mut stream: Stream, peer: SocketAddr, shared: &Arc<Shared>) {
    let settings = shared.settings.clone();
    // The first read: with TLS its handshake happens here, and only then can the
    // connection be shared between this session's threads.
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let mut buf = Vec::new();
    let first = wire::receive_frame_at_most(&mut stream, &mut buf, wire::HANDSHAKE_FRAME_LEN_MAX);
    let nonce = match auth::nonce() {
        Ok(nonce) => nonce,
        Err(e) => {
            let line = format!("peer={peer} error=\"drawing a nonce: {e}\"");
            shared
                .hooks
                .log(Level::Error, "replication_handshake_failed", None, &line);
            return;
        }
    };
    let clones = (
        stream.clone_conn(),
        stream.clone_conn(),
        stream.clone_conn(),
    );
    let (closer, writer, reader): (Box<dyn crate::standbys::Closer>, _, _) = match clones {
        (Ok(closer), Ok(writer), Ok(reader)) => (Box::new(closer), writer, Some(reader)),
        // Unshareable: the TLS handshake failed; the session says so and ends.
        _ => match stream.clone_conn() {
            Ok(writer) => (Box::new(Unshared), writer, None),
            Err(_) => {
                let session =
                    Session::new(settings, peer.to_string(), 0, nonce, Box::new(Unshared));
                let mut session = session;
                let ctx = Context {
                    sources: &shared.sources,
                    hooks: shared.hooks.as_ref(),
                    standbys: &shared.standbys,
                    wall_ns: shared.clock.wall_ns(),
                };
                session.step(shared.clock.mono_ns(), read_input(first, &buf), &ctx);
                return;
            }
        },
    };
    let _ = writer.set_write_timeout(Some(settings.timeout.max(HANDSHAKE_TIMEOUT)));
    let session = Session::new(
        settings.clone(),
        peer.to_string(),
        shared.clock.mono_ns(),
        nonce,
        closer,
    );
    let conn = Conn {
        shared,
        session: Mutex::new(session),
        writer: Mutex::new(writer),
        shutdown: Mutex::new(stream),
    };
    if !conn.step(read_input(first, &buf)) {
        conn.shutdown.lock().expect("conn lock").shutdown();
        return;
    }
    let Some(reader) = reader else {
        return;
    };
    std::thread::scope(|scope| {
        scope.spawn(|| conn.read(reader));
        // The sender: each commit as the backlog gets it, a heartbeat when idle.
        loop {
            let (done, position) = {
                let session = conn.session.lock().expect("session lock");
                (session.done(), session.position())
            };
            if done {
                break;
            }
            if shared.stop.load(SeqCst) {
                conn.step(Input::Disconnected("this node is stopping".into()));
                break;
            }
            match position {
                Some(pos) => {
                    shared.sources.backlog.wait_past(pos, settings.heartbeat);
                    if !conn.step(Input::Tick) {
                        break;
                    }
                }
                None => std::thread::sleep(POLL),
            }
        }
        conn.shutdown.lock().expect("conn lock").shutdown();
    });
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

/// Send the newer of the newest snapshot file (checked first) and the newest checkpoint
/// chain (as a bundle: `journal::checkpoint_bundle`, each file checked by the standby); the
/// sequence it reaches.
fn send_snapshot(
    stream: &mut Stream,
    sources: &Sources,
    scratch: &mut Vec<u8>,
) -> Result<u64, String> {
    let storage = sources.snapshots.as_ref();
    let seqs = journal::snapshot::snapshot_seqs(storage).map_err(|e| e.to_string())?;
    let chain = match &sources.newest_chain {
        Some(find) => find()?,
        None => None,
    };
    let send = |stream: &mut Stream, m: &Message, scratch: &mut Vec<u8>| {
        wire::send(stream, m, scratch).map_err(|e| format!("send: {e}"))
    };
    let snapshot_seq = seqs.last().copied();
    if let Some(chain) = chain.filter(|c| snapshot_seq.is_none_or(|s| c.seq > s)) {
        let len = journal::checkpoint_bundle::bundle_len(&chain.files)
            .map_err(|e| format!("sizing the checkpoint chain: {e}"))?;
        send(
            stream,
            &Message::Snapshot {
                seq: chain.seq,
                len,
            },
            scratch,
        )?;
        let mut failed = None;
        journal::checkpoint_bundle::write_bundle(
            &chain.files,
            chain.seq,
            CATCH_UP_CHUNK,
            &mut |piece| {
                let chunk = Message::SnapshotChunk {
                    bytes: piece.to_vec(),
                };
                send(stream, &chunk, scratch).map_err(|why| {
                    failed = Some(why);
                    io::Error::other("send failed")
                })
            },
        )
        .map_err(|e| {
            failed
                .take()
                .unwrap_or(format!("reading the checkpoint chain: {e}"))
        })?;
        return Ok(chain.seq);
    }
    let Some(seq) = snapshot_seq else {
        return Err(
            "the journal no longer holds what the standby needs and there is no snapshot or \
             checkpoint"
                .into(),
        );
    };
    let name = journal::snapshot::snapshot_name(seq);
    let bytes = storage
        .read(&name)
        .map_err(|e| format!("reading {name}: {e}"))?;
    journal::snapshot::check_snapshot(&bytes).map_err(|why| format!("{name}: {why}"))?;
    let len = bytes.len() as u64;
    send(stream, &Message::Snapshot { seq, len }, scratch)?;
    for piece in bytes.chunks(CATCH_UP_CHUNK) {
        let chunk = Message::SnapshotChunk {
            bytes: piece.to_vec(),
        };
        send(stream, &chunk, scratch)?;
    }
    Ok(seq)
}
