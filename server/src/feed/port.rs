//! The feed port: consumers connect, send SUBSCRIBE, get FEED_BEGIN and then FEED frames.
//! One thread per consumer, at most `feed.max_subscribers`, each with one frame buffer of
//! `feed.batch_kib`: the feed's reads and sends never run on the serving pipeline's threads,
//! and a consumer that reads slowly only blocks its own thread (its position is in the
//! files, its lag in each frame's `head` and in `/metrics`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine::wire::feed::{begin_feed_frame, finish_feed_frame, FeedBegin, Subscribe};
use engine::wire::{frame_kind, split_frame, ErrorFrame, PROTOCOL_VERSION};
use engine::Code;

use super::reader::{FeedReader, ReadError};
use super::FeedShared;
use crate::telemetry::log::{self as oplog, Level};

/// A consumer that is caught up gets an empty FEED frame this often: it sees the node's
/// head move, and a dead connection is found.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a consumer has to send SUBSCRIBE.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// A send that makes no progress for this long ends the subscription.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a subscription made while the node starts waits for the feed log to open.
const OPEN_WAIT: Duration = Duration::from_secs(10);
/// How often the accept loop looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// Limits from `[feed]`.
#[derive(Clone, Copy, Debug)]
pub struct PortLimits {
    pub max_subscribers: usize,
    pub batch_bytes: usize,
}

pub struct FeedPort {
    pub addr: SocketAddr,
    pub thread: JoinHandle<()>,
}

/// The subscribers' positions, for the slowest-consumer gauge.
struct Positions {
    slots: Vec<AtomicU64>,
}

impl Positions {
    const FREE: u64 = u64::MAX;
    /// Taken by a consumer that has not subscribed yet: no position to count.
    const CONNECTING: u64 = u64::MAX - 1;

    fn take(&self, at: u64) -> Option<usize> {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot
                .compare_exchange(Self::FREE, at, SeqCst, SeqCst)
                .is_ok()
            {
                return Some(i);
            }
        }
        None
    }

    fn release(&self, i: usize) {
        self.slots[i].store(Self::FREE, SeqCst);
    }

    fn slowest(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.load(Relaxed))
            .filter(|&at| at < Self::CONNECTING)
            .min()
            .unwrap_or(Self::FREE)
    }
}

impl FeedPort {
    pub fn start(
        listener: TcpListener,
        feed: Arc<FeedShared>,
        limits: PortLimits,
    ) -> io::Result<FeedPort> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        feed.metrics()
            .subscribers_max
            .store(limits.max_subscribers as u64, Relaxed);
        let positions = Arc::new(Positions {
            slots: (0..limits.max_subscribers)
                .map(|_| AtomicU64::new(Positions::FREE))
                .collect(),
        });
        let thread = std::thread::Builder::new()
            .name("surge-feed".into())
            .spawn(move || accept_loop(listener, feed, limits, positions))?;
        Ok(FeedPort { addr, thread })
    }
}

fn accept_loop(
    listener: TcpListener,
    feed: Arc<FeedShared>,
    limits: PortLimits,
    positions: Arc<Positions>,
) {
    // Each consumer's thread, and its socket: at a stop the socket is shut down, so a thread
    // blocked sending to a stalled consumer ends now, not at the send timeout.
    let mut consumers: Vec<(JoinHandle<()>, Option<TcpStream>)> = Vec::new();
    while !feed.shared.stop.load(SeqCst) {
        consumers.retain(|(c, _)| !c.is_finished());
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) => {
                oplog::line(Level::Warn, "feed_accept_failed", None, &[("error", &e)]);
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_nodelay(true);
        // The kernel's buffer for a consumer is bounded too: two frames, not the autotuned
        // megabytes a stalled consumer would otherwise pin.
        limit_socket_buffer(&stream, libc::SO_SNDBUF, 2 * limits.batch_bytes);
        let Some(slot) = positions.take(Positions::CONNECTING) else {
            refuse(stream, &feed, Code::FeedSubscribersFull, "the feed port has feed.max_subscribers subscriptions; a standby serves the same feed");
            continue;
        };
        let socket = stream.try_clone().ok();
        let (feed, positions) = (feed.clone(), positions.clone());
        let spawned = std::thread::Builder::new()
            .name("surge-feed-consumer".into())
            .spawn(move || {
                feed.metrics().subscribers.fetch_add(1, Relaxed);
                let result = serve(stream, &feed, limits, &positions, slot);
                positions.release(slot);
                feed.metrics().subscribers.fetch_sub(1, Relaxed);
                feed.metrics()
                    .slowest_through_seq
                    .store(positions.slowest(), Relaxed);
                if let Err(e) = result {
                    oplog::info("feed_consumer_gone", &[("peer", &peer), ("why", &e)]);
                }
            });
        match spawned {
            Ok(handle) => consumers.push((handle, socket)),
            Err(e) => oplog::line(Level::Warn, "feed_spawn_failed", None, &[("error", &e)]),
        }
    }
    for (consumer, socket) in consumers {
        if let Some(socket) = socket {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        let _ = consumer.join();
    }
}

/// Cap one of a socket's kernel buffers (`libc::SO_SNDBUF` or `SO_RCVBUF`) at about `bytes`.
pub fn limit_socket_buffer(stream: &TcpStream, option: libc::c_int, bytes: usize) {
    use std::os::fd::AsRawFd;
    let bytes = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt on a socket the caller owns, with a c_int option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn refuse(mut stream: TcpStream, feed: &FeedShared, code: Code, why: &str) {
    feed.metrics().refused.fetch_add(1, Relaxed);
    let mut out = Vec::new();
    ErrorFrame {
        code: code.number(),
        message: format!("{}: {why}", code.name()),
    }
    .encode(&mut out);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&out);
}

/// One consumer, from SUBSCRIBE to the end of its subscription.
fn serve(
    mut stream: TcpStream,
    feed: &FeedShared,
    limits: PortLimits,
    positions: &Positions,
    slot: usize,
) -> Result<(), String> {
    let subscribe = match read_subscribe(&mut stream) {
        Ok(subscribe) => subscribe,
        Err((code, why)) => {
            refuse(stream, feed, code, &why);
            return Err(why);
        }
    };
    stream
        .set_write_timeout(Some(SEND_TIMEOUT))
        .map_err(|e| e.to_string())?;
    // At a start the log opens once the snapshotter has its engine: wait for it a while.
    let open = feed.wait_open(OPEN_WAIT);
    let Some(published) = open.filter(|_| feed.metrics().enabled.load(Relaxed) == 1) else {
        refuse(
            stream,
            feed,
            Code::FeedUnavailable,
            "the feed log is not open (the node is starting, or its feed writer stopped)",
        );
        return Err("the feed log is not open".into());
    };
    let head = feed.sendable(&published);
    let mut out = Vec::with_capacity(limits.batch_bytes + 64);
    FeedBegin {
        begins_after: published.begins_after,
        head,
    }
    .encode(&mut out);
    let mut reader = match FeedReader::open(&feed.dir, subscribe.after) {
        Ok(reader) => reader,
        Err(ReadError::Truncated { begins_after }) => {
            let _ = stream.write_all(&out);
            let why = format!(
                "the feed now begins after sequence {begins_after}; asked for events after {}",
                subscribe.after
            );
            refuse(stream, feed, Code::FeedTruncated, &why);
            return Err(why);
        }
        Err(ReadError::Io(e)) => {
            refuse(stream, feed, Code::FeedUnavailable, &e);
            return Err(e);
        }
    };
    stream.write_all(&out).map_err(|e| e.to_string())?;
    positions.slots[slot].store(subscribe.after, SeqCst);
    let stop_at = (!subscribe.follow).then_some(head);
    let mut last_sent = Instant::now();
    loop {
        if feed.shared.stop.load(SeqCst) {
            return Ok(());
        }
        if feed.metrics().enabled.load(Relaxed) == 0 {
            let why = "the feed writer stopped (feed_stopped in the node's log): this node's \
                       feed goes no further until a restart; another node serves the same feed";
            refuse(stream, feed, Code::FeedUnavailable, why);
            return Err(why.into());
        }
        let published = feed.published().expect("published before");
        let sendable = feed.sendable(&published);
        let bound = stop_at.map_or(sendable, |end| end.min(sendable));
        out.clear();
        let start = begin_feed_frame(&mut out, sendable);
        let before = reader.through();
        let batch = match reader.read(&published, bound, &mut out, limits.batch_bytes) {
            Ok(batch) => batch,
            Err(ReadError::Truncated { begins_after }) => {
                let why = format!("this consumer fell behind the feed's retention: it now begins after sequence {begins_after}");
                refuse(stream, feed, Code::FeedTruncated, &why);
                return Err(why);
            }
            Err(ReadError::Io(e)) => {
                refuse(stream, feed, Code::FeedUnavailable, &e);
                return Err(e);
            }
        };
        finish_feed_frame(&mut out, start, batch.count, batch.through);
        let moved = batch.count > 0 || batch.through > before;
        if moved || last_sent.elapsed() >= HEARTBEAT {
            stream.write_all(&out).map_err(|e| e.to_string())?;
            last_sent = Instant::now();
            feed.metrics()
                .sent_events
                .fetch_add(batch.count as u64, Relaxed);
            positions.slots[slot].store(batch.through, SeqCst);
            feed.metrics()
                .slowest_through_seq
                .store(positions.slowest(), Relaxed);
        }
        if stop_at.is_some_and(|end| batch.through >= end) {
            return Ok(());
        }
        if !moved {
            // Caught up: wait for the writer (or the release bound) to move.
            feed.wait_past(batch.through.max(published.through), HEARTBEAT / 4);
        }
    }
}

/// Read the SUBSCRIBE frame (within `SUBSCRIBE_TIMEOUT`).
fn read_subscribe(stream: &mut TcpStream) -> Result<Subscribe, (Code, String)> {
    let io_err = |e: io::Error| (Code::FrameTimeout, format!("no SUBSCRIBE: {e}"));
    stream
        .set_read_timeout(Some(SUBSCRIBE_TIMEOUT))
        .map_err(io_err)?;
    let mut buf = vec![0u8; 5];
    stream.read_exact(&mut buf).map_err(io_err)?;
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4")) as usize;
    if len == 0 {
        return Err((Code::FrameTooShort, "a zero-length frame".into()));
    }
    if len > 64 {
        return Err((
            Code::FrameTooLarge,
            format!("a {len}-byte frame before SUBSCRIBE"),
        ));
    }
    buf.resize(4 + len, 0);
    stream.read_exact(&mut buf[5..]).map_err(io_err)?;
    let frame = split_frame(&buf)
        .map_err(|code| (code, "a bad frame".to_string()))?
        .ok_or((Code::FrameTooShort, "a short frame".to_string()))?;
    if frame.kind != frame_kind::SUBSCRIBE {
        return Err((
            Code::UnknownFrameKind,
            format!(
                "frame kind {} on the feed port: send SUBSCRIBE (7) first",
                frame.kind
            ),
        ));
    }
    let subscribe = Subscribe::decode(frame.body).map_err(|code| {
        (
            code,
            "SUBSCRIBE is 16 bytes with reserved fields zero".to_string(),
        )
    })?;
    if subscribe.version != PROTOCOL_VERSION {
        return Err((
            Code::UnsupportedVersion,
            format!(
                "protocol version {}; this server speaks {PROTOCOL_VERSION}",
                subscribe.version
            ),
        ));
    }
    let _ = stream.set_read_timeout(None);
    Ok(subscribe)
}
