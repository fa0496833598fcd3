//! One connection's run: send on the schedule, read answers, measure each from its intended
//! send time, and let the traffic react (pay for an order, pick up a waitlist hand-off).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use engine::wire::{Reply, WireAnswer, WirePush};
use engine::{ClientId, Code, Event, Outcome, RequestId};

use super::ack_log::AckLog;
use super::conn::Conn;
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

impl Driver<'_> {
    pub fn run(mut self) -> Measured {
        let mut m = Measured::new();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut incoming = Vec::new();
        let mut tally = Tally::default();
        let plan = self.plan;
        let result = loop {
            let now = plan.now_ns();
            if self.sending(now) {
                if let Err(e) = self.send_due(now, &mut pending, &mut m) {
                    break Err(ConnectionLost::new("CLIENT", e));
                }
            } else if pending.is_empty() || now >= plan.end_ns + plan.drain_ns {
                break Ok(());
            }
            if let Err(e) = self.conn.write_some() {
                match self.fail_over(&pending, &mut m, e) {
                    Ok(()) => continue,
                    Err(e) => break Err(e),
                }
            }
            let read = self.conn.read_some(&mut incoming);
            let now = plan.now_ns();
            let handled = !incoming.is_empty();
            let mut must_move = false;
            for item in incoming.drain(..) {
                match item {
                    Incoming::Answer(answer) if must_move || self.says_move(&answer) => {
                        must_move = true; // left pending: resent on the new primary
                    }
                    Incoming::Answer(answer) => {
                        self.answered(now, answer, &mut pending, &mut m, &mut tally)
                    }
                    Incoming::Push(push) => self.pushed(now, &push, &mut tally.acks),
                }
            }
            tally.unpublished.publish(self.progress);
            if tally.acks.len() >= ACK_CHUNK
                || (!tally.acks.is_empty() && now >= tally.acks_flushed_ns + ACK_FLUSH_NS)
            {
                tally.acks_flushed_ns = now;
                self.flush_acks(&mut tally.acks);
            }
            let lost = match read {
                Err(e) => Some(e),
                Ok(_) if must_move => {
                    Some(ConnectionLost::new("MOVED", "the node is not the primary"))
                }
                Ok(_) => None,
            };
            if let Some(e) = lost {
                match self.fail_over(&pending, &mut m, e) {
                    Ok(()) => continue,
                    Err(e) => break Err(e),
                }
            }
            if !handled {
                let timeout = self.timeout(now, pending.len());
                if !timeout.is_zero() {
                    self.conn.wait(timeout);
                }
            }
        };
        self.flush_acks(&mut tally.acks);
        if let (Some(windows), Some((index, window))) = (self.windows, tally.window.take()) {
            windows.add(index, &window);
        }
        for (code, n) in tally.refusals {
            *m.errors.entry(code.name().to_string()).or_default() += n;
        }
        let left = pending.len() as u64;
        match result {
            Ok(()) if left > 0 => *m.errors.entry("UNANSWERED".into()).or_default() += left,
            Ok(()) => {}
            Err(lost) => {
                *m.errors.entry(lost.name.clone()).or_default() += left.max(1);
                m.lost_connections
                    .push(format!("client {}: {lost}", self.client.0));
            }
        }
        m
    }

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

    fn send_due(
        &mut self,
        now: u64,
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
            m.sender_lag_max_ns = m.sender_lag_max_ns.max(now - at_ns);
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
        let Some(p) = position.and_then(|i| pending.remove(i)) else {
            *m.errors.entry("UNEXPECTED_ANSWER".into()).or_default() += 1;
            return;
        };
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
                if self.acks.is_some() {
                    let order = order_of(outcome);
                    self.ack_line(&mut tally.acks, p.request, order, p.kind.name(), answer.seq);
                }
            }
            Reply::Answer(_) => m.accepted += 1,
        }
        self.traffic
            .on_reply(p.request, p.at_ns, p.kind, &answer.reply);
    }

    fn pushed(&mut self, now: u64, push: &WirePush, acks: &mut String) {
        if let Event::WaitlistOrderCreated { request, order, .. } = push.event {
            if self.acks.is_some() {
                self.ack_line(acks, request, Some(order.0), "waitlist_order", push.seq);
            }
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
