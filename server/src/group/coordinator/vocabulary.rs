//! The coordinator machine's vocabulary: its settings and keys, what the node tells it
//! (`View`, `Running`), what it takes (`Input`) and what it asks for (`Action`).

use std::net::SocketAddr;
use std::time::Duration;

use coordinator::call::{Answer, Call};
use coordinator::lease::Deadline;
use coordinator::{EtcdError, NodeRecord};

use super::sync_record::SlotView;
use crate::group::role::Role;

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
