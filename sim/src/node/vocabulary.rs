//! What a simulated node exchanges with the world: the group's settings, the requests and
//! answers of clients, what arrives for it, what the checker hears, why a process ends, and
//! the context a turn gets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ::coordinator::call::{Answer, Call};
use ::coordinator::EtcdError;
use engine::wire::Operation;
use engine::{Answer as EngineAnswer, Code, EngineConfig, Outcome, RequestId};
use replicator::{Epochs, Settings};
use server::config::ReplicationSection;
use server::group::coordinator::{self as machine, Keys};

use crate::net::{Delivery, Due, Net, NodeId};
use crate::rng::Rng;

/// The group's settings, the same in every node.
#[derive(Clone, Debug)]
pub struct Params {
    pub names: Vec<String>,
    pub lease: Duration,
    pub margin: Duration,
    pub heartbeat: Duration,
    pub timeout: Duration,
    pub tick: Duration,
    pub ack: &'static str,
    pub on_standby_loss: &'static str,
    pub sync_standbys: usize,
    pub engine: EngineConfig,
}

impl Params {
    pub fn settings(&self) -> Settings {
        Settings {
            secret: b"sim-secret".to_vec(),
            heartbeat: self.heartbeat,
            timeout: self.timeout,
        }
    }

    pub(crate) fn replication(&self, name: &str) -> ReplicationSection {
        ReplicationSection {
            ack: self.ack.into(),
            on_standby_loss: self.on_standby_loss.into(),
            sync_standbys: self.sync_standbys,
            max_standbys: self.names.len().max(2),
            failover: "etcd".into(),
            heartbeat_ms: self.heartbeat.as_millis() as u64,
            timeout_ms: self.timeout.as_millis() as u64,
            secret: "sim-secret".into(),
            node: name.to_string(),
            ..ReplicationSection::default()
        }
    }

    pub(crate) fn coordinator(&self, name: &str) -> machine::Settings {
        machine::Settings {
            name: name.to_string(),
            ttl: self.lease,
            margin: self.margin,
            needed: self.sync_standbys,
            keys: Keys::under("/surge"),
        }
    }
}

/// (client, request) of each record in a journal, by sequence.
pub type History = BTreeMap<u64, (u64, u64)>;

/// The replication address a node publishes: `10.0.0.<id>:7700`.
pub fn replication_addr(id: NodeId) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id as u8], 7700))
}

/// A client's request as intake would hand it on.
#[derive(Clone, Debug)]
pub struct Request {
    pub client: usize,
    /// The client's connection to this node (answers to an older one are dropped).
    pub generation: u32,
    /// The highest epoch the client has been answered at (fences an older primary).
    pub max_epoch: u64,
    pub id: RequestId,
    pub op: Operation,
}

/// What a node answered a client.
#[derive(Clone, Debug)]
pub enum Reply {
    Outcome(Outcome),
    Answer(EngineAnswer),
    /// Refused at intake, unsequenced.
    Refused(Code),
}

#[derive(Clone, Debug)]
pub struct ClientAnswer {
    pub client: usize,
    pub generation: u32,
    pub request: RequestId,
    pub node: NodeId,
    /// The node's epoch when it released the answer.
    pub epoch: u64,
    /// The command's journal sequence (0 for a query or a refusal).
    pub seq: u64,
    pub reply: Reply,
}

/// What arrives for a node.
#[derive(Debug)]
pub enum In {
    Net(Delivery),
    Etcd {
        call: u64,
        answer: Result<Answer, EtcdError>,
    },
    Request(Request),
}

/// What the checker hears from nodes as they run.
#[derive(Clone, Debug)]
pub enum Seen {
    /// `node` became the primary of `epoch` (started elected, promoted, or a new term), its
    /// journal going to `last_seq`.
    Leads {
        node: NodeId,
        epoch: u64,
        last_seq: u64,
    },
    /// `node`'s standby session began with a primary of `epoch`.
    Follows { node: NodeId, epoch: u64 },
    /// `node`'s epochs after a turn.
    Epochs { node: NodeId, epochs: Epochs },
    /// `node` starting as a standby dropped the epochs in which it wrote nothing: its stored
    /// epochs start over from these.
    Dropped { node: NodeId, epochs: Epochs },
    /// `node` started from its checkpoint `checkpoint` (at `seq`) and the journal after it;
    /// `problem`: that engine did not restore, or is not, byte for byte, the one a replay of
    /// the journal alone gives.
    Restored {
        node: NodeId,
        checkpoint: u64,
        seq: u64,
        problem: Option<String>,
    },
}

/// Why a process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Leadership lost, or a new term to rejoin: exit 75, the supervisor restarts it.
    Rejoin(String),
    /// The journal failed (or a promotion could not store its epoch): it exits, and is
    /// restarted.
    Failed(String),
    /// A standby told to cut its journal after `seq` (failback): it does, and starts again.
    Truncate(u64),
}

/// What a turn has to reach the rest of the world.
pub struct Ctx<'a> {
    pub now: u64,
    pub rng: &'a mut Rng,
    pub net: &'a mut Net,
    /// Network deliveries to schedule.
    pub due: &'a mut Vec<Due>,
    /// Calls for etcd: (node, call id, call).
    pub etcd: &'a mut Vec<(NodeId, u64, Call)>,
    pub answers: &'a mut Vec<ClientAnswer>,
    pub seen: &'a mut Vec<Seen>,
    /// Which nodes' processes run with their ports open (paused or not).
    pub up: &'a [bool],
}

/// The client id a simulated client uses.
pub fn client_id(client: usize) -> u64 {
    100 + client as u64
}
