//! A discrete-event simulation of shoppers driving an in-process engine in simulated time:
//! buyers arrive (a Poisson process), place orders, and later pay, fail, cancel or walk away
//! (their orders then expire); waitlisted buyers who are handed an order decide the same way.
//! The sequencer's `Tick`s carry time forward between arrivals.
//!
//! Everything is drawn from one seeded `Rng` and reacts only to the engine's deterministic
//! outcomes, so a seed reproduces the run exactly. The run is also recorded as
//! `(timestamp, request)` pairs: the benches replay a recording to time the engine alone.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use engine::{
    ClientId, Code, Command, Engine, Event, Money, OrderId, OrderLine, Outcome, Output, Query,
    Request, RequestId, SkuId, SkuSpec, TimestampNs, UserId,
};

use crate::rng::Rng;

/// What the simulated shoppers do. Implemented by the workloads in `workloads`.
pub trait Scenario {
    /// The catalog, loaded before the first buyer arrives.
    fn catalog(&self) -> Vec<SkuSpec>;
    /// How many buyers arrive, and the mean gap between arrivals.
    fn buyers(&self) -> u64;
    fn mean_arrival_gap_ns(&self) -> f64;
    /// The order buyer `user` places on arrival: lines and whether to wait if sold out.
    fn order(&self, rng: &mut Rng, user: UserId) -> (Vec<OrderLine>, bool);
    /// What a buyer does with an order they got, and how long after.
    fn fate(&self, rng: &mut Rng) -> (Fate, TimestampNs);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Pay,
    /// The provider declines the payment.
    Fail,
    Cancel,
    /// Never comes back: the order expires at its deadline.
    Abandon,
}

/// The simulated sequencer ticks at least this often.
pub const TICK_INTERVAL_NS: TimestampNs = 100_000_000;
/// The one client id the simulated shop backend uses.
pub const SHOP_CLIENT: ClientId = ClientId(1);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Arrive(UserId),
    Pay(OrderId, Money),
    Fail(OrderId),
    Cancel(OrderId),
    Tick,
}

/// What happened, counted from the engine's own answers.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub requests: u64,
    pub buyers: u64,
    pub orders_placed: u64,
    pub waitlist_joined: u64,
    pub waitlist_served: u64,
    pub waitlist_dropped: u64,
    pub paid: u64,
    pub payment_failed: u64,
    pub cancelled: u64,
    pub expired: u64,
    pub rejected: BTreeMap<Code, u64>,
    /// Simulated time at which the last unit of the first catalog SKU was sold.
    pub sold_out_at_ns: Option<TimestampNs>,
    pub ended_at_ns: TimestampNs,
    pub hash: u64,
}

/// A whole run as the sequencer would have stamped it.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    /// Catalog loading.
    pub setup: Vec<(TimestampNs, Request)>,
    /// Everything after.
    pub stream: Vec<(TimestampNs, Request)>,
}

pub struct Simulation<'a, S: Scenario> {
    scenario: &'a S,
    engine: &'a mut Engine,
    rng: Rng,
    queue: BinaryHeap<Reverse<(TimestampNs, u64, Action)>>,
    queued: u64,
    next_request: u64,
    out: Output,
    report: Report,
    recording: Option<Recording>,
    watched_sku: Option<SkuId>,
}

impl<'a, S: Scenario> Simulation<'a, S> {
    pub fn new(scenario: &'a S, engine: &'a mut Engine, seed: u64) -> Self {
        Simulation {
            scenario,
            engine,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            queued: 0,
            next_request: 0,
            out: Output::default(),
            report: Report::default(),
            recording: None,
            watched_sku: None,
        }
    }

    /// Keep every request applied, for replay.
    pub fn record(mut self) -> Self {
        self.recording = Some(Recording::default());
        self
    }

    /// Run to the end: every buyer arrived and every order paid, closed or expired.
    pub fn run(mut self) -> (Report, Option<Recording>) {
        let catalog = self.scenario.catalog();
        self.watched_sku = catalog.first().map(|spec| spec.sku);
        for spec in catalog {
            self.apply(0, Command::UpsertSku(spec));
        }
        if let Some(recording) = &mut self.recording {
            recording.setup = std::mem::take(&mut recording.stream);
        }
        let mut at = 0.0f64;
        for user in 1..=self.scenario.buyers() {
            at += self.rng.exponential(self.scenario.mean_arrival_gap_ns());
            self.schedule(at as TimestampNs, Action::Arrive(UserId(user)));
        }
        self.schedule(TICK_INTERVAL_NS, Action::Tick);
        let mut last_ns = 0;
        while let Some(Reverse((now_ns, _, action))) = self.queue.pop() {
            last_ns = now_ns;
            if action == Action::Tick {
                // Keep ticking while anything else is pending, then once past every deadline.
                if !self.queue.is_empty() {
                    self.schedule(now_ns + TICK_INTERVAL_NS, Action::Tick);
                }
            }
            self.act(now_ns, action);
        }
        let end_ns = last_ns + self.engine.config().payment_window_ns;
        self.apply(end_ns, Command::Tick);
        self.report.ended_at_ns = end_ns;
        self.report.buyers = self.scenario.buyers();
        self.report.hash = self.engine.hash();
        (self.report, self.recording)
    }

    fn schedule(&mut self, at_ns: TimestampNs, action: Action) {
        self.queued += 1;
        self.queue.push(Reverse((at_ns, self.queued, action)));
    }

    fn act(&mut self, now_ns: TimestampNs, action: Action) {
        let command = match action {
            Action::Arrive(user) => {
                let (lines, join_waitlist) = self.scenario.order(&mut self.rng, user);
                Command::PlaceOrder {
                    user,
                    lines,
                    join_waitlist,
                }
            }
            Action::Pay(order, amount) => Command::ConfirmPayment {
                order,
                amount,
                payment_ref: 1_000_000 + order.0,
            },
            Action::Fail(order) => Command::FailPayment { order },
            Action::Cancel(order) => Command::CancelOrder { order },
            Action::Tick => Command::Tick,
        };
        self.apply(now_ns, command);
    }

    fn apply(&mut self, now_ns: TimestampNs, command: Command) {
        let (client, request) = match command {
            Command::Tick => (ClientId::SYSTEM, RequestId(0)),
            _ => {
                self.next_request += 1;
                (SHOP_CLIENT, RequestId(self.next_request))
            }
        };
        let request = Request {
            client,
            request,
            command,
        };
        self.engine.apply(now_ns, &request, &mut self.out);
        self.report.requests += 1;
        if let Some(recording) = &mut self.recording {
            recording.stream.push((now_ns, request));
        }
        self.observe(now_ns);
    }

    /// Count the outcome and events, and schedule what the buyers do next.
    fn observe(&mut self, now_ns: TimestampNs) {
        match self.out.outcome {
            Outcome::OrderPlaced { order, total, .. } => {
                self.report.orders_placed += 1;
                self.decide(now_ns, order, total);
            }
            Outcome::WaitlistJoined { .. } => self.report.waitlist_joined += 1,
            Outcome::PaymentConfirmed { .. } => {
                self.report.paid += 1;
                self.note_sold_out(now_ns);
            }
            Outcome::PaymentFailed { .. } => self.report.payment_failed += 1,
            Outcome::OrderCancelled { .. } => self.report.cancelled += 1,
            Outcome::Rejected { code, .. } => *self.report.rejected.entry(code).or_default() += 1,
            _ => {}
        }
        let events = std::mem::take(&mut self.out.events);
        for event in &events {
            match *event {
                Event::OrderExpired { .. } => self.report.expired += 1,
                Event::WaitlistOrderCreated { order, total, .. } => {
                    self.report.waitlist_served += 1;
                    self.decide(now_ns, order, total);
                }
                Event::WaitlistDropped { .. } => self.report.waitlist_dropped += 1,
                Event::Discrepancy(_) | Event::OrderRetired { .. } => {}
            }
        }
        self.out.events = events;
    }

    fn decide(&mut self, now_ns: TimestampNs, order: OrderId, total: Money) {
        let (fate, after_ns) = self.scenario.fate(&mut self.rng);
        let at = now_ns + after_ns;
        match fate {
            Fate::Pay => self.schedule(at, Action::Pay(order, total)),
            Fate::Fail => self.schedule(at, Action::Fail(order)),
            Fate::Cancel => self.schedule(at, Action::Cancel(order)),
            Fate::Abandon => {}
        }
    }

    fn note_sold_out(&mut self, now_ns: TimestampNs) {
        if self.report.sold_out_at_ns.is_some() {
            return;
        }
        let Some(sku) = self.watched_sku else { return };
        if let engine::Answer::Stock(s) = self.engine.query(&Query::Stock { sku }) {
            if s.sold == s.stocked {
                self.report.sold_out_at_ns = Some(now_ns);
            }
        }
    }
}
