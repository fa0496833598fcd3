//! The faults a run injects, drawn from its seed: which kinds, when, on which node or link,
//! for how long. Every fault ends by the end of the fault window (the world heals what is
//! left then), so the run can check that the group serves again.

use crate::net::NodeId;
use crate::rng::Rng;

/// The kinds of fault, for `--faults` and the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// SIGKILL of a node; the supervisor starts it again a second later.
    Kill,
    /// A crash in the middle of a commit: the sync fails, the write is torn.
    CrashMidCommit,
    /// SIGSTOP, then SIGCONT: the node resumes with its stale view and timers.
    Pause,
    /// No traffic between two nodes, both ways.
    Partition,
    /// No traffic from one node to another; the other way works.
    OneWay,
    /// A node cannot reach etcd (or etcd's answers do not reach it).
    EtcdCut,
    /// etcd answers nothing for a while, then revokes the leases that ran out meanwhile.
    EtcdStall,
    /// etcd answers, slowly.
    EtcdSlow,
    /// A slow link between two nodes (tens to hundreds of milliseconds).
    SlowLink,
    /// A node's journal syncs slowly.
    SlowDisk,
    /// A node's disk is full: writes fail until it is not.
    DiskFull,
}

pub const ALL: [Kind; 11] = [
    Kind::Kill,
    Kind::CrashMidCommit,
    Kind::Pause,
    Kind::Partition,
    Kind::OneWay,
    Kind::EtcdCut,
    Kind::EtcdStall,
    Kind::EtcdSlow,
    Kind::SlowLink,
    Kind::SlowDisk,
    Kind::DiskFull,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::CrashMidCommit => "crash-mid-commit",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
            Kind::OneWay => "one-way",
            Kind::EtcdCut => "etcd-cut",
            Kind::EtcdStall => "etcd-stall",
            Kind::EtcdSlow => "etcd-slow",
            Kind::SlowLink => "slow-link",
            Kind::SlowDisk => "slow-disk",
            Kind::DiskFull => "disk-full",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One fault: what, on whom, from when, for how long.
#[derive(Clone, Debug)]
pub struct Fault {
    pub at_ns: u64,
    pub kind: Kind,
    pub node: NodeId,
    /// The other end, for link faults.
    pub peer: NodeId,
    pub for_ns: u64,
}

impl Fault {
    pub fn describe(&self) -> String {
        let at = self.at_ns as f64 / 1e9;
        let dur = self.for_ns as f64 / 1e9;
        match self.kind {
            Kind::Kill | Kind::CrashMidCommit => {
                format!("t={at:.3}s {} node {}", self.kind.name(), self.node)
            }
            Kind::Partition | Kind::OneWay | Kind::SlowLink => format!(
                "t={at:.3}s {} {}→{} for {dur:.3}s",
                self.kind.name(),
                self.node,
                self.peer
            ),
            Kind::EtcdStall | Kind::EtcdSlow => {
                format!("t={at:.3}s {} for {dur:.3}s", self.kind.name())
            }
            _ => format!(
                "t={at:.3}s {} node {} for {dur:.3}s",
                self.kind.name(),
                self.node
            ),
        }
    }
}

/// Faults from `start_ns` to `end_ns`, of the `kinds` given, among `nodes` nodes: one every
/// 0.5 to 3 seconds.
pub fn schedule(
    rng: &mut Rng,
    kinds: &[Kind],
    nodes: usize,
    start_ns: u64,
    end_ns: u64,
) -> Vec<Fault> {
    const MS: u64 = 1_000_000;
    let mut out = Vec::new();
    if kinds.is_empty() {
        return out;
    }
    let mut at = start_ns + rng.between(200, 2_000) * MS;
    while at < end_ns {
        let kind = *rng.pick(kinds);
        let node = rng.below(nodes as u64) as NodeId;
        let peer = (node + 1 + rng.below(nodes as u64 - 1) as usize) % nodes;
        let for_ns = match kind {
            Kind::Kill | Kind::CrashMidCommit => 0,
            Kind::Pause => rng.between(300, 4_500) * MS,
            Kind::Partition | Kind::OneWay => rng.between(300, 5_000) * MS,
            Kind::EtcdCut => rng.between(300, 4_000) * MS,
            Kind::EtcdStall => rng.between(300, 4_000) * MS,
            Kind::EtcdSlow => rng.between(500, 3_000) * MS,
            Kind::SlowLink => rng.between(500, 3_000) * MS,
            Kind::SlowDisk => rng.between(300, 3_000) * MS,
            Kind::DiskFull => rng.between(200, 2_000) * MS,
        };
        out.push(Fault {
            at_ns: at,
            kind,
            node,
            peer,
            for_ns: for_ns.min(end_ns - at),
        });
        at += rng.between(500, 3_000) * MS;
    }
    out
}
