//! The event loop: simulated time moves from one event to the next, in (time, order of
//! scheduling) order, so a seed replays bit for bit. Nodes take a turn every millisecond of
//! their own; the network, etcd and the clients deliver as their delays say; faults come
//! from the schedule. At the heal every fault ends (down nodes start, cuts heal, paused
//! nodes resume, etcd answers), and the rest of the run is for the group to serve again,
//! converge and answer every client.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use coordinator::call::{Answer, Call};
use coordinator::EtcdError;
use engine::{EngineConfig, Outcome};
use server::group::role::Role;

use crate::checker::{Ack, Checker};
use crate::client::SimClient;
use crate::clock::Now;
use crate::etcd::EtcdModel;
use crate::faults::{self, Fault, Kind};
use crate::net::{Delivery, Net, NodeId};
use crate::node::{client_id, ClientAnswer, Ctx, Exit, In, Params, Reply, Request, Seen, SimNode};
use crate::rng::Rng;

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;
/// How often a node takes a turn.
const TURN_NS: u64 = MS;
/// How long after a process ends its supervisor starts it again (`RestartSec=1`).
const RESTART_NS: u64 = S;
/// The warm-up before the first fault: the group forms, clients begin.
const WARMUP_NS: u64 = 3 * S;

/// A violation planted on purpose, to show the checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plant {
    /// The primary releases answers once durable on itself, without its standby's ack.
    ReleaseBeforeAck,
    /// A node that leads an epoch above the first is reported following a primary of the
    /// epoch below (as a standby would that took the old primary's WELCOME).
    FollowLowerEpoch,
    /// The feed consumer skips one sequence.
    DropFeedEvent,
    /// A standby applies one replicated record altered (its client id changed).
    CorruptRecord,
    /// Every node refuses writes (as if halted for good).
    RefuseWrites,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub nodes: usize,
    /// Seconds of faults, after a warm-up of three.
    pub seconds: u64,
    /// Seconds after the heal for the group to serve again and converge.
    pub quiet_seconds: u64,
    pub clients: usize,
    /// Each client sends its next request after this many milliseconds (a range): the
    /// offered load.
    pub client_pause_ms: (u64, u64),
    /// Requests each client has unanswered at most.
    pub client_in_flight: usize,
    pub faults: Vec<Kind>,
    /// Faults given instead of drawn (scripted scenarios and planted violations).
    pub scripted: Option<Vec<Fault>>,
    pub plant: Option<Plant>,
}

impl Options {
    /// The defaults for `seed`: every fault kind, 2 or 3 nodes (the seed says).
    pub fn for_seed(seed: u64) -> Options {
        let mut shape = Rng::new(seed ^ 0x5eed);
        Options {
            seed,
            nodes: 2 + (shape.below(2) as usize),
            seconds: 20,
            quiet_seconds: 12,
            clients: 6,
            // Half the seeds run a sale's crowd (about a thousand requests a second), half a
            // quiet shop.
            client_pause_ms: match shape.below(2) {
                0 => (1, 8),
                _ => (5, 40),
            },
            client_in_flight: 8,
            faults: faults::ALL.to_vec(),
            scripted: None,
            plant: None,
        }
    }
}

/// How a run went.
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub sim_ns: u64,
    pub violations: Vec<String>,
    pub faults: Vec<Fault>,
    /// The faults that happened, by kind.
    pub fault_kinds: BTreeMap<&'static str, u64>,
    pub trace: Vec<String>,
    pub logs: Vec<(String, Vec<String>)>,
    pub acks: u64,
    /// Commands whose feed events, as the last primary's engine stage drafted them, were
    /// held to a replay's derivation.
    pub drafted_checked: u64,
    pub answers: u64,
    pub leaders: Vec<(u64, String)>,
    pub starts: u64,
    /// Each node's stored epochs at the end.
    pub epochs: Vec<(String, Option<replicator::Epochs>)>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The seed, the schedule, what broke, and each node's last lines.
    pub fn describe(&self, lines_per_node: usize) -> String {
        let mut out = format!(
            "seed {} ({} nodes, {:.1} s simulated): {} violation(s)\n",
            self.seed,
            self.nodes,
            self.sim_ns as f64 / 1e9,
            self.violations.len()
        );
        for v in &self.violations {
            out.push_str(&format!("  VIOLATION {v}\n"));
        }
        out.push_str("faults:\n");
        for f in &self.faults {
            out.push_str(&format!("  {}\n", f.describe()));
        }
        out.push_str("leaders:\n");
        for (epoch, who) in &self.leaders {
            out.push_str(&format!("  epoch {epoch}: {who}\n"));
        }
        for (name, epochs) in &self.epochs {
            out.push_str(&format!("epochs of {name} at the end: {epochs:?}\n"));
        }
        out.push_str("events:\n");
        for t in &self.trace {
            out.push_str(&format!("  {t}\n"));
        }
        for (name, lines) in &self.logs {
            out.push_str(&format!("last lines of {name}:\n"));
            for l in lines.iter().rev().take(lines_per_node).rev() {
                out.push_str(&format!("  {l}\n"));
            }
        }
        out
    }
}

mod end;
mod inject;

enum Event {
    Turn(NodeId),
    Deliver(NodeId, Delivery),
    EtcdArrive {
        node: NodeId,
        id: u64,
        call: Call,
        sent: u64,
    },
    EtcdAnswer {
        node: NodeId,
        id: u64,
        answer: Result<Answer, EtcdError>,
    },
    EtcdTimeout {
        node: NodeId,
        id: u64,
    },
    EtcdResume,
    Client(usize),
    ClientSend {
        node: NodeId,
        request: Request,
    },
    ClientAnswer(ClientAnswer),
    Fault(usize),
    FaultEnd(usize),
    Restart(NodeId),
    FeedPoll,
    Quiet,
    Heal,
}

pub struct World {
    options: Options,
    params: Params,
    now: Now,
    rng: Rng,
    queue: BTreeMap<(u64, u64), Event>,
    order: u64,
    nodes: Vec<SimNode>,
    etcd: EtcdModel,
    /// Calls to etcd from each node are lost (`.0`), or its answers are (`.1`).
    etcd_cut: Vec<(bool, bool)>,
    etcd_stalled: bool,
    etcd_waiting: Vec<(NodeId, u64, Call, u64)>,
    etcd_slow_ns: u64,
    /// Calls answered (or given up on), so a late answer is dropped.
    etcd_done: std::collections::BTreeSet<(NodeId, u64)>,
    net: Net,
    clients: Vec<SimClient>,
    checker: Checker,
    schedule: Vec<Fault>,
    trace: Vec<String>,
    disk_full: Vec<bool>,
    heal_ns: u64,
    end_ns: u64,
    first_write_after_heal: Option<u64>,
    answers: u64,
    fault_kinds: BTreeMap<&'static str, u64>,
}

impl World {
    pub fn new(options: Options) -> World {
        let mut rng = Rng::new(options.seed);
        let names: Vec<String> = (0..options.nodes)
            .map(|i| ((b'a' + i as u8) as char).to_string())
            .collect();
        let params = Params {
            names: names.clone(),
            lease: Duration::from_secs(2),
            margin: Duration::from_millis(500),
            heartbeat: Duration::from_millis(20),
            timeout: Duration::from_millis(200),
            tick: Duration::from_millis(100),
            ack: "durable",
            on_standby_loss: "halt",
            sync_standbys: 1,
            engine: EngineConfig {
                payment_window_ns: 15 * S,
                clients_max: 64,
                orders_max: 1 << 14,
                orders_retired_max: 1 << 12,
                retire_after_ns: 3_600 * S,
                holdings_max: 1 << 12,
                waitlist_entries_max: 1 << 12,
                skus_max: 16,
                ..EngineConfig::default()
            },
        };
        let now = Now::default();
        let nodes: Vec<SimNode> = (0..options.nodes)
            .map(|id| {
                let skew = rng.between(0, 1_000) as i64 - 500;
                SimNode::new(id, params.clone(), now.clone(), skew)
            })
            .collect();
        let heal_ns = WARMUP_NS + options.seconds * S;
        let end_ns = heal_ns + options.quiet_seconds * S;
        let mut fault_rng = rng.fork();
        let schedule = match &options.scripted {
            Some(s) => s.clone(),
            None => faults::schedule(
                &mut fault_rng,
                &options.faults,
                options.nodes,
                WARMUP_NS,
                heal_ns,
            ),
        };
        let clients = (0..options.clients)
            .map(|i| SimClient::new(i, options.nodes, options.client_in_flight, rng.fork()))
            .collect();
        let mut checker = Checker::new(options.nodes);
        if options.plant == Some(Plant::DropFeedEvent) {
            checker.feed_skips = Some(20); // planted: one sequence skipped
        }
        let mut world = World {
            checker,
            etcd_cut: vec![(false, false); options.nodes],
            disk_full: vec![false; options.nodes],
            options,
            params,
            now,
            rng,
            queue: BTreeMap::new(),
            order: 0,
            nodes,
            etcd: EtcdModel::new("/surge/leader"),
            etcd_stalled: false,
            etcd_waiting: Vec::new(),
            etcd_slow_ns: 0,
            etcd_done: Default::default(),
            net: Net::new(200 * MS),
            clients,
            schedule,
            trace: Vec::new(),
            heal_ns,
            end_ns,
            first_write_after_heal: None,
            answers: 0,
            fault_kinds: BTreeMap::new(),
        };
        for id in 0..world.nodes.len() {
            let n = &mut world.nodes[id];
            match world.options.plant {
                Some(Plant::ReleaseBeforeAck) => n.release_early = true,
                Some(Plant::CorruptRecord) => n.corrupt_seq = Some(1500),
                Some(Plant::RefuseWrites) => n.refuse_writes = true,
                _ => {}
            }
            world.at(id as u64 * 300 * MS, Event::Restart(id));
            world.at(id as u64 * 300 * MS + 1, Event::Turn(id));
        }
        for c in 0..world.clients.len() {
            world.at(1_500 * MS + c as u64 * 7 * MS, Event::Client(c));
        }
        for i in 0..world.schedule.len() {
            let f = &world.schedule[i];
            let (at, end, lasts) = (f.at_ns, f.at_ns + f.for_ns, f.for_ns > 0);
            world.at(at, Event::Fault(i));
            if lasts {
                world.at(end, Event::FaultEnd(i));
            }
        }
        world.at(WARMUP_NS, Event::FeedPoll);
        world.at(heal_ns, Event::Heal);
        world.at(end_ns.saturating_sub(6 * S), Event::Quiet);
        world
    }

    fn at(&mut self, time: u64, event: Event) {
        self.order += 1;
        self.queue.insert((time, self.order), event);
    }

    fn note(&mut self, what: String) {
        let line = format!("t={:.3}s {what}", self.now.get() as f64 / 1e9);
        self.trace.push(line);
    }

    /// Run to the end; the report.
    pub fn run(mut self) -> Report {
        while let Some(((time, _), event)) = self.queue.pop_first() {
            if time > self.end_ns {
                break;
            }
            self.now.set(time);
            self.handle(event);
        }
        self.now.set(self.end_ns);
        self.finish()
    }

    fn handle(&mut self, event: Event) {
        let now = self.now.get();
        match event {
            Event::Turn(id) => {
                self.turn(id);
                self.at(now + TURN_NS, Event::Turn(id));
            }
            Event::Deliver(id, delivery) => {
                if self.nodes[id].up() {
                    self.nodes[id].inbox.push_back(In::Net(delivery));
                }
            }
            Event::EtcdArrive {
                node,
                id,
                call,
                sent,
            } => {
                if self.etcd_stalled {
                    self.etcd_waiting.push((node, id, call, sent));
                } else {
                    self.etcd_apply(node, id, &call, sent);
                }
            }
            Event::EtcdAnswer { node, id, answer } => {
                if self.etcd_done.insert((node, id)) && self.nodes[node].up() {
                    self.nodes[node]
                        .inbox
                        .push_back(In::Etcd { call: id, answer });
                }
            }
            Event::EtcdTimeout { node, id } => {
                if self.etcd_done.insert((node, id)) && self.nodes[node].up() {
                    let answer = Err(EtcdError::Unreachable("127.0.0.1:2379: timed out".into()));
                    self.nodes[node]
                        .inbox
                        .push_back(In::Etcd { call: id, answer });
                }
            }
            Event::EtcdResume => self.etcd_resume(),
            Event::Client(c) => {
                let requests = self.clients[c].turn(now);
                let node = self.clients[c].node;
                self.send_requests(node, requests);
                let (lo, hi) = self.options.client_pause_ms;
                let next = now + self.rng.between(lo, hi) * MS;
                self.at(next, Event::Client(c));
            }
            Event::ClientSend { node, request } => {
                let c = request.client;
                let up = self.nodes[node].role().is_some();
                if up {
                    self.nodes[node].inbox.push_back(In::Request(request));
                } else if let Some(again) = self.clients[c].lost(node, now) {
                    // Refused to connect: the client tries the next node a little later.
                    let to = self.clients[c].node;
                    for r in again {
                        let at = now + 50 * MS;
                        self.at(
                            at,
                            Event::ClientSend {
                                node: to,
                                request: r,
                            },
                        );
                    }
                }
            }
            Event::ClientAnswer(answer) => {
                let c = answer.client;
                if let Some(again) = self.clients[c].answered(now, &answer) {
                    let to = self.clients[c].node;
                    let at = now + 20 * MS;
                    for r in again {
                        self.at(
                            at,
                            Event::ClientSend {
                                node: to,
                                request: r,
                            },
                        );
                    }
                }
            }
            Event::Fault(i) => self.fault(i),
            Event::FaultEnd(i) => self.fault_end(i),
            Event::Restart(id) => {
                if !self.nodes[id].up() && (now >= self.heal_ns || !self.held_down(id)) {
                    self.nodes[id].start();
                    if self.disk_full[id] {
                        self.nodes[id].storage().set_faults(journal::Faults {
                            fail_write: Some(1),
                            sticky: true,
                            ..journal::Faults::default()
                        });
                    }
                    let name = self.nodes[id].name.clone();
                    self.note(format!("{name} starts"));
                }
            }
            Event::FeedPoll => {
                self.poll_feed();
                self.at(now + 100 * MS, Event::FeedPoll);
            }
            Event::Quiet => {
                for c in &mut self.clients {
                    c.quiet = true;
                }
            }
            Event::Heal => self.heal(),
        }
    }

    /// A node is kept down only by nothing: the supervisor always restarts (kept for faults
    /// that might hold a node down).
    fn held_down(&self, _id: NodeId) -> bool {
        false
    }

    fn send_requests(&mut self, node: NodeId, requests: Vec<Request>) {
        let now = self.now.get();
        for r in requests {
            let at = now + self.rng.between(100, 500) * 1_000;
            self.at(at, Event::ClientSend { node, request: r });
        }
    }

    /// One turn of node `id`, its log lines captured and what it did scheduled.
    fn turn(&mut self, id: NodeId) {
        let now = self.now.get();
        let up: Vec<bool> = self.nodes.iter().map(|n| n.role().is_some()).collect();
        let mut due = Vec::new();
        let mut etcd = Vec::new();
        let mut answers = Vec::new();
        let mut seen = Vec::new();
        let lines: Rc<RefCell<Vec<String>>> = Rc::default();
        {
            let lines = lines.clone();
            server::telemetry::log::capture(Box::new(move |line| lines.borrow_mut().push(line)));
        }
        let exit = {
            let mut ctx = Ctx {
                now,
                rng: &mut self.rng,
                net: &mut self.net,
                due: &mut due,
                etcd: &mut etcd,
                answers: &mut answers,
                seen: &mut seen,
                up: &up,
            };
            self.nodes[id].turn(&mut ctx)
        };
        server::telemetry::log::release();
        let stamp = format!("{:.3}", now as f64 / 1e9);
        for line in lines.borrow_mut().drain(..) {
            if line.contains("event=replication_diverged")
                || line.contains("event=sequence_mismatch")
            {
                let name = self.nodes[id].name.clone();
                self.checker.violate(now, format!("{name}: {line}"));
            }
            self.nodes[id].note(format!("{stamp} {line}"));
        }
        self.schedule_effects(due, etcd, answers, seen);
        if let Some(exit) = exit {
            self.exited(id, exit);
        }
    }

    fn schedule_effects(
        &mut self,
        due: Vec<crate::net::Due>,
        etcd: Vec<(NodeId, u64, Call)>,
        answers: Vec<ClientAnswer>,
        seen: Vec<Seen>,
    ) {
        let now = self.now.get();
        for (at, to, delivery) in due {
            self.at(at, Event::Deliver(to, delivery));
        }
        for (node, id, call) in etcd {
            self.etcd_call(node, id, call);
        }
        for answer in answers {
            self.answers += 1;
            if answer.seq > 0 {
                if let Reply::Outcome(outcome) = &answer.reply {
                    if now >= self.heal_ns && self.first_write_after_heal.is_none() {
                        self.first_write_after_heal = Some(now);
                    }
                    let (c, r) = (client_id(answer.client), answer.request.0);
                    // Released while a later epoch is led: the new leader must hold it.
                    let later: Vec<(u64, NodeId)> = self
                        .checker
                        .leaders
                        .range(answer.epoch + 1..)
                        .map(|(&e, &(n, _))| (e, n))
                        .collect();
                    for (epoch, leader) in later {
                        let held = self.nodes[leader]
                            .history
                            .lock()
                            .expect("history")
                            .get(&answer.seq)
                            == Some(&(c, r));
                        if !held {
                            let (who, by) = (
                                self.nodes[answer.node].name.clone(),
                                self.nodes[leader].name.clone(),
                            );
                            self.checker.violate(
                                now,
                                format!(
                                    "{who} acknowledged (client {c}, request {r}) at seq {} in epoch {} while {by} leads epoch {epoch} without it",
                                    answer.seq, answer.epoch
                                ),
                            );
                        }
                    }
                    self.checker.acks.push(Ack {
                        at_ns: now,
                        node: answer.node,
                        epoch: answer.epoch,
                        seq: answer.seq,
                        client: c,
                        request: r,
                        order: match outcome {
                            Outcome::OrderPlaced { order, .. } => Some(order.0),
                            _ => None,
                        },
                    });
                }
            }
            let at = now + self.rng.between(100, 500) * 1_000;
            self.at(at, Event::ClientAnswer(answer));
        }
        for s in seen {
            match s {
                Seen::Leads { node, epoch, .. } => {
                    let name = self.nodes[node].name.clone();
                    self.note(format!("{name} leads epoch {epoch}"));
                    let history = self.nodes[node].history.lock().expect("history").clone();
                    self.checker.leads(now, node, &name, epoch, &history);
                    if self.options.plant == Some(Plant::FollowLowerEpoch) && epoch >= 2 {
                        self.checker.follows(now, node, &name, epoch - 1);
                    }
                }
                Seen::Follows { node, epoch } => {
                    let name = self.nodes[node].name.clone();
                    self.checker.follows(now, node, &name, epoch);
                }
                Seen::Epochs { node, epochs } => {
                    let name = self.nodes[node].name.clone();
                    self.checker.epochs(now, node, &name, &epochs);
                }
                Seen::Restored {
                    node,
                    checkpoint,
                    seq,
                    problem,
                } => {
                    let name = self.nodes[node].name.clone();
                    self.note(format!("{name} restores checkpoint {checkpoint} at {seq}"));
                    if let Some(problem) = problem {
                        self.checker.violate(
                            now,
                            format!("{name}'s checkpoint {checkpoint} at {seq} {problem}"),
                        );
                    }
                }
                Seen::Dropped { node, epochs } => {
                    let name = self.nodes[node].name.clone();
                    self.note(format!(
                        "{name} drops unwritten epochs: {:?}",
                        epochs.history
                    ));
                    self.checker.cut(node, Some(epochs));
                }
            }
        }
    }

    /// Stop `id`'s process (`tear`: its last journal write torn, as a crash leaves it): its
    /// connections close, and what that sends is delivered.
    pub(super) fn stop_process(&mut self, id: NodeId, tear: bool) {
        let now = self.now.get();
        let mut due = Vec::new();
        let mut ctx_rng = self.rng.fork();
        {
            let (mut etcd, mut answers, mut seen) = (Vec::new(), Vec::new(), Vec::new());
            let up: Vec<bool> = Vec::new();
            let mut ctx = Ctx {
                now,
                rng: &mut ctx_rng,
                net: &mut self.net,
                due: &mut due,
                etcd: &mut etcd,
                answers: &mut answers,
                seen: &mut seen,
                up: &up,
            };
            self.nodes[id].stop(&mut ctx, tear);
        }
        for (at, to, delivery) in due {
            self.at(at, Event::Deliver(to, delivery));
        }
    }

    /// A process ended: its supervisor starts it again a second later; a standby told to
    /// cut its journal does so and starts at once.
    fn exited(&mut self, id: NodeId, exit: Exit) {
        let now = self.now.get();
        let name = self.nodes[id].name.clone();
        self.note(format!("{name} exits: {exit:?}"));
        self.stop_process(id, matches!(exit, Exit::Failed(_)));
        self.clients_lose(id);
        match exit {
            Exit::Truncate(seq) => {
                self.nodes[id].cut_after(seq);
                let epochs = self.nodes[id].epochs.load();
                self.checker.cut(id, epochs);
                self.at(now + 10 * MS, Event::Restart(id));
            }
            Exit::Rejoin(_) | Exit::Failed(_) => self.at(now + RESTART_NS, Event::Restart(id)),
        }
    }

    fn clients_lose(&mut self, id: NodeId) {
        let now = self.now.get();
        for c in 0..self.clients.len() {
            if let Some(again) = self.clients[c].lost(id, now) {
                let to = self.clients[c].node;
                for r in again {
                    self.at(
                        now + 50 * MS,
                        Event::ClientSend {
                            node: to,
                            request: r,
                        },
                    );
                }
            }
        }
    }

    /// A node's call on its way to etcd: lost on a cut, else it arrives after a delay; the
    /// node gives up after a quarter of the lease (as `Etcd` does) if no answer came.
    fn etcd_call(&mut self, node: NodeId, id: u64, call: Call) {
        let now = self.now.get();
        let timeout = (self.params.lease / 4)
            .min(Duration::from_secs(1))
            .as_nanos() as u64;
        self.at(now + timeout, Event::EtcdTimeout { node, id });
        if self.etcd_cut[node].0 {
            return;
        }
        let d = self.rng.between(200, 1_500) * 1_000 + self.slow_etcd();
        self.at(
            now + d,
            Event::EtcdArrive {
                node,
                id,
                call,
                sent: now,
            },
        );
    }

    fn slow_etcd(&mut self) -> u64 {
        match self.etcd_slow_ns {
            0 => 0,
            max => self.rng.between(0, max),
        }
    }

    fn etcd_apply(&mut self, node: NodeId, id: u64, call: &Call, _sent: u64) {
        let now = self.now.get();
        let answer = self.etcd.apply(now, call);
        if self.etcd_cut[node].1 {
            return; // applied; the answer is lost
        }
        let d = self.rng.between(200, 1_500) * 1_000 + self.slow_etcd();
        self.at(now + d, Event::EtcdAnswer { node, id, answer });
    }

    fn etcd_resume(&mut self) {
        if !self.etcd_stalled {
            return;
        }
        self.etcd_stalled = false;
        let now = self.now.get();
        self.etcd.expire(now);
        for (node, id, call, sent) in std::mem::take(&mut self.etcd_waiting) {
            self.etcd_apply(node, id, &call, sent);
        }
        self.note("etcd resumes".into());
    }

    /// The feed consumer follows the primary (the one of the highest epoch, if two think
    /// they are) and takes what it released.
    fn poll_feed(&mut self) {
        let now = self.now.get();
        let primary = self
            .nodes
            .iter()
            .filter(|n| !n.paused && n.role() == Some(Role::Primary))
            .max_by_key(|n| n.node().map_or(0, |node| node.epoch()));
        let Some(primary) = primary else { return };
        let Some((durable, bound)) = primary.durable_and_bound() else {
            return;
        };
        let history = primary.history.lock().expect("history").clone();
        self.checker.take_feed(now, bound.min(durable), &history);
    }
}

/// Run one seed with its default options.
pub fn run_seed(seed: u64) -> Report {
    World::new(Options::for_seed(seed)).run()
}
