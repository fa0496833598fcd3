//! One connection's run: send on the schedule, read answers, measure each from its intended
//! send time, and let the traffic react (pay for an order, pick up a waitlist hand-off).
//! `run_group` drives several connections from one thread, turn by turn, sleeping in one
//! `ppoll` over all their sockets until the earliest is due: a few threads keep the schedule
//! of many connections without outnumbering the cores they share with the server.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use engine::wire::{Reply, WireAnswer, WirePush};
use engine::{ClientId, Code, Event, Outcome, RequestId};

use super::ack_log::AckLog;
use super::conn::{wait_any, Conn};
use crate::client::Incoming;
use crate::failover::{means_move, Nodes};
use crate::measured::{latency_histogram, Measured};
use crate::protocol::{ConnectionLost, SurgeProtocol};
use crate::schedule::Schedule;
use crate::traffic::{Kind, Traffic};
use crate::windows::{Window, Windows};

/// The timeline every connection shares, in nanoseconds from `start`.
pub struct Plan {
    pub start: Instant,
    /// Answers to requests meant before this are not measured.
    pub warmup_ns: u64,
    /// Nothing new is sent from here on.
    pub end_ns: u64,
    /// After `end_ns`, wait this long for the last answers.
    pub drain_ns: u64,
    /// Most requests one connection has unanswered.
    pub pipeline: usize,
}

impl Plan {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// Live counters for the progress line.
#[derive(Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub refused: AtomicU64,
    /// Largest latency since the progress line last looked.
    pub max_ns: AtomicU64,
}

struct Pending {
    request: RequestId,
    at_ns: u64,
    kind: Kind,
    /// Kept to resend after a failover (only when there is another node to move to).
    operation: Option<engine::wire::Operation>,
}

/// How long a connection keeps trying to find a writable node after losing one.
const FAILOVER_PATIENCE: Duration = Duration::from_secs(30);

/// Acks are written to the shared log in chunks of about this many bytes, or at least this
/// often: a sampled log fills a chunk slowly, and a checker reading it as the run goes
/// (bench's sale day) needs the lines while the orders are still in the server's history.
const ACK_CHUNK: usize = 64 << 10;
const ACK_FLUSH_NS: u64 = 1_000_000_000;
/// Longest sleep while waiting only for answers (so the end of the run is noticed).
const IDLE_WAIT: Duration = Duration::from_millis(20);

pub struct Driver<'a> {
    pub conn: Conn,
    pub traffic: Box<dyn Traffic>,
    /// `None`: closed loop, a new request as soon as one is answered (`--rate max`).
    pub schedule: Option<Schedule>,
    pub client: ClientId,
    pub plan: &'a Plan,
    pub progress: &'a Progress,
    pub acks: Option<&'a AckLog>,
    /// Both nodes of a pair: on a lost connection or a "not here" answer, move and resend.
    pub failover: Option<Nodes>,
    /// Where latency by window goes, if the run measures it.
    pub windows: Option<&'a Windows>,
}

/// Progress not yet added to the shared counters (they are updated once per turn, not once
/// per answer: 16 threads bumping one cache line a million times a second cost the server
/// CPU it should be measured with).
#[derive(Default)]
struct Unpublished {
    answered: u64,
    refused: u64,
    max_ns: u64,
}

/// What a connection keeps while running, apart from the measurements.
#[derive(Default)]
struct Tally {
    /// The window being measured (its index) and what it measured so far.
    window: Option<(u64, Window)>,
    /// Ack log lines not yet appended to the shared log, and when the log was last appended.
    acks: String,
    acks_flushed_ns: u64,
    unpublished: Unpublished,
    /// Refusals by code (no string per refusal); named when the run ends.
    refusals: BTreeMap<Code, u64>,
    /// When the pipeline last had room again after being full: a request due while it was
    /// full waited for the server, not for the generator.
    room_since_ns: u64,
}

impl Unpublished {
    fn publish(&mut self, progress: &Progress) {
        if self.answered > 0 {
            progress
                .answered
                .fetch_add(self.answered, Ordering::Relaxed);
            progress.refused.fetch_add(self.refused, Ordering::Relaxed);
            progress.max_ns.fetch_max(self.max_ns, Ordering::Relaxed);
            *self = Unpublished::default();
        }
    }
}

/// A connection being driven: its driver and what it has measured and holds so far.
struct Running<'a> {
    driver: Driver<'a>,
    m: Measured,
    pending: VecDeque<Pending>,
    incoming: Vec<Incoming>,
    tally: Tally,
    /// Set when the connection is done: how it ended.
    result: Option<Result<(), ConnectionLost>>,
}

/// Drive every connection in `drivers` from this thread until each is done; what each
/// measured.
pub fn run_group(drivers: Vec<Driver<'_>>) -> Vec<Measured> {
    let mut running: Vec<Running<'_>> = drivers.into_iter().map(Running::new).collect();
    let mut done = Vec::with_capacity(running.len());
    let mut fds = Vec::with_capacity(running.len());
    while !running.is_empty() {
        let mut sleep = IDLE_WAIT;
        let mut busy = false;
        let mut i = 0;
        while i < running.len() {
            match running[i].turn() {
                None => {
                    done.push(running.swap_remove(i).finish());
                    continue;
                }
                Some(wait) if wait.is_zero() => busy = true,
                Some(wait) => sleep = sleep.min(wait),
            }
            i += 1;
        }
        if !busy && !running.is_empty() {
            fds.clear();
            fds.extend(running.iter().map(|r| r.driver.conn.poll_fd()));
            wait_any(&mut fds, sleep);
        }
    }
    done
}

impl<'a> Running<'a> {
    fn new(driver: Driver<'a>) -> Running<'a> {
        Running {
            driver,
            m: Measured::new(),
            pending: VecDeque::new(),
            incoming: Vec::new(),
            tally: Tally::default(),
            result: None,
        }
    }

    /// Send what is due, write, read and handle what arrived. `None`: the connection is done;
    /// `Some(ZERO)`: it did something, turn again; otherwise how long it may sleep.
    fn turn(&mut self) -> Option<Duration> {
        let plan = self.driver.plan;
        let now = plan.now_ns();
        if self.driver.sending(now) {
            let room_since_ns = self.tally.room_since_ns;
            if let Err(e) = self
                .driver
                .send_due(now, room_since_ns, &mut self.pending, &mut self.m)
            {
                return self.end(Err(ConnectionLost::new("CLIENT", e)));
            }
        } else if self.pending.is_empty() || now >= plan.end_ns + plan.drain_ns {
            return self.end(Ok(()));
        }
        if let Err(e) = self.driver.conn.write_some() {
            return self.fail_over(e);
        }
        let read = self.driver.conn.read_some(&mut self.incoming);
        let now = plan.now_ns();
        let handled = !self.incoming.is_empty();
        let mut must_move = false;
        // Taken out while handled (the handlers borrow the rest of `self`), then put back with
        // its capacity.
        let mut incoming = std::mem::take(&mut self.incoming);
        for item in incoming.drain(..) {
            match item {
                Incoming::Answer(answer) if must_move || self.driver.says_move(&answer) => {
                    must_move = true; // left pending: resent on the new primary
                }
                Incoming::Answer(answer) => self.driver.answered(
                    now,
                    answer,
                    &mut self.pending,
                    &mut self.m,
                    &mut self.tally,
                ),
                Incoming::Push(push) => self.driver.pushed(now, &push, &mut self.tally.acks),
            }
        }
        self.incoming = incoming;
        let tally = &mut self.tally;
        tally.unpublished.publish(self.driver.progress);
        if tally.acks.len() >= ACK_CHUNK
            || (!tally.acks.is_empty() && now >= tally.acks_flushed_ns + ACK_FLUSH_NS)
        {
            tally.acks_flushed_ns = now;
            self.driver.flush_acks(&mut tally.acks);
        }
        let lost = match read {
            Err(e) => Some(e),
            Ok(_) if must_move => Some(ConnectionLost::new("MOVED", "the node is not the primary")),
            Ok(_) => None,
        };
        if let Some(e) = lost {
            return self.fail_over(e);
        }
        if handled {
            return Some(Duration::ZERO);
        }
        Some(self.driver.timeout(now, self.pending.len()))
    }

    fn end(&mut self, result: Result<(), ConnectionLost>) -> Option<Duration> {
        self.result = Some(result);
        None
    }

    fn fail_over(&mut self, why: ConnectionLost) -> Option<Duration> {
        match self.driver.fail_over(&self.pending, &mut self.m, why) {
            Ok(()) => Some(Duration::ZERO),
            Err(e) => self.end(Err(e)),
        }
    }

    /// What the connection measured, with what was left unanswered and how it ended.
    fn finish(mut self) -> Measured {
        let mut m = self.m;
        let driver = &self.driver;
        driver.flush_acks(&mut self.tally.acks);
        if let (Some(windows), Some((index, window))) = (driver.windows, self.tally.window.take()) {
            windows.add(index, &window);
        }
        for (code, n) in self.tally.refusals {
            *m.errors.entry(code.name().to_string()).or_default() += n;
        }
        let left = self.pending.len() as u64;
        match self.result.unwrap_or(Ok(())) {
            Ok(()) if left > 0 => *m.errors.entry("UNANSWERED".into()).or_default() += left,
            Ok(()) => {}
            Err(lost) => {
                *m.errors.entry(lost.name.clone()).or_default() += left.max(1);
                m.lost_connections
                    .push(format!("client {}: {lost}", driver.client.0));
            }
        }
        m
    }
}

impl Driver<'_> {
    /// Whether requests are still to be sent: on a schedule, every one meant to go out before
    /// the end is sent, however late (a request held back by a full pipeline still counts);
    /// in the closed loop, until the end. Either way, not past the drain.
    fn sending(&self, now: u64) -> bool {
        let scheduled = match &self.schedule {
            Some(s) => s.peek_ns() < self.plan.end_ns,
            None => now < self.plan.end_ns,
        };
        scheduled && now < self.plan.end_ns + self.plan.drain_ns
    }

    /// Send every request that is due, as far as the pipeline has room. The generator's own
    /// lateness is counted from when a request was due, or from when the pipeline last had
    /// room again (`room_since_ns`) if that is later.
    fn send_due(
        &mut self,
        now: u64,
        room_since_ns: u64,
        pending: &mut VecDeque<Pending>,
        m: &mut Measured,
    ) -> anyhow::Result<()> {
        let room = self.plan.pipeline.saturating_sub(pending.len());
        let mut sent = 0;
        while sent < room {
            let at_ns = match &mut self.schedule {
                Some(s) if s.peek_ns() <= now && s.peek_ns() < self.plan.end_ns => s.advance(),
                Some(_) => break,
                None => now,
            };
            let operation = self.traffic.next(at_ns);
            let kind = Kind::of(&operation);
            let request = self.conn.queue(&operation)?;
            pending.push_back(Pending {
                request,
                at_ns,
                kind,
                operation: self.failover.is_some().then(|| operation.clone()),
            });
            let late_ns = now.saturating_sub(at_ns.max(room_since_ns));
            m.sender_lag_max_ns = m.sender_lag_max_ns.max(late_ns);
            sent += 1;
        }
        m.sent += sent as u64;
        self.progress.sent.fetch_add(sent as u64, Ordering::Relaxed);
        Ok(())
    }

    /// A refusal that means "not here": a standby, a fenced primary, a halted one.
    fn says_move(&self, answer: &WireAnswer) -> bool {
        self.failover.is_some()
            && matches!(answer.reply, Reply::Rejected { code, .. } if means_move(code))
    }

    /// Move to the node that takes writes now and resend everything unanswered, with the
    /// same request ids. Without a pair to move within, the connection is lost.
    fn fail_over(
        &mut self,
        pending: &VecDeque<Pending>,
        m: &mut Measured,
        why: ConnectionLost,
    ) -> Result<(), ConnectionLost> {
        let Some(nodes) = self.failover.as_mut() else {
            return Err(why);
        };
        nodes.skip_current();
        let client = nodes
            .connect_writable(Instant::now() + FAILOVER_PATIENCE)
            .map_err(|e| ConnectionLost::new("NO_PRIMARY", format!("{why}; then {e}")))?;
        let handed = client
            .into_handover()
            .map_err(|e| ConnectionLost::new("NO_PRIMARY", e))?;
        let mut conn = Conn::new(handed, Box::new(SurgeProtocol::default()))
            .map_err(|e| ConnectionLost::new("NO_PRIMARY", e))?;
        conn.set_next_request(self.conn.next_request());
        for p in pending {
            let operation = p.operation.as_ref().expect("kept when failing over");
            conn.requeue(p.request, operation)
                .map_err(|e| ConnectionLost::new("CLIENT", e))?;
        }
        self.conn = conn;
        m.failovers += 1;
        Ok(())
    }

    /// How long to sleep when nothing arrived: until the next request is due, or (when the
    /// pipeline is full or sending is over) until an answer comes.
    fn timeout(&self, now: u64, in_flight: usize) -> Duration {
        let can_send = self.sending(now) && in_flight < self.plan.pipeline;
        let until_ns = match &self.schedule {
            Some(s) if can_send => s.peek_ns(),
            None if can_send => now,
            _ if now < self.plan.end_ns => self.plan.end_ns,
            _ => self.plan.end_ns + self.plan.drain_ns,
        };
        Duration::from_nanos(until_ns.saturating_sub(now)).min(IDLE_WAIT)
    }

    fn answered(
        &mut self,
        now: u64,
        answer: WireAnswer,
        pending: &mut VecDeque<Pending>,
        m: &mut Measured,
        tally: &mut Tally,
    ) {
        let position = match pending.front() {
            Some(p) if p.request == answer.request => Some(0),
            _ => pending.iter().position(|p| p.request == answer.request),
        };
        let was_full = pending.len() >= self.plan.pipeline;
        let Some(p) = position.and_then(|i| pending.remove(i)) else {
            *m.errors.entry("UNEXPECTED_ANSWER".into()).or_default() += 1;
            return;
        };
        if was_full {
            tally.room_since_ns = now;
        }
        let latency = now.saturating_sub(p.at_ns).max(1);
        if let Some(windows) = self.windows {
            let index = windows.index(p.at_ns);
            let current = tally.window.get_or_insert_with(|| (index, Window::new()));
            if current.0 != index {
                windows.add(current.0, &current.1);
                *current = (index, Window::new());
            }
            current.1.latency.saturating_record(latency);
            current.1.answered += 1;
            current.1.refused += u64::from(matches!(answer.reply, Reply::Rejected { .. }));
        }
        if p.at_ns >= self.plan.warmup_ns {
            m.overall.saturating_record(latency);
            m.by_kind
                .entry(p.kind)
                .or_insert_with(latency_histogram)
                .saturating_record(latency);
        }
        if (self.plan.warmup_ns..self.plan.end_ns).contains(&now) {
            m.answered_in_window += 1;
        }
        m.answered += 1;
        tally.unpublished.answered += 1;
        tally.unpublished.max_ns = tally.unpublished.max_ns.max(latency);
        match &answer.reply {
            Reply::Rejected { code, .. } => {
                *tally.refusals.entry(*code).or_default() += 1;
                tally.unpublished.refused += 1;
            }
            Reply::Outcome(outcome) => {
                m.accepted += 1;
                let order = order_of(outcome);
                self.ack_line(&mut tally.acks, p.request, order, p.kind.name(), answer.seq);
            }
            Reply::Answer(_) => m.accepted += 1,
        }
        self.traffic
            .on_reply(p.request, p.at_ns, p.kind, &answer.reply);
    }

    fn pushed(&mut self, now: u64, push: &WirePush, acks: &mut String) {
        if let Event::WaitlistOrderCreated { request, order, .. } = push.event {
            self.ack_line(acks, request, Some(order.0), "waitlist_order", push.seq);
        }
        self.traffic.on_push(now, push);
    }

    fn ack_line(
        &self,
        out: &mut String,
        request: RequestId,
        order: Option<u64>,
        kind: &str,
        seq: u64,
    ) {
        if !self.acks.is_some_and(|log| log.wants(order)) {
            return;
        }
        let order = order.map_or_else(|| "null".to_string(), |o| o.to_string());
        let _ = writeln!(
            out,
            r#"{{"client_id":{},"request_id":{},"order_id":{order},"kind":"{kind}","seq":{seq}}}"#,
            self.client.0, request.0
        );
    }

    fn flush_acks(&self, lines: &mut String) {
        if let Some(log) = self.acks {
            if !lines.is_empty() {
                log.append(lines.as_bytes());
            }
        }
        lines.clear();
    }
}

/// The order a command's outcome is about, if any.
fn order_of(outcome: &Outcome) -> Option<u64> {
    match *outcome {
        Outcome::OrderPlaced { order, .. }
        | Outcome::PaymentConfirmed { order }
        | Outcome::PaymentFailed { order }
        | Outcome::OrderCancelled { order } => Some(order.0),
        _ => None,
    }
}
