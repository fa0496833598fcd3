//! Failover through etcd (`replication.failover = "etcd"`) as a state machine: every
//! decision a node makes about its lease and the leader key, without I/O. `step(now, input,
//! view)` takes the time, one event (a tick, etcd's answer to the last call) and what the
//! node is now, and returns actions: the next etcd call (`coordinator::Call`; one at a time),
//! a lease deadline for the release gate, a promotion, leadership lost. The coordinator
//! thread (`drivers/coordination.rs`) makes the calls against etcd; the simulator against its
//! model of etcd.
//!
//! Rounds, every sixteenth of the TTL: renew the lease (a node that has none takes one),
//! publish this node's addresses once per lease, then the phase's duty:
//!
//! - **joining**: who leads? No one: campaign, and start as the primary of the epoch won.
//!   Another node: start as its standby (its addresses are under `{prefix}/nodes/`).
//! - **primary**: keep `{prefix}/sync` naming the standbys whose acks count
//!   (`sync_record.rs`), and check the leader key is still this node's.
//! - **standby**: watch the leader key; once it is gone, campaign (`coordinator::candidacy`
//!   says who may), and if it wins, promote to the epoch its campaign took. A leader key that
//!   names another term than the one it follows: rejoin.
//!
//! A primary whose renewal finds its lease gone (etcd expired it: etcd stalled, or this
//! node was cut off past the TTL) holds every answer, takes a new lease and campaigns again:
//! it holds every write it acknowledged, so it may. If it wins it serves at the new epoch
//! (the release gate waits for the new lease); if another node won first, it exits to
//! rejoin as a standby. A standby that sees the key gone while its primary still streams
//! waits up to a TTL for the primary to take it back before it campaigns itself.

pub mod sync_record;

use std::net::SocketAddr;
use std::time::Duration;

use coordinator::call::{Answer, Call};
use coordinator::lease::{next_epoch, Deadline};
use coordinator::{
    may_campaign, Candidate, EtcdError, Kv, LeaderRecord, NodeRecord, PositionRecord, SyncRecord,
};

use crate::group::role::Role;
use sync_record::{SlotView, SyncInputs};

/// Complaints about an unreachable etcd, at most one per this.
pub const COMPLAIN_EVERY_NS: u64 = 5_000_000_000;

/// What `join` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// This node won: start as the primary of `epoch`.
    Lead { epoch: u64 },
    /// `leader` leads: start as its standby.
    Follow {
        leader: String,
        replication: SocketAddr,
    },
}

/// The keys under `coordinator.prefix`.
#[derive(Clone, Debug)]
pub struct Keys {
    pub leader: String,
    /// The last epoch handed out and the node it went to: `node=<name> epoch=<n>`.
    pub epoch: String,
    /// The standbys whose acks count in the epoch, written by that epoch's primary.
    pub sync: String,
    /// `{prefix}/position/`: how far each standby in sync got, once the leader key is gone.
    pub positions: String,
    pub nodes: String,
}

impl Keys {
    pub fn under(prefix: &str) -> Keys {
        let prefix = prefix.trim_end_matches('/');
        Keys {
            leader: format!("{prefix}/leader"),
            epoch: format!("{prefix}/epoch"),
            sync: format!("{prefix}/sync"),
            positions: format!("{prefix}/position/"),
            nodes: format!("{prefix}/nodes/"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// `replication.node`.
    pub name: String,
    pub ttl: Duration,
    /// The primary stops acknowledging this long before its lease can expire.
    pub margin: Duration,
    /// `replication.sync_standbys`, written into the sync record.
    pub needed: usize,
    pub keys: Keys,
}

/// What the node is now, read afresh for every step.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Before a server runs: the epoch its files hold and how far its journal goes (read
    /// only when a campaign must compare it; `None`: not known).
    pub local_epoch: u64,
    pub local_seq: Option<u64>,
    /// The running server, once attached.
    pub running: Option<Running>,
}

/// The running node as the duties see it.
#[derive(Clone, Debug)]
pub struct Running {
    pub role: Role,
    pub epoch: u64,
    /// A standby: the last sequence it received (its position in a campaign).
    pub received_seq: u64,
    /// A standby: its primary was heard from within the replication timeout.
    pub primary_streams: bool,
    pub durable_seq: u64,
    pub released_seq: u64,
    /// A standby in a synchronous mode may hold writes back.
    pub synchronous: bool,
    /// `degrade`, or a fresh promotion.
    pub may_ack_alone: bool,
    /// Fewer counting standbys attached than `needed`.
    pub standby_detached: bool,
    pub slots: Vec<SlotView>,
}

#[derive(Debug)]
pub enum Input {
    /// Time passed: a round may be due.
    Tick,
    /// etcd's answer to the call made last.
    Answer(Result<Answer, EtcdError>),
    /// Where this node is reached, once it runs (published under `{prefix}/nodes/`).
    Register(NodeRecord),
    /// Decide the role (campaign, or find the leader): `View::local_epoch` and `local_seq`
    /// are read from now on.
    Join,
    /// A clean stop: give the lease back.
    StepDown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Make this call and step its answer.
    Call(Call),
    /// The first lease: log `coordinator_connected`.
    Connected,
    /// Until when the node may acknowledge as the primary (`Deadline::NONE`: hold all).
    Deadline(Deadline),
    /// Whether etcd answered the last call.
    Reachable(bool),
    /// Whether this node holds the leader key.
    Leading(bool),
    /// `join`'s decision.
    Joined(Joined),
    /// Won a campaign while running: become the primary of `epoch` (a standby promotes; a
    /// primary whose lease was lost starts a new epoch at its next sequence).
    Promote { epoch: u64 },
    /// Stop counting these slots' acks (before they are un-named).
    Uncount(Vec<usize>),
    /// Count these slots' acks (named in the record just written).
    Count(Vec<usize>),
    /// `{prefix}/sync` now names `members` for `epoch` (log `sync_standbys`).
    SyncWritten { members: Vec<String>, epoch: u64 },
    /// etcd records no standby in sync for this epoch: this primary may acknowledge alone.
    SyncCleared,
    /// Leadership lost, or a new term to rejoin: fence and exit for a restart.
    Lost(String),
    /// etcd could not be reached, or refused: say so (at most every `COMPLAIN_EVERY_NS`).
    Complain(EtcdError),
    /// A campaign was withheld (once per reason).
    Withheld(String),
    /// The lease was given back (a clean stop).
    Revoked(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Connecting,
    /// A lease, waiting for `Input::Join` (the node's epoch and position to campaign with).
    Connected,
    Joining,
    Joined,
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CampaignFor {
    /// At start: the node has not run yet.
    Join,
    /// A running standby whose primary's key is gone.
    Standby,
    /// A running primary whose lease etcd expired.
    Reelect,
}

/// The campaign's facts, gathered call by call.
#[derive(Clone, Debug)]
struct Gathered {
    why: CampaignFor,
    counter: Option<Kv>,
    sync: Option<SyncRecord>,
    own: Option<u64>,
    positions: Vec<(String, PositionRecord)>,
}

/// What the call in flight is for.
#[derive(Clone, Debug)]
enum Purpose {
    Grant { sent_ns: u64, reelect: bool },
    KeepAlive { sent_ns: u64 },
    PublishNode,
    Revoke { lease: i64 },
    JoinLeader,
    JoinNode { leader: LeaderRecord },
    SyncPut { members: Vec<String>, epoch: u64 },
    LeaderCheck,
    Watch,
    WatchNode { leader: LeaderRecord },
    CampaignCounter(CampaignFor),
    CampaignSync(Gathered),
    CampaignPosition(Gathered),
    CampaignPositions(Gathered),
    CampaignTxn { gathered: Gathered, epoch: u64 },
}

pub struct Coordinator {
    settings: Settings,
    phase: Phase,
    lease: Option<i64>,
    /// When the current lease was granted or last renewed (for a re-election's deadline).
    lease_sent_ns: u64,
    deadline: Deadline,
    leading: bool,
    /// The term this node follows, and where.
    following: Option<(LeaderRecord, SocketAddr)>,
    /// This node's addresses, and whether they are published under the current lease.
    addresses: Option<NodeRecord>,
    registered: bool,
    /// The members this primary last wrote to `{prefix}/sync`.
    sync_written: Option<Vec<String>>,
    sync_target: Option<u64>,
    withheld: Option<String>,
    last_complaint_ns: Option<u64>,
    /// A standby: when it first saw the leader key gone while its primary still streamed.
    key_gone_ns: Option<u64>,
    pending: Option<Purpose>,
    next_round_ns: u64,
}

impl Coordinator {
    pub fn new(settings: Settings) -> Coordinator {
        Coordinator {
            settings,
            phase: Phase::Connecting,
            lease: None,
            lease_sent_ns: 0,
            deadline: Deadline::NONE,
            leading: false,
            following: None,
            addresses: None,
            registered: false,
            sync_written: None,
            sync_target: None,
            withheld: None,
            last_complaint_ns: None,
            key_gone_ns: None,
            pending: None,
            next_round_ns: 0,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn connected(&self) -> bool {
        !matches!(self.phase, Phase::Connecting)
    }

    /// Stopped: a clean stop, or leadership lost.
    pub fn stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    pub fn lease(&self) -> Option<i64> {
        self.lease
    }

    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    pub fn leading(&self) -> bool {
        self.leading
    }

    /// Whether a call is in flight.
    pub fn waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// When the next round is due (nothing is in flight then).
    pub fn next_round_ns(&self) -> u64 {
        self.next_round_ns
    }

    fn round_every_ns(&self) -> u64 {
        // Renewals and the standby's look at the leader key: sixteen per TTL (cheap calls),
        // so a key that expires is seen within a sixteenth of it.
        (self.settings.ttl / 16).as_nanos() as u64
    }

    pub fn step(&mut self, now_ns: u64, input: Input, view: &View) -> Vec<Action> {
        let mut out = Vec::new();
        if self.phase == Phase::Stopped {
            return out;
        }
        match input {
            Input::Tick => {
                if self.pending.is_none() && now_ns >= self.next_round_ns {
                    self.next_round_ns = now_ns + self.round_every_ns();
                    self.begin_round(now_ns, &mut out);
                }
            }
            Input::Answer(answer) => {
                let Some(purpose) = self.pending.take() else {
                    return out; // a late answer to a call given up on
                };
                self.on_answer(now_ns, purpose, answer, view, &mut out);
            }
            Input::Join => {
                if self.phase == Phase::Connected {
                    self.phase = Phase::Joining;
                    self.next_round_ns = now_ns; // at once
                }
            }
            Input::Register(record) => {
                self.addresses = Some(record);
                self.registered = false;
            }
            Input::StepDown => {
                self.phase = Phase::Stopped;
                self.pending = None;
                if let Some(lease) = self.lease.take() {
                    out.push(Action::Call(Call::Revoke { lease }));
                    self.pending = Some(Purpose::Revoke { lease });
                    // The answer is stepped while stopped: handled here, once.
                    self.phase = Phase::Stopped;
                }
            }
        }
        out
    }

    /// The answer to a clean stop's revoke (stepped after `StepDown`).
    pub fn revoked(&mut self, answer: &Result<Answer, EtcdError>) -> Option<Action> {
        match (self.pending.take(), answer) {
            (Some(Purpose::Revoke { lease }), Ok(_)) => Some(Action::Revoked(lease)),
            _ => None,
        }
    }

    fn call(&mut self, out: &mut Vec<Action>, call: Call, purpose: Purpose) {
        out.push(Action::Call(call));
        self.pending = Some(purpose);
    }

    fn begin_round(&mut self, now_ns: u64, out: &mut Vec<Action>) {
        let ttl_secs = self.settings.ttl.as_secs();
        match self.lease {
            Some(lease) if self.phase != Phase::Connecting => self.call(
                out,
                Call::KeepAlive { lease },
                Purpose::KeepAlive { sent_ns: now_ns },
            ),
            _ => self.call(
                out,
                Call::Grant { ttl_secs },
                Purpose::Grant {
                    sent_ns: now_ns,
                    reelect: false,
                },
            ),
        }
    }

    fn complain(&mut self, now_ns: u64, e: EtcdError, out: &mut Vec<Action>) {
        if self
            .last_complaint_ns
            .is_none_or(|at| now_ns >= at + COMPLAIN_EVERY_NS)
        {
            self.last_complaint_ns = Some(now_ns);
            out.push(Action::Complain(e));
        }
    }

    fn on_answer(
        &mut self,
        now_ns: u64,
        purpose: Purpose,
        answer: Result<Answer, EtcdError>,
        view: &View,
        out: &mut Vec<Action>,
    ) {
        let answer = match answer {
            Ok(answer) => {
                out.push(Action::Reachable(true));
                answer
            }
            Err(e) => {
                out.push(Action::Reachable(false));
                self.complain(now_ns, e, out);
                return; // the round ends; the next one starts over
            }
        };
        match (purpose, answer) {
            (Purpose::Grant { sent_ns, reelect }, Answer::Lease(id)) => {
                self.lease = Some(id);
                self.lease_sent_ns = sent_ns;
                self.registered = false;
                if self.phase == Phase::Connecting {
                    self.phase = Phase::Connected;
                    out.push(Action::Connected);
                }
                if reelect {
                    self.campaign(now_ns, CampaignFor::Reelect, out);
                } else {
                    self.duties(now_ns, view, out);
                }
            }
            (Purpose::KeepAlive { sent_ns }, Answer::Ttl(Some(ttl_secs))) => {
                // etcd restarted the lease's count after it got the call, sent at `sent_ns`.
                let ttl = Duration::from_secs(ttl_secs);
                self.deadline = Deadline::after_renewal(sent_ns, ttl, self.settings.margin);
                self.lease_sent_ns = sent_ns;
                out.push(Action::Deadline(self.deadline));
                self.duties(now_ns, view, out);
            }
            (Purpose::KeepAlive { .. }, Answer::Ttl(None)) => self.lease_gone(now_ns, view, out),
            (Purpose::PublishNode, _) => {
                self.registered = true;
                self.duties(now_ns, view, out);
            }
            (Purpose::JoinLeader, Answer::Value(held)) => self.on_join_leader(now_ns, held, out),
            (Purpose::JoinNode { leader }, Answer::Value(record)) => {
                let replication = record
                    .as_ref()
                    .and_then(|kv| NodeRecord::decode(&kv.value))
                    .and_then(|n| n.replication?.parse().ok());
                if let Some(replication) = replication {
                    self.following = Some((leader.clone(), replication));
                    self.phase = Phase::Joined;
                    out.push(Action::Joined(Joined::Follow {
                        leader: leader.node,
                        replication,
                    }));
                } // else: elected, not registered yet: the next round looks again
            }
            (Purpose::SyncPut { members, epoch }, Answer::Succeeded(written)) => {
                if !written {
                    self.lost(out, "the leader key is not under this node's lease");
                    return;
                }
                self.sync_written = Some(members.clone());
                out.push(Action::SyncWritten { members, epoch });
                if let Some(running) = &view.running {
                    self.count_named(running, out);
                }
                self.leader_check(out);
            }
            (Purpose::LeaderCheck, Answer::Value(held)) => {
                let Some(running) = &view.running else {
                    return;
                };
                match held.as_ref().and_then(|kv| LeaderRecord::decode(&kv.value)) {
                    Some(r) if r.node == self.settings.name && r.epoch == running.epoch => {}
                    Some(other) => self.lost(out, &format!("the leader key says {other:?}")),
                    None if held.is_some() => self.lost(out, "the leader key is unreadable"),
                    None => self.lost(out, "the leader key is gone"),
                }
            }
            (Purpose::Watch, Answer::Value(held)) => self.on_watch(now_ns, held, view, out),
            (Purpose::WatchNode { leader }, Answer::Value(record)) => {
                let replication: Option<SocketAddr> = record
                    .as_ref()
                    .and_then(|kv| NodeRecord::decode(&kv.value))
                    .and_then(|n| n.replication?.parse().ok());
                match (&mut self.following, replication) {
                    // The primary it follows took the key again (its lease was lost): keep
                    // following it, at its new term.
                    (Some((term, at)), Some(replication)) if *at == replication => *term = leader,
                    (_, None) => {} // not registered yet: look again next round
                    _ => self.lost(
                        out,
                        &format!("{leader:?} leads now at other addresses; rejoining it"),
                    ),
                }
            }
            (Purpose::CampaignCounter(why), Answer::Value(counter)) => {
                let g = Gathered {
                    why,
                    counter,
                    sync: None,
                    own: None,
                    positions: Vec::new(),
                };
                let key = self.settings.keys.sync.clone();
                self.call(out, Call::Get { key }, Purpose::CampaignSync(g));
            }
            (Purpose::CampaignSync(mut g), Answer::Value(sync)) => {
                g.sync = sync.as_ref().and_then(|kv| SyncRecord::decode(&kv.value));
                let term = g
                    .counter
                    .as_ref()
                    .and_then(|kv| LeaderRecord::decode(&kv.value));
                let compares = match (&term, &g.sync) {
                    (Some(term), Some(s)) => {
                        s.epoch == term.epoch
                            && s.members.contains(&self.settings.name)
                            && s.needed < s.members.len()
                    }
                    _ => false,
                };
                let own = match g.why {
                    CampaignFor::Join => view.local_seq,
                    _ => view.running.as_ref().map(|r| r.received_seq),
                };
                match (compares, own, term) {
                    (true, Some(seq), Some(term)) => {
                        g.own = Some(seq);
                        let record = PositionRecord {
                            epoch: term.epoch,
                            seq,
                        };
                        let call = Call::Put {
                            key: format!("{}{}", self.settings.keys.positions, self.settings.name),
                            value: record.encode(),
                            lease: self.lease.unwrap_or(0),
                        };
                        self.call(out, call, Purpose::CampaignPosition(g));
                    }
                    _ => self.decide(now_ns, g, view, out),
                }
            }
            (Purpose::CampaignPosition(g), Answer::Done) => {
                let prefix = self.settings.keys.positions.clone();
                self.call(
                    out,
                    Call::GetPrefix { prefix },
                    Purpose::CampaignPositions(g),
                );
            }
            (Purpose::CampaignPositions(mut g), Answer::Values(kvs)) => {
                let prefix = &self.settings.keys.positions;
                g.positions = kvs
                    .into_iter()
                    .filter_map(|(key, kv)| {
                        let p = PositionRecord::decode(&kv.value)?;
                        Some((key.trim_start_matches(prefix.as_str()).to_string(), p))
                    })
                    .collect();
                self.decide(now_ns, g, view, out);
            }
            (Purpose::CampaignTxn { gathered, epoch }, Answer::Succeeded(won)) => {
                if won {
                    self.won(now_ns, gathered.why, epoch, out);
                } else if gathered.why == CampaignFor::Reelect {
                    self.lost(
                        out,
                        "another node took the leader key while this one's lease was gone",
                    );
                }
            }
            (Purpose::Revoke { lease }, _) => out.push(Action::Revoked(lease)),
            (purpose, answer) => self.complain(
                now_ns,
                EtcdError::Refused(format!("{answer:?} is no answer to {purpose:?}")),
                out,
            ),
        }
    }

    /// The renewal found the lease gone in etcd.
    fn lease_gone(&mut self, now_ns: u64, view: &View, out: &mut Vec<Action>) {
        self.lease = None;
        self.registered = false;
        let primary = view
            .running
            .as_ref()
            .is_some_and(|r| r.role == Role::Primary);
        if self.leading && primary {
            // Hold everything until a new lease holds the key again.
            self.deadline = Deadline::NONE;
            out.push(Action::Deadline(Deadline::NONE));
            self.leading = false;
            out.push(Action::Leading(false));
            let ttl_secs = self.settings.ttl.as_secs();
            self.call(
                out,
                Call::Grant { ttl_secs },
                Purpose::Grant {
                    sent_ns: now_ns,
                    reelect: true,
                },
            );
        } else if self.leading {
            self.lost(out, "the lease expired in etcd");
        } else {
            let ttl_secs = self.settings.ttl.as_secs();
            self.call(
                out,
                Call::Grant { ttl_secs },
                Purpose::Grant {
                    sent_ns: now_ns,
                    reelect: false,
                },
            );
        }
    }

    /// The phase's duty, after the renewal (and the addresses, once per lease).
    fn duties(&mut self, now_ns: u64, view: &View, out: &mut Vec<Action>) {
        if !self.registered {
            if let (Some(record), Some(lease)) = (&self.addresses, self.lease) {
                let call = Call::Put {
                    key: format!("{}{}", self.settings.keys.nodes, self.settings.name),
                    value: record.encode(),
                    lease,
                };
                self.call(out, call, Purpose::PublishNode);
                return;
            }
        }
        match self.phase {
            Phase::Joining => {
                let key = self.settings.keys.leader.clone();
                self.call(out, Call::Get { key }, Purpose::JoinLeader);
            }
            Phase::Joined => {
                let Some(running) = &view.running else {
                    return; // started, not attached yet: only the lease is kept
                };
                match running.role {
                    Role::Primary => {
                        if !self.leading {
                            self.leading = true;
                            out.push(Action::Leading(true));
                        }
                        self.keep_sync_record(running, out);
                    }
                    Role::Fenced => self.lost(out, "a newer primary fenced this node"),
                    Role::Standby => {
                        let key = self.settings.keys.leader.clone();
                        self.call(out, Call::Get { key }, Purpose::Watch);
                    }
                    Role::Promoting => {}
                }
                let _ = now_ns;
            }
            Phase::Connecting | Phase::Connected | Phase::Stopped => {}
        }
    }

    fn on_join_leader(&mut self, now_ns: u64, held: Option<Kv>, out: &mut Vec<Action>) {
        let Some(held) = held else {
            self.campaign(now_ns, CampaignFor::Join, out);
            return;
        };
        let Some(leader) = LeaderRecord::decode(&held.value) else {
            let why = format!(
                "{} holds {:?}, not a leader record",
                self.settings.keys.leader,
                String::from_utf8_lossy(&held.value)
            );
            self.complain(now_ns, EtcdError::Refused(why), out);
            return;
        };
        if leader.node == self.settings.name && Some(held.lease) == self.lease {
            // Our own campaign won, its answer lost on the way (a timeout, then a retry that
            // found the key taken): the term is ours.
            self.won(now_ns, CampaignFor::Join, leader.epoch, out);
            return;
        }
        if leader.node == self.settings.name {
            return; // this node's previous life still holds the key: wait for it to expire
        }
        let key = format!("{}{}", self.settings.keys.nodes, leader.node);
        self.call(out, Call::Get { key }, Purpose::JoinNode { leader });
    }

    fn on_watch(&mut self, now_ns: u64, held: Option<Kv>, view: &View, out: &mut Vec<Action>) {
        let Some(held) = held else {
            let streams = view.running.as_ref().is_some_and(|r| r.primary_streams);
            let since = *self.key_gone_ns.get_or_insert(now_ns);
            let grace = self.settings.ttl.as_nanos() as u64;
            if streams && now_ns < since + grace {
                self.withhold(
                    out,
                    "the primary still streams: it may take the leader key back (its lease \
                     expired in etcd, which was stalled or out of its reach); this node \
                     campaigns if it has not within a lease's TTL"
                        .into(),
                );
                return;
            }
            self.campaign(now_ns, CampaignFor::Standby, out);
            return;
        };
        self.key_gone_ns = None;
        let leader = LeaderRecord::decode(&held.value);
        match leader {
            Some(r) if r.node == self.settings.name && Some(held.lease) == self.lease => {
                // Our own campaign won, its answer lost on the way: the term is ours.
                self.won(now_ns, CampaignFor::Standby, r.epoch, out);
            }
            Some(r) => {
                let following = self.following.as_ref().map(|(term, _)| term.clone());
                if following.as_ref() == Some(&r) {
                    return;
                }
                if following.as_ref().is_some_and(|f| f.node == r.node) {
                    // The same node at a new term: is it where this node follows?
                    let key = format!("{}{}", self.settings.keys.nodes, r.node);
                    self.call(out, Call::Get { key }, Purpose::WatchNode { leader: r });
                    return;
                }
                // A new term of another node while this one followed the old: follow it.
                self.lost(out, &format!("{r:?} leads now; rejoining it"));
            }
            None => {}
        }
    }

    /// Keep `{prefix}/sync` naming the standbys whose acks count (`sync_record::decide`).
    fn keep_sync_record(&mut self, running: &Running, out: &mut Vec<Action>) {
        let decision = sync_record::decide(&SyncInputs {
            written: self.sync_written.as_deref(),
            target: self.sync_target,
            needed: self.settings.needed,
            synchronous: running.synchronous,
            may_ack_alone: running.may_ack_alone,
            standby_detached: running.standby_detached,
            slots: &running.slots,
            durable: running.durable_seq,
            released: running.released_seq,
        });
        self.sync_target = decision.target;
        if !decision.uncount.is_empty() {
            out.push(Action::Uncount(decision.uncount));
        }
        if self.sync_written.as_ref() != Some(&decision.members) {
            let record = SyncRecord {
                epoch: running.epoch,
                needed: self.settings.needed,
                members: decision.members.clone(),
            };
            let call = Call::PutWhileHeld {
                key: self.settings.keys.sync.clone(),
                value: record.encode(),
                guard_key: self.settings.keys.leader.clone(),
                guard_lease: self.lease.unwrap_or(0),
            };
            let purpose = Purpose::SyncPut {
                members: decision.members,
                epoch: running.epoch,
            };
            self.call(out, call, purpose);
            return;
        }
        self.count_named(running, out);
        self.leader_check(out);
    }

    /// The record names what it should: those named count; with none, the node may
    /// acknowledge alone.
    fn count_named(&mut self, running: &Running, out: &mut Vec<Action>) {
        let members = self.sync_written.clone().unwrap_or_default();
        let named: Vec<usize> = running
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.synchronous
                    && s.state != replicator::standbys::DETACHED
                    && members.contains(&s.name)
                    && !s.counts
            })
            .map(|(i, _)| i)
            .collect();
        if !named.is_empty() {
            out.push(Action::Count(named));
        }
        if members.is_empty() {
            out.push(Action::SyncCleared);
        }
    }

    fn leader_check(&mut self, out: &mut Vec<Action>) {
        let key = self.settings.keys.leader.clone();
        self.call(out, Call::Get { key }, Purpose::LeaderCheck);
    }

    fn campaign(&mut self, _now_ns: u64, why: CampaignFor, out: &mut Vec<Action>) {
        let key = self.settings.keys.epoch.clone();
        self.call(out, Call::Get { key }, Purpose::CampaignCounter(why));
    }

    /// May this node campaign, from what was gathered? If so, the transaction.
    fn decide(&mut self, _now_ns: u64, g: Gathered, view: &View, out: &mut Vec<Action>) {
        let term = g
            .counter
            .as_ref()
            .and_then(|kv| LeaderRecord::decode(&kv.value));
        let asked = may_campaign(&Candidate {
            name: &self.settings.name,
            last_leader: term.as_ref().map(|t| (t.node.as_str(), t.epoch)),
            sync: g.sync.as_ref(),
            own_seq: g.own,
            positions: &g.positions,
        });
        if let Err(why) = asked {
            if g.why == CampaignFor::Reelect {
                // Another term began while this primary's lease was gone: it was replaced.
                self.lost(
                    out,
                    &format!("its lease was gone and it may not lead again: {why}"),
                );
            } else {
                self.withhold(out, why);
            }
            return;
        }
        let local_epoch = match &view.running {
            Some(r) => r.epoch,
            None => view.local_epoch,
        };
        let epoch = next_epoch(term.as_ref().map(|t| t.epoch), local_epoch);
        let record = LeaderRecord {
            node: self.settings.name.clone(),
            epoch,
        };
        // A new term starts with no standby in sync: the new primary may serve alone.
        let no_sync = SyncRecord {
            epoch,
            needed: self.settings.needed,
            members: Vec::new(),
        };
        let keys = &self.settings.keys;
        let call = Call::Campaign {
            leader_key: keys.leader.clone(),
            leader_value: record.encode(),
            lease: self.lease.unwrap_or(0),
            epoch_key: keys.epoch.clone(),
            epoch_seen: g.counter.clone(),
            epoch_value: record.encode(),
            also: vec![(keys.sync.clone(), no_sync.encode())],
        };
        self.call(out, call, Purpose::CampaignTxn { gathered: g, epoch });
    }

    fn withhold(&mut self, out: &mut Vec<Action>, why: String) {
        if self.withheld.as_deref() != Some(why.as_str()) {
            out.push(Action::Withheld(why.clone()));
            self.withheld = Some(why);
        }
    }

    fn won(&mut self, _now_ns: u64, why: CampaignFor, epoch: u64, out: &mut Vec<Action>) {
        self.leading = true;
        self.sync_written = Some(Vec::new());
        self.sync_target = None;
        self.withheld = None;
        self.key_gone_ns = None;
        out.push(Action::Leading(true));
        match why {
            CampaignFor::Join => {
                self.phase = Phase::Joined;
                out.push(Action::Joined(Joined::Lead { epoch }));
            }
            CampaignFor::Standby => out.push(Action::Promote { epoch }),
            CampaignFor::Reelect => {
                // The new lease, granted at `lease_sent_ns`, holds the key now.
                self.deadline = Deadline::after_renewal(
                    self.lease_sent_ns,
                    self.settings.ttl,
                    self.settings.margin,
                );
                out.push(Action::Promote { epoch });
                out.push(Action::Deadline(self.deadline));
            }
        }
    }

    fn lost(&mut self, out: &mut Vec<Action>, why: &str) {
        self.leading = false;
        self.deadline = Deadline::NONE;
        out.push(Action::Lost(why.to_string()));
        self.phase = Phase::Stopped;
        self.pending = None;
    }
}
