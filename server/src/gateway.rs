//! The gateway thread: the ring's one producer and its release gate. It accepts connections
//! (mio, edge-triggered), decodes REQUESTS frames straight into claimed ring slots, stamps
//! them with the time, publishes them; it inserts Ticks when idle; and it drains the gate —
//! answers whose sequence the journaler has synced and the engine has applied — into each
//! connection's write buffer, pushing events to the clients they concern.
//!
//! Backpressure: a connection is not read while it has `in_flight_max` requests unanswered,
//! while its unsent answers pass a quarter of `write_buffer_max`, or while the ring has no
//! room for its next frame; the bytes wait in the socket (TCP flow control does the rest).
//! Its memory is bounded by one frame in and `write_buffer_max` out; past that it is closed.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;
use engine::ring::{Consumer, Producer, WaitStrategy};
use engine::wire::{self, frame_kind, Hello, Operation, Welcome};
use engine::{ClientId, Code, Command, Event, Request, RequestId};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use super::config::GatewaySection;
use super::connection::Connection;
use super::follow::Replicated;
use super::log::{self, Level};
use super::metrics::Metrics;
use super::node::{Node, Role};
use super::slot::{ConnRef, Slot};
use super::{Shared, Wake};

const LISTENER: Token = Token(0);
pub const WAKER: Token = Token(1);
const FIRST_CONNECTION: usize = 2;
/// Frames handled from one connection per turn before the others get theirs.
const FRAMES_PER_TURN: usize = 64;
/// Sequences the gate releases per pass.
const GATE_BATCH_MAX: usize = 4096;
/// How often connection timeouts are looked at.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(100);

pub struct Gateway {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Vec<Option<Connection>>,
    free: Vec<usize>,
    open: usize,
    generation: u32,
    /// The connection that most recently said hello as each client: pushes go there.
    clients: HashMap<ClientId, ConnRef>,
    producer: Producer<Slot>,
    gate: Consumer<Slot>,
    shared: Arc<Shared>,
    wake: Arc<Wake>,
    limits: GatewaySection,
    spin: bool,
    started: Instant,
    last_timestamp_ns: u64,
    last_publish: Instant,
    last_housekeeping: Instant,
    scratch: Vec<(RequestId, Operation)>,
    refused: Vec<(RequestId, Code, u64)>,
    node: Arc<Node>,
    /// A standby's records from the primary, to publish in order.
    intake: Option<Receiver<Vec<Replicated>>>,
    intake_pending: std::collections::VecDeque<Replicated>,
    /// The journal sequence the next command published will get.
    next_seq: u64,
    /// The gate stopped at a command whose sequence the standby has not acked.
    held_for: Option<u64>,
}

/// How a standby's gateway is fed, and where numbering starts.
pub struct Feed {
    pub node: Arc<Node>,
    pub intake: Option<Receiver<Vec<Replicated>>>,
    pub next_seq: u64,
}

enum Turn {
    /// Read everything there was, or gave way to others.
    Done,
    /// Cannot take the next frame until answers drain or the ring frees up.
    Blocked,
    Closed,
}

impl Gateway {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        poll: Poll,
        listener: TcpListener,
        producer: Producer<Slot>,
        gate: Consumer<Slot>,
        shared: Arc<Shared>,
        wake: Arc<Wake>,
        limits: GatewaySection,
        strategy: WaitStrategy,
        feed: Feed,
    ) -> io::Result<Gateway> {
        let mut listener = listener;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let now = Instant::now();
        Ok(Gateway {
            poll,
            listener: Some(listener),
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            generation: 0,
            clients: HashMap::new(),
            producer,
            gate,
            shared,
            wake,
            limits,
            spin: strategy == WaitStrategy::BusySpin,
            started: now,
            last_timestamp_ns: 0,
            last_publish: now,
            last_housekeeping: now,
            scratch: Vec::new(),
            refused: Vec::new(),
            node: feed.node,
            intake: feed.intake,
            intake_pending: std::collections::VecDeque::new(),
            next_seq: feed.next_seq,
            held_for: None,
        })
    }

    fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Serve until drained after a shutdown request, or until the journal fails.
    pub fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(1024);
        let mut drain_deadline: Option<Instant> = None;
        let mut released = 0;
        loop {
            self.shared.heartbeat();
            // Poll without sleeping only when there is work this thread can do now: socket
            // bytes not yet read (a turn gave way to others), or connections held back by
            // backpressure that the answers just released may have freed. A connection that
            // stays blocked waits for the next release, asleep: never a spin.
            let any_blocked = self.conns.iter().flatten().any(|c| c.blocked);
            let busy = (released > 0 && any_blocked)
                || self.intake_ready()
                || self
                    .conns
                    .iter()
                    .flatten()
                    .any(|c| c.readable && !c.blocked && !c.closing);
            let timeout = if self.spin || busy {
                Some(Duration::ZERO)
            } else if self.node.role() == Role::Standby {
                Some(HOUSEKEEPING_EVERY) // no Ticks of its own: the primary's arrive
            } else {
                Some(self.until_next_tick().min(HOUSEKEEPING_EVERY))
            };
            if timeout != Some(Duration::ZERO) {
                self.wake.sleeping.store(true, SeqCst);
                if self.gate_ready() || self.intake_ready() || self.node.promotion_asked() {
                    self.wake.sleeping.store(false, SeqCst);
                    self.poll_once(&mut events, Some(Duration::ZERO))?;
                } else {
                    self.poll_once(&mut events, timeout)?;
                    self.wake.sleeping.store(false, SeqCst);
                }
            } else {
                self.poll_once(&mut events, timeout)?;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        let index = t - FIRST_CONNECTION;
                        if let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) {
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                conn.readable = true;
                            }
                            if event.is_writable() {
                                self.flush(index);
                            }
                        }
                    }
                }
            }
            if self.shared.failed.load(SeqCst) {
                self.fail_all();
                return Err("the journal failed".into());
            }
            let draining = self.shared.draining.load(SeqCst);
            if draining && drain_deadline.is_none() {
                drain_deadline = Some(self.begin_drain());
            }
            // While draining, requests still arriving are answered SHUTTING_DOWN.
            self.publish_replicated();
            if self.node.promotion_asked() {
                self.try_promote();
            }
            self.serve_reads();
            if !draining && self.node.role() == Role::Primary {
                self.maybe_tick();
            }
            released = self.release();
            self.flush_all();
            self.housekeeping();
            self.metrics()
                .ring_occupancy
                .store(self.producer.published() - self.gate.processed(), Relaxed);
            if let Some(deadline) = drain_deadline {
                let all_answered = self.gate.processed() == self.producer.published();
                let all_sent = self.conns.iter().flatten().all(|c| c.unsent() == 0);
                if (all_answered && all_sent) || Instant::now() >= deadline {
                    log::info(
                        "drained",
                        &[
                            ("answered_all", &all_answered),
                            ("sent_all", &all_sent),
                            ("last_seq", &self.metrics().durable_seq.load(Relaxed)),
                        ],
                    );
                    return Ok(());
                }
            }
        }
    }

    fn poll_once(&mut self, events: &mut Events, timeout: Option<Duration>) -> Result<(), String> {
        match self.poll.poll(events, timeout) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(format!("poll: {e}")),
        }
    }

    fn until_next_tick(&self) -> Duration {
        (self.last_publish + Duration::from_millis(self.limits.tick_ms))
            .saturating_duration_since(Instant::now())
    }

    fn accept(&mut self) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        loop {
            let (mut stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of descriptors and the like: say so, keep serving the others.
                    log::line(Level::Warn, "accept_failed", None, &[("error", &e)]);
                    return;
                }
            };
            if self.open >= self.limits.connections_max {
                let mut frame = Vec::new();
                wire::ErrorFrame {
                    code: Code::TooManyConnections.number(),
                    message: format!("{} connections open", self.open),
                }
                .encode(&mut frame);
                let _ = io::Write::write(&mut stream, &frame);
                Metrics::count(
                    &self.metrics().connections_closed,
                    Code::TooManyConnections.number(),
                );
                continue;
            }
            let _ = stream.set_nodelay(true);
            let index = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            self.generation = self.generation.wrapping_add(1);
            let me = ConnRef {
                index: index as u32,
                generation: self.generation,
            };
            let token = Token(index + FIRST_CONNECTION);
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::line(Level::Warn, "register_failed", None, &[("error", &e)]);
                self.free.push(index);
                continue;
            }
            self.conns[index] = Some(Connection::new(stream, peer, me, Instant::now()));
            self.open += 1;
            self.metrics().connections.store(self.open as u64, Relaxed);
            self.metrics().connections_accepted.fetch_add(1, Relaxed);
        }
    }

    /// Serve every connection with bytes to read, or with whole frames held back earlier
    /// (those must be retried even when the socket has nothing new).
    fn serve_reads(&mut self) {
        for index in 0..self.conns.len() {
            let ready = matches!(&self.conns[index],
                Some(c) if (c.readable || c.blocked) && !c.closing);
            if ready {
                let turn = self.serve(index);
                if let Some(conn) = self.conns[index].as_mut() {
                    conn.blocked = matches!(turn, Turn::Blocked);
                }
            }
        }
    }

    /// Handle what this connection has sent, reading more while it can take it.
    fn serve(&mut self, index: usize) -> Turn {
        let mut frames = 0;
        loop {
            match self.take_frames(index, &mut frames) {
                Turn::Done => {}
                other => return other,
            }
            if frames >= FRAMES_PER_TURN {
                return Turn::Done;
            }
            let conn = self.conns[index]
                .as_mut()
                .expect("serving an open connection");
            if !conn.readable {
                return Turn::Done;
            }
            match conn.fill() {
                Ok(0) => {
                    self.close(index, None, "peer closed");
                    return Turn::Closed;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.readable = false;
                    return self.take_frames(index, &mut frames);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close(index, None, &format!("read: {e}"));
                    return Turn::Closed;
                }
            }
        }
    }

    /// Handle every complete frame in the buffer, until blocked.
    fn take_frames(&mut self, index: usize, frames: &mut usize) -> Turn {
        loop {
            let conn = self.conns[index].as_mut().expect("open");
            let frame = match wire::split_frame(conn.unread()) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    let waiting = !conn.unread().is_empty() || conn.client.is_none();
                    if !waiting {
                        conn.waiting_since = None;
                    } else if conn.waiting_since.is_none() {
                        conn.waiting_since = Some(Instant::now());
                    }
                    return Turn::Done;
                }
                Err(code) => {
                    self.close(index, Some(code), "bad frame length");
                    return Turn::Closed;
                }
            };
            let (kind, len) = (frame.kind, frame.len);
            let hello = (kind == frame_kind::HELLO).then(|| Hello::decode(frame.body));
            // A whole frame is here: whatever happens to it now (backpressure included) is
            // not the client being slow to send. (A REQUESTS frame is decoded in place, in
            // `take_requests`.)
            conn.waiting_since = None;
            let result = match (kind, conn.client.is_some()) {
                (frame_kind::HELLO, false) => self.hello(index, hello.expect("a HELLO")),
                (frame_kind::HELLO, true) => Err(Code::DuplicateHello),
                (frame_kind::REQUESTS, true) => match self.take_requests(index) {
                    Ok(true) => Ok(()),
                    Ok(false) => return Turn::Blocked,
                    Err(code) => Err(code),
                },
                (_, false) => Err(Code::HelloRequired),
                (_, true) => Err(Code::UnknownFrameKind),
            };
            if let Err(code) = result {
                self.close(index, Some(code), &format!("frame kind {kind}"));
                return Turn::Closed;
            }
            let conn = self.conns[index].as_mut().expect("open");
            conn.consume(len);
            conn.waiting_since = None;
            *frames += 1;
            if *frames >= FRAMES_PER_TURN {
                return Turn::Done;
            }
        }
    }

    fn hello(&mut self, index: usize, hello: Result<Hello, Code>) -> Result<(), Code> {
        let hello = hello?;
        if hello.version != wire::PROTOCOL_VERSION {
            return Err(Code::UnsupportedVersion);
        }
        if hello.client == ClientId::SYSTEM {
            return Err(Code::BadClientId);
        }
        if hello.epoch > self.node.epoch() {
            let peer = self.conns[index].as_ref().map(|c| c.peer);
            self.node.fenced_by(
                hello.epoch,
                &format!(
                    "client {} at {peer:?} was welcomed at epoch {}",
                    hello.client.0, hello.epoch
                ),
            );
        }
        let limits = &self.limits;
        let welcome = Welcome {
            version: wire::PROTOCOL_VERSION,
            role: match self.node.role() {
                Role::Standby => wire::Role::Standby,
                _ => wire::Role::Primary,
            },
            in_flight_max: limits.in_flight_max,
            frame_len_max: wire::FRAME_LEN_MAX as u32,
            requests_per_frame_max: wire::REQUESTS_PER_FRAME_MAX,
            epoch: self.node.epoch(),
        };
        let conn = self.conns[index].as_mut().expect("open");
        conn.client = Some(hello.client);
        conn.send_frame(|out| welcome.encode(out));
        self.clients.insert(hello.client, conn.me);
        Ok(())
    }

    /// Sequence the REQUESTS frame at the front of this connection's buffer. `Ok(false)`:
    /// not now (backpressure), the frame stays where it is.
    fn take_requests(&mut self, index: usize) -> Result<bool, Code> {
        let now_ns = self.timestamp_ns();
        let mono_ns = self.started.elapsed().as_nanos() as u64;
        let free_slots = self.producer.free_slots();
        let conn = self.conns[index].as_mut().expect("open");
        let frame = wire::split_frame(conn.unread())
            .ok()
            .flatten()
            .expect("a whole frame is buffered");
        let requests = wire::decode_requests(frame.body)?;
        let count = u32::from_le_bytes(frame.body[..4].try_into().expect("checked"));
        let in_flight_ok =
            conn.in_flight == 0 || conn.in_flight + count <= self.limits.in_flight_max;
        let answers_piling_up = conn.unsent() > self.limits.write_buffer_max / 4;
        if !in_flight_ok || answers_piling_up || free_slots < count as usize {
            return Ok(false);
        }
        self.scratch.clear();
        self.refused.clear();
        let client = conn.client.expect("after hello");
        let draining = self.shared.draining.load(SeqCst);
        let writes_refused = self.node.write_refusal();
        for request in requests {
            match request.operation {
                Ok(_) if draining => {
                    self.refused
                        .push((request.request, Code::ShuttingDown, u64::from(request.op)))
                }
                Ok(Operation::Command(_)) if writes_refused.is_some() => self.refused.push((
                    request.request,
                    writes_refused.expect("checked"),
                    u64::from(request.op),
                )),
                Ok(operation) => self.scratch.push((request.request, operation)),
                Err((code, subject)) => self.refused.push((request.request, code, subject)),
            }
        }
        for &(request, code, subject) in &self.refused {
            Metrics::count(&self.shared.metrics.answers, code.number());
            conn.answer(|out| wire::encode_refusal(request, 0, code, subject, out));
        }
        if self.scratch.is_empty() {
            return Ok(true);
        }
        let n = self.scratch.len();
        let me = conn.me;
        conn.in_flight += n as u32;
        let mut claim = self.producer.try_claim(n).expect("free slots checked");
        for (i, (request, operation)) in self.scratch.drain(..).enumerate() {
            let slot = claim.slot_mut(i);
            slot.conn = me;
            slot.timestamp_ns = now_ns;
            slot.published_mono_ns = mono_ns;
            slot.request.client = client;
            slot.request.request = request;
            match operation {
                Operation::Command(command) => {
                    slot.request.command = command;
                    slot.query = None;
                    self.next_seq += 1;
                }
                Operation::Query(query) => {
                    slot.request.command = Command::Tick;
                    slot.query = Some(query);
                }
            }
        }
        claim.publish();
        self.last_publish = Instant::now();
        Ok(true)
    }

    /// Wall-clock nanoseconds, never going back (the engine's clock follows these).
    fn timestamp_ns(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.last_timestamp_ns = self.last_timestamp_ns.max(now);
        self.last_timestamp_ns
    }

    /// With nothing sequenced for a tick interval, sequence a Tick so deadlines expire.
    fn maybe_tick(&mut self) {
        if !self.until_next_tick().is_zero() {
            return;
        }
        let now_ns = self.timestamp_ns();
        let mono_ns = self.started.elapsed().as_nanos() as u64;
        if let Some(mut claim) = self.producer.try_claim(1) {
            let slot = claim.slot_mut(0);
            slot.conn = ConnRef::NONE;
            slot.timestamp_ns = now_ns;
            slot.published_mono_ns = mono_ns;
            slot.request = Request {
                client: ClientId::SYSTEM,
                request: RequestId(0),
                command: Command::Tick,
            };
            slot.query = None;
            claim.publish();
            self.next_seq += 1;
        }
        self.last_publish = Instant::now();
    }

    /// Whether the standby's intake has something to publish and the ring has room.
    fn intake_ready(&mut self) -> bool {
        let waiting = !self.intake_pending.is_empty()
            || self.intake.as_ref().is_some_and(|rx| !rx.is_empty());
        waiting && self.producer.free_slots() > 0
    }

    /// A standby: publish the primary's records, in order, as far as the ring has room.
    fn publish_replicated(&mut self) {
        let Some(rx) = self.intake.as_ref() else {
            return;
        };
        let mono_ns = self.started.elapsed().as_nanos() as u64;
        loop {
            if self.intake_pending.is_empty() {
                match rx.try_recv() {
                    Ok(batch) => self.intake_pending.extend(batch),
                    Err(_) => return,
                }
            }
            let n = self.intake_pending.len().min(self.producer.free_slots());
            if n == 0 {
                return;
            }
            let mut claim = self.producer.try_claim(n).expect("free slots checked");
            for i in 0..n {
                let r = self.intake_pending.pop_front().expect("counted");
                let slot = claim.slot_mut(i);
                slot.conn = ConnRef::NONE;
                slot.timestamp_ns = r.timestamp_ns;
                slot.published_mono_ns = mono_ns;
                slot.request = r.request;
                slot.query = None;
                self.last_timestamp_ns = self.last_timestamp_ns.max(r.timestamp_ns);
            }
            claim.publish();
            self.next_seq += n as u64;
            self.last_publish = Instant::now();
        }
    }

    /// Promotion, once every record the follower handed over is in the ring: from here on
    /// this node numbers and answers writes itself.
    fn try_promote(&mut self) {
        if self.intake.is_some() {
            let Ok(mut closed) = self.node.intake.try_lock() else {
                return; // the follower is handing a batch over; next turn
            };
            *closed = true;
            drop(closed);
            self.publish_replicated();
            let empty = self.intake_pending.is_empty()
                && self.intake.as_ref().is_some_and(|rx| rx.is_empty());
            if !empty {
                return; // the ring was full; next turn
            }
        }
        self.node.complete_promotion(self.next_seq);
        self.last_publish = Instant::now();
    }

    /// Whether the gate has answers it may release now.
    fn gate_ready(&mut self) -> bool {
        if !self.gate.has_ready() {
            return false;
        }
        match self.held_for {
            Some(seq) => self.node.release_bound() >= seq,
            None => true,
        }
    }

    /// Move every answer the gate lets through into its connection's write buffer; how many.
    fn release(&mut self) -> u64 {
        let Gateway {
            gate,
            conns,
            clients,
            shared,
            started,
            node,
            held_for,
            ..
        } = self;
        let metrics = &shared.metrics;
        let now_mono = started.elapsed().as_nanos() as u64;
        let mut released = 0;
        let bound = node.release_bound();
        let standby = node.role() == Role::Standby;
        *held_for = None;
        while let Some(mut batch) = gate.try_read_up_to(GATE_BATCH_MAX) {
            // In the synchronous modes an answer waits for the standby's ack of its sequence.
            // (Without a bound, nothing is looked at twice.)
            let held = (bound != u64::MAX)
                .then(|| {
                    batch.iter().find(|(_, slot)| {
                        // SAFETY: as below.
                        slot.is_command() && unsafe { slot.output.get() }.seq > bound
                    })
                })
                .flatten();
            if let Some((ring_seq, slot)) = held {
                *held_for = Some(unsafe { slot.output.get() }.seq);
                batch.release_before(ring_seq);
                if batch.is_empty() {
                    break;
                }
            }
            released += batch.len() as u64;
            let stop_after = held_for.is_some();
            for (_, slot) in batch.iter() {
                // SAFETY: the gate follows the engine stage, which released this sequence
                // (it wrote `output` before); the engine does not touch it again this lap.
                let out = unsafe { slot.output.get() };
                metrics
                    .gate_wait_ns
                    .observe(now_mono.saturating_sub(slot.published_mono_ns));
                let sender = conn_at(conns, slot.conn);
                if let Some(conn) = sender {
                    conn.in_flight -= 1;
                    let request = slot.request.request;
                    let code = match &out.answer {
                        Some(answer) => {
                            conn.answer(|o| wire::encode_answer(request, answer, o));
                            answer.code()
                        }
                        None => {
                            let outcome = &out.output.outcome;
                            conn.answer(|o| wire::encode_outcome(request, out.seq, outcome, o));
                            outcome.code()
                        }
                    };
                    Metrics::count(&metrics.answers, code.number());
                }
                if standby {
                    continue; // the primary's clients get its events, from the primary
                }
                for event in &out.output.events {
                    Metrics::count(&metrics.events, event.code().number());
                    let to = match event {
                        Event::OrderExpired { client, .. }
                        | Event::WaitlistOrderCreated { client, .. }
                        | Event::WaitlistDropped { client, .. } => clients.get(client).copied(),
                        // Reconciliation findings go to whoever sent the statement.
                        Event::Discrepancy(_) => Some(slot.conn),
                    };
                    if let Some(conn) = to.and_then(|to| conn_at(conns, to)) {
                        conn.push(out.seq, event);
                    }
                }
            }
            if stop_after {
                break;
            }
        }
        released
    }

    fn flush(&mut self, index: usize) {
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        if let Err(e) = conn.flush() {
            self.close(index, None, &format!("write: {e}"));
            return;
        }
        if conn.closing && conn.unsent() == 0 {
            self.drop_connection(index);
        } else if conn.unsent() > self.limits.write_buffer_max {
            let unsent = conn.unsent();
            self.close(
                index,
                Some(Code::SlowConsumer),
                &format!("{unsent} bytes unsent"),
            );
        }
    }

    fn flush_all(&mut self) {
        for index in 0..self.conns.len() {
            if matches!(&self.conns[index], Some(c) if c.unsent() > 0 || c.closing) {
                self.flush(index);
            }
        }
    }

    /// Close for `code` (sent in an ERROR frame first, best effort), or quietly.
    fn close(&mut self, index: usize, code: Option<Code>, why: &str) {
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        if let Some(code) = code {
            log::line(
                Level::Warn,
                "connection_closed",
                Some(log::engine_code(code)),
                &[("peer", &conn.peer), ("why", &why)],
            );
            Metrics::count(&self.shared.metrics.connections_closed, code.number());
            if code != Code::SlowConsumer {
                conn.send_error(code.number(), why.to_string());
                let _ = conn.flush();
            }
        }
        self.drop_connection(index);
    }

    fn drop_connection(&mut self, index: usize) {
        let Some(mut conn) = self.conns[index].take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if let Some(client) = conn.client {
            if self.clients.get(&client) == Some(&conn.me) {
                // Pushes go to another open connection of the same client, if it has one.
                let other = self
                    .conns
                    .iter()
                    .flatten()
                    .filter(|c| c.client == Some(client))
                    .map(|c| c.me)
                    .next_back();
                match other {
                    Some(other) => self.clients.insert(client, other),
                    None => self.clients.remove(&client),
                };
            }
        }
        self.free.push(index);
        self.open -= 1;
        self.metrics().connections.store(self.open as u64, Relaxed);
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        if now < self.last_housekeeping + HOUSEKEEPING_EVERY {
            return;
        }
        self.last_housekeeping = now;
        let timeout = Duration::from_millis(self.limits.frame_timeout_ms);
        for index in 0..self.conns.len() {
            let expired = matches!(&self.conns[index],
                Some(c) if c.waiting_since.is_some_and(|since| now - since >= timeout));
            if expired {
                self.close(
                    index,
                    Some(Code::FrameTimeout),
                    "incomplete frame or no hello",
                );
            }
        }
    }

    /// Stop taking connections and requests; answer what is in the ring.
    fn begin_drain(&mut self) -> Instant {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.metrics().serving.store(0, Relaxed);
        log::info(
            "draining",
            &[(
                "in_ring",
                &(self.producer.published() - self.gate.processed()),
            )],
        );
        Instant::now() + Duration::from_millis(self.limits.drain_timeout_ms)
    }

    fn fail_all(&mut self) {
        for index in 0..self.conns.len() {
            if let Some(conn) = self.conns[index].as_mut() {
                conn.send_error(
                    Code::ServerFailed.number(),
                    "the journal failed; resend unanswered requests with the same ids after the restart"
                        .into(),
                );
                let _ = conn.flush();
            }
        }
    }
}

fn conn_at(conns: &mut [Option<Connection>], to: ConnRef) -> Option<&mut Connection> {
    conns
        .get_mut(to.index as usize)
        .and_then(Option::as_mut)
        .filter(|c| c.me == to)
}
