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

mod answers;
mod campaign;
pub mod sync_record;
mod vocabulary;

pub use vocabulary::{Action, Input, Joined, Keys, Running, Settings, View};
#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use coordinator::call::{Answer, Call};
use coordinator::lease::Deadline;
use coordinator::{EtcdError, Kv, LeaderRecord, NodeRecord, PositionRecord, SyncRecord};

use crate::group::role::Role;
use sync_record::SyncInputs;

/// Complaints about an unreachable etcd, at most one per this.
pub const COMPLAIN_EVERY_NS: u64 = 5_000_000_000;

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
                // Published at the next round: make it now, so `surge status` and a joining
                // standby see this node as soon as it listens, not a round later.
                self.next_round_ns = now_ns;
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

    fn lost(&mut self, out: &mut Vec<Action>, why: &str) {
        self.leading = false;
        self.deadline = Deadline::NONE;
        out.push(Action::Lost(why.to_string()));
        self.phase = Phase::Stopped;
        self.pending = None;
    }
}
