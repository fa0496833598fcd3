//! Failover through etcd (`replication.failover = "etcd"`), inside a node.
//!
//! At start (`join`) a node asks etcd who leads. No one: it campaigns, taking the leader key
//! under its lease and moving the epoch counter in one transaction, and starts as the
//! primary of that epoch. Another node: it starts as that node's standby (the leader's
//! addresses are under `{prefix}/nodes/{name}`). Then one thread (`surge-coordinator`) keeps
//! the lease alive every quarter of its TTL and:
//!
//! - on a primary, moves the lease deadline after each renewal (`coordinator::Deadline`;
//!   past it the release gate holds answers, see `gate.rs`), and if the lease is gone or the
//!   leader key names another node, fences the node and exits with status 75: the service
//!   manager restarts it, and it rejoins as a standby (the failback rules cut what it wrote
//!   that was never acknowledged);
//! - on a standby, watches the leader key; once it is gone, campaigns, and if it wins,
//!   promotes the node to the epoch its campaign took (after everything it received is
//!   sequenced, as any promotion). A standby whose primary changed under it exits to rejoin
//!   the new one.
//!
//! Which standbys may win is `coordinator::candidacy`'s rule: the primary keeps
//! `{prefix}/sync` naming the standbys whose acks count (`keep_sync_record`), and once the
//! key is gone each of them publishes how far it got (`{prefix}/position/{name}`).
//!
//! etcd unreachable: nothing is promoted (no one can take the key), and a primary past its
//! deadline acknowledges only what its one standby in sync received, or nothing with
//! several (docs/REPLICATION.md has the timing argument).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coordinator::lease::next_epoch;
use coordinator::{
    may_campaign, Candidate, Etcd, EtcdError, LeaderRecord, NodeRecord, PositionRecord, SyncRecord,
};
use replicator::standbys::{DETACHED, STREAMING};
use replicator::ReplicationCode;

use crate::config::ServerConfig;
use crate::error::{Result, ServerError};
use crate::node::{repl_code, Node};
use crate::ops::log::{self, Level};
use crate::promotion::Promotion;
use crate::role::Role;
use crate::shared::Shared;

/// The exit status of a node that lost its leadership (EX_TEMPFAIL): restart me.
pub const EXIT_REJOIN: i32 = 75;
/// How long an elected standby waits for its promotion to complete.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Complaints about an unreachable etcd, at most one per this.
const COMPLAIN_EVERY: Duration = Duration::from_secs(5);

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

struct Keys {
    leader: String,
    /// The last epoch handed out and the node it went to: `node=<name> epoch=<n>`.
    epoch: String,
    /// The standbys whose acks count in the epoch (`SyncRecord`), written by that epoch's
    /// primary.
    sync: String,
    /// `{prefix}/position/`: how far each standby in sync got, once the leader key is gone.
    positions: String,
    nodes: String,
}

/// The lease as the renewal loop sees it.
struct LeaseState {
    id: i64,
    deadline: Option<Instant>,
}

pub struct Coordination {
    etcd: Etcd,
    name: String,
    keys: Keys,
    ttl: Duration,
    margin: Duration,
    lease: Mutex<LeaseState>,
    /// This node holds (or is about to hold, after `join`) the leader key.
    leading: AtomicBool,
    /// `step_down` was called: the thread ends.
    stopped: AtomicBool,
    /// The term (leader and epoch) this node follows, when it follows.
    following: Mutex<Option<LeaderRecord>>,
    /// Where this node is reached (client, HTTP, replication), once it runs.
    addresses: Mutex<Option<Addresses>>,
    /// The members this primary last wrote to `{prefix}/sync` (empty: none in sync).
    sync_written: Mutex<Option<Vec<String>>>,
    /// With no standby in sync: the durable sequence when enough were first seen streaming.
    /// They are named once `needed` of them acked that far (everything acknowledged alone
    /// before is then on them).
    sync_target: Mutex<Option<u64>>,
    /// `replication.sync_standbys`, written into the sync record.
    needed: usize,
    /// Why the last campaign was withheld (logged once per reason).
    withheld: Mutex<Option<String>>,
    last_complaint: Mutex<Option<Instant>>,
}

type Addresses = (SocketAddr, SocketAddr, Option<SocketAddr>);

/// The running node the coordinator thread works on, once there is one.
pub type Attached = Arc<Mutex<Option<(Arc<Node>, Arc<Shared>)>>>;

impl Coordination {
    /// Reach etcd and take a lease for this node (waiting while etcd is unreachable, until
    /// `stop`).
    pub fn connect(config: &ServerConfig, stop: &AtomicBool) -> Result<Option<Arc<Coordination>>> {
        let c = &config.coordinator;
        let ttl = Duration::from_millis(c.lease_ms);
        let prefix = c.prefix.trim_end_matches('/');
        let this = Coordination {
            // Each call gets a fraction of the lease: a slow etcd must not eat the margin.
            etcd: Etcd::with_access(
                c.endpoints.clone(),
                (ttl / 4).min(Duration::from_secs(1)),
                config.etcd_access()?,
            ),
            name: config.replication.node.clone(),
            keys: Keys {
                leader: format!("{prefix}/leader"),
                epoch: format!("{prefix}/epoch"),
                sync: format!("{prefix}/sync"),
                positions: format!("{prefix}/position/"),
                nodes: format!("{prefix}/nodes/"),
            },
            ttl,
            margin: Duration::from_millis(c.margin_ms),
            lease: Mutex::new(LeaseState {
                id: 0,
                deadline: None,
            }),
            leading: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            following: Mutex::new(None),
            addresses: Mutex::new(None),
            sync_written: Mutex::new(None),
            sync_target: Mutex::new(None),
            needed: config.replication.sync_standbys,
            withheld: Mutex::new(None),
            last_complaint: Mutex::new(None),
        };
        loop {
            if stop.load(SeqCst) {
                return Ok(None);
            }
            let sent = Instant::now();
            match this.etcd.grant(ttl.as_secs()) {
                Ok(id) => {
                    *this.lease.lock().expect("lease lock") = LeaseState {
                        id,
                        deadline: Some(this.deadline_after(sent, ttl)),
                    };
                    log::info(
                        "coordinator_connected",
                        &[
                            ("endpoints", &this.etcd.endpoints().join(",")),
                            ("access", &this.etcd.access().describe()),
                            ("lease_ms", &ttl.as_millis()),
                        ],
                    );
                    return Ok(Some(Arc::new(this)));
                }
                Err(e) => this.complain(&e),
            }
            std::thread::sleep(ttl / 4);
        }
    }

    fn deadline_after(&self, sent: Instant, ttl: Duration) -> Instant {
        sent + ttl.saturating_sub(self.margin)
    }

    fn complain(&self, e: &EtcdError) {
        let mut last = self.last_complaint.lock().expect("complaint lock");
        if last.is_none_or(|at| at.elapsed() >= COMPLAIN_EVERY) {
            *last = Some(Instant::now());
            let code = Some(repl_code(ReplicationCode::CoordinatorUnreachable));
            match e {
                EtcdError::Unreachable(_) => log::line(
                    Level::Warn,
                    "coordinator_unreachable",
                    code,
                    &[("error", e)],
                ),
                // etcd answered, and said no: a setting, not the network.
                EtcdError::Refused(_) => log::line(
                    Level::Warn,
                    "coordinator_refused",
                    code,
                    &[
                        ("error", e),
                        (
                            "hint",
                            &"check coordinator.username and password_file, the user's \
                              read-write permission on coordinator.prefix, and tls_ca/tls_cert",
                        ),
                    ],
                ),
            }
        }
    }

    fn lease_id(&self) -> i64 {
        self.lease.lock().expect("lease lock").id
    }

    /// Decide this node's role: lead (won a campaign) or follow the node that leads. Waits
    /// while etcd is unreachable or the leader has not registered its addresses yet.
    /// `local_seq`: how far this node's journal goes, read only if a campaign needs it.
    pub fn join(
        &self,
        local_epoch: u64,
        local_seq: &dyn Fn() -> Option<u64>,
        stop: &AtomicBool,
    ) -> Result<Option<Joined>> {
        while !stop.load(SeqCst) {
            match self.try_join(local_epoch, local_seq) {
                Ok(Some(joined)) => {
                    match &joined {
                        Joined::Lead { epoch } => {
                            self.leading.store(true, SeqCst);
                            log::line(
                                Level::Warn,
                                "elected",
                                Some(repl_code(ReplicationCode::Elected)),
                                &[("epoch", epoch), ("node", &self.name)],
                            );
                        }
                        Joined::Follow {
                            leader,
                            replication,
                            ..
                        } => {
                            log::info(
                                "following_leader",
                                &[("leader", leader), ("replication", replication)],
                            );
                        }
                    }
                    return Ok(Some(joined));
                }
                Ok(None) => {}
                Err(e) => self.complain(&e),
            }
            std::thread::sleep(self.ttl / 8);
        }
        Ok(None)
    }

    fn try_join(
        &self,
        local_epoch: u64,
        local_seq: &dyn Fn() -> Option<u64>,
    ) -> std::result::Result<Option<Joined>, EtcdError> {
        let Some(held) = self.etcd.get(&self.keys.leader)? else {
            return Ok(self
                .campaign(local_epoch, local_seq)?
                .map(|epoch| Joined::Lead { epoch }));
        };
        let Some(leader) = LeaderRecord::decode(&held.value) else {
            return Err(EtcdError::Refused(format!(
                "{} holds {:?}, not a leader record",
                self.keys.leader,
                String::from_utf8_lossy(&held.value)
            )));
        };
        if leader.node == self.name && held.lease == self.lease_id() {
            // Our own campaign won, its answer lost on the way (a timeout, then a retry that
            // found the key taken): the term is ours.
            *self.sync_written.lock().expect("sync lock") = Some(Vec::new());
            return Ok(Some(Joined::Lead {
                epoch: leader.epoch,
            }));
        }
        if leader.node == self.name {
            // This node's previous life still holds the key: wait for that lease to expire.
            return Ok(None);
        }
        let Some(addresses) = self
            .etcd
            .get(&format!("{}{}", self.keys.nodes, leader.node))?
        else {
            return Ok(None); // elected, not registered yet
        };
        let replication =
            NodeRecord::decode(&addresses.value).and_then(|n| n.replication?.parse().ok());
        let Some(replication) = replication else {
            return Ok(None);
        };
        *self.following.lock().expect("following lock") = Some(leader.clone());
        Ok(Some(Joined::Follow {
            leader: leader.node,
            replication,
        }))
    }

    /// Try to take the leader key: the epoch won, or `None` if another node was first or
    /// this node may not win (it might lack acknowledged writes). `own_seq`: how far this
    /// node got, published for the other standbys in sync to compare (read only when the
    /// rule needs it: a member of several, fewer than all of them acking).
    fn campaign(
        &self,
        local_epoch: u64,
        own_seq: &dyn Fn() -> Option<u64>,
    ) -> std::result::Result<Option<u64>, EtcdError> {
        let counter = self.etcd.get(&self.keys.epoch)?;
        let last_term = counter
            .as_ref()
            .and_then(|kv| LeaderRecord::decode(&kv.value));
        let sync = self.etcd.get(&self.keys.sync)?;
        let in_sync = sync.as_ref().and_then(|kv| SyncRecord::decode(&kv.value));
        let mut positions = Vec::new();
        let mut own = None;
        if let (Some(term), Some(in_sync)) = (&last_term, &in_sync) {
            let compares = in_sync.epoch == term.epoch
                && in_sync.members.contains(&self.name)
                && in_sync.needed < in_sync.members.len();
            if let Some(seq) = compares.then(own_seq).flatten() {
                own = Some(seq);
                let mine = PositionRecord {
                    epoch: term.epoch,
                    seq,
                };
                let key = format!("{}{}", self.keys.positions, self.name);
                self.etcd.put(&key, &mine.encode(), self.lease_id())?;
                for (key, kv) in self.etcd.get_prefix(&self.keys.positions)? {
                    if let Some(p) = PositionRecord::decode(&kv.value) {
                        positions
                            .push((key.trim_start_matches(&self.keys.positions).to_string(), p));
                    }
                }
            }
        }
        let asked = may_campaign(&Candidate {
            name: &self.name,
            last_leader: last_term.as_ref().map(|t| (t.node.as_str(), t.epoch)),
            sync: in_sync.as_ref(),
            own_seq: own,
            positions: &positions,
        });
        if let Err(why) = asked {
            let mut said = self.withheld.lock().expect("withheld lock");
            if said.as_deref() != Some(why.as_str()) {
                log::line(Level::Warn, "campaign_withheld", None, &[("why", &why)]);
                *said = Some(why);
            }
            return Ok(None);
        }
        let epoch = next_epoch(last_term.map(|t| t.epoch), local_epoch);
        let term = LeaderRecord {
            node: self.name.clone(),
            epoch,
        };
        // A new term starts with no standby in sync: the new primary may serve alone.
        let no_sync = SyncRecord {
            epoch,
            needed: self.needed,
            members: Vec::new(),
        };
        let won = self.etcd.campaign(
            &self.keys.leader,
            &term.encode(),
            self.lease_id(),
            &self.keys.epoch,
            counter.as_ref(),
            &term.encode(),
            &[(&self.keys.sync, &no_sync.encode())],
        )?;
        if won {
            *self.sync_written.lock().expect("sync lock") = Some(Vec::new());
        }
        Ok(won.then_some(epoch))
    }

    /// Publish where this node can be reached (a standby dials `replication`).
    pub fn register(&self, client: SocketAddr, http: SocketAddr, replication: Option<SocketAddr>) {
        *self.addresses.lock().expect("addresses lock") = Some((client, http, replication));
        self.publish_addresses();
    }

    fn publish_addresses(&self) {
        let Some((client, http, replication)) = *self.addresses.lock().expect("addresses lock")
        else {
            return;
        };
        let value = NodeRecord {
            client: client.to_string(),
            http: http.to_string(),
            replication: replication.map(|a| a.to_string()),
        }
        .encode();
        let key = format!("{}{}", self.keys.nodes, self.name);
        if let Err(e) = self.etcd.put(&key, &value, self.lease_id()) {
            self.complain(&e);
        }
    }

    /// Keep the lease alive from now on, and do the role's duties once `node` runs.
    pub fn spawn(self: &Arc<Self>, node: Attached) -> Result<JoinHandle<()>> {
        let this = self.clone();
        std::thread::Builder::new()
            .name("surge-coordinator".into())
            .spawn(move || this.run(&node))
            .map_err(|e| ServerError::io("spawning the coordinator thread", e))
    }

    fn run(&self, attached: &Mutex<Option<(Arc<Node>, Arc<Shared>)>>) {
        // Renewals and the standby's look at the leader key: sixteen per TTL (cheap calls),
        // so a key that expires is seen within a sixteenth of it.
        let tick = self.ttl / 16;
        while !self.stopped.load(SeqCst) {
            // A server that stopped (a standby restarting after a failback cut) has no
            // duties until the next one is attached; the lease is kept all along.
            let running = attached
                .lock()
                .expect("attach lock")
                .clone()
                .filter(|(_, shared)| !shared.stop.load(SeqCst));
            self.renew(running.as_ref());
            if let Some((node, shared)) = &running {
                self.duties(node, shared);
            }
            std::thread::sleep(tick);
        }
    }

    /// One keep-alive; a lease gone is leadership lost for a leader, and a new lease for
    /// anyone else.
    fn renew(&self, running: Option<&(Arc<Node>, Arc<Shared>)>) {
        let id = self.lease_id();
        let sent = Instant::now();
        let reachable = |yes: bool| {
            if let Some((node, _)) = running {
                node.lease.reachable.store(yes, SeqCst);
                node.lease
                    .authentications_total
                    .store(self.etcd.authentications(), SeqCst);
                if !yes {
                    node.lease.unreachable_total.fetch_add(1, SeqCst);
                }
            }
        };
        match self.etcd.keep_alive(id) {
            Ok(Some(ttl_secs)) => {
                reachable(true);
                let deadline = self.deadline_after(sent, Duration::from_secs(ttl_secs));
                self.lease.lock().expect("lease lock").deadline = Some(deadline);
                if let Some((node, shared)) = running {
                    publish_deadline(node, shared, deadline);
                }
            }
            Ok(None) if self.leading.load(SeqCst) => {
                reachable(true);
                self.lost(running.map(|(n, _)| n), "the lease expired in etcd");
            }
            Ok(None) => {
                reachable(true);
                let sent = Instant::now();
                match self.etcd.grant(self.ttl.as_secs()) {
                    Ok(id) => {
                        *self.lease.lock().expect("lease lock") = LeaseState {
                            id,
                            deadline: Some(self.deadline_after(sent, self.ttl)),
                        };
                        self.publish_addresses();
                    }
                    Err(e) => self.complain(&e),
                }
            }
            Err(e) => {
                reachable(false);
                self.complain(&e);
            }
        }
    }

    fn duties(&self, node: &Arc<Node>, shared: &Shared) {
        match node.role() {
            Role::Primary => {
                node.lease.leading.store(true, SeqCst);
                self.keep_sync_record(node, shared);
                // The key is ours while the lease lives; a newer leader means it is not.
                match self.etcd.get(&self.keys.leader) {
                    Ok(Some(held)) => match LeaderRecord::decode(&held.value) {
                        Some(r) if r.node == self.name && r.epoch == node.epoch() => {}
                        other => self.lost(Some(node), &format!("the leader key says {other:?}")),
                    },
                    Ok(None) => self.lost(Some(node), "the leader key is gone"),
                    Err(e) => self.complain(&e),
                }
            }
            Role::Fenced => self.lost(Some(node), "a newer primary fenced this node"),
            Role::Standby => self.watch_as_standby(node, shared),
            Role::Promoting => {}
        }
    }

    fn watch_as_standby(&self, node: &Arc<Node>, shared: &Shared) {
        let won = match self.etcd.get(&self.keys.leader) {
            Ok(None) => match self.campaign(node.epoch(), &|| {
                Some(node.follower.received_seq.load(SeqCst))
            }) {
                Ok(won) => won,
                Err(e) => {
                    self.complain(&e);
                    None
                }
            },
            Ok(Some(held)) => {
                let leader = LeaderRecord::decode(&held.value);
                match leader {
                    // Our own campaign won, its answer lost on the way: the term is ours.
                    Some(r) if r.node == self.name && held.lease == self.lease_id() => {
                        Some(r.epoch)
                    }
                    leader => {
                        let following = self.following.lock().expect("following lock").clone();
                        if leader.is_some() && leader != following {
                            // A new term (another node, or the same one started again,
                            // perhaps on other addresses) while this one followed the old:
                            // follow the new.
                            self.lost(Some(node), &format!("{leader:?} leads now; rejoining it"));
                        }
                        None
                    }
                }
            }
            Err(e) => {
                self.complain(&e);
                None
            }
        };
        let Some(epoch) = won else {
            return;
        };
        self.leading.store(true, SeqCst);
        *self.sync_written.lock().expect("sync lock") = Some(Vec::new());
        log::line(
            Level::Warn,
            "elected",
            Some(repl_code(ReplicationCode::Elected)),
            &[("epoch", &epoch), ("node", &self.name)],
        );
        let asked = shared.clock.mono_ns();
        match Promotion::ask_for(node, asked, PROMOTE_TIMEOUT, Some(epoch)) {
            Ok(p) => log::info(
                "promoted_by_election",
                &[("epoch", &p.epoch), ("start_seq", &p.start_seq)],
            ),
            Err(e) => self.lost(Some(node), &format!("promotion failed: {e}")),
        }
    }

    /// Keep `{prefix}/sync` naming the standbys whose acks count, so that every
    /// acknowledged write is on `needed` of those named (`coordinator::candidacy`):
    ///
    /// - a standby in a synchronous mode that attaches is named at once while others are
    ///   named (what was acknowledged is on `needed` of them already); with none named (this
    ///   node acknowledged alone), only once `needed` of them acked past what it did alone;
    /// - its acks count only after it is named;
    /// - a named standby that is gone stops counting, and is un-named once the others hold
    ///   everything released; with fewer left than `needed`, `degrade` clears the record
    ///   (then, and only then, this node acknowledges alone) and `halt` keeps it.
    fn keep_sync_record(&self, node: &Arc<Node>, shared: &Shared) {
        let table = &node.standbys;
        let policy = &node.policy;
        let k = policy.needed;
        let may_ack_alone = policy.degrade || policy.alone_ok.load(SeqCst);
        let written = self.sync_written.lock().expect("sync lock").clone();
        let mut members = written.clone().unwrap_or_default();
        let slot_of = |name: &str| table.slots().iter().position(|s| s.name() == name);
        let synchronous_attached: Vec<(usize, String)> = table
            .slots()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.mode().synchronous() && s.state.load(SeqCst) != DETACHED)
            .map(|(i, s)| (i, s.name()))
            .collect();
        if !policy.synchronous {
            members.clear();
        } else if members.is_empty() {
            let mut target = self.sync_target.lock().expect("sync target lock");
            let streaming: Vec<&(usize, String)> = synchronous_attached
                .iter()
                .filter(|(i, _)| table.slots()[*i].state.load(SeqCst) == STREAMING)
                .collect();
            if streaming.len() < k {
                *target = None;
            } else {
                // Streaming means past the catch-up, not past what this node acknowledged
                // alone: wait for their acks to pass that point.
                let at = *target.get_or_insert_with(|| shared.metrics.durable_seq.load(SeqCst));
                let caught_up: Vec<String> = streaming
                    .iter()
                    .filter(|(i, _)| table.slots()[*i].acked() >= at)
                    .map(|(_, name)| name.clone())
                    .collect();
                if caught_up.len() >= k {
                    members = caught_up;
                }
            }
        } else {
            for (_, name) in &synchronous_attached {
                if !members.contains(name) {
                    members.push(name.clone());
                }
            }
            let released = shared.metrics.release_bound_seq.load(SeqCst);
            let gone: Vec<String> = members
                .iter()
                .filter(|m| !synchronous_attached.iter().any(|(_, name)| name == *m))
                .cloned()
                .collect();
            for m in gone {
                let slot = slot_of(&m);
                let others_hold_all = members.len() > k
                    && table.acked_by_without(k, slot.unwrap_or(usize::MAX)) >= released;
                if others_hold_all {
                    if let Some(i) = slot {
                        table.slots()[i].counted.store(false, SeqCst);
                    }
                    members.retain(|name| name != &m);
                } else if members.len() - 1 < k && may_ack_alone && node.standby_state() == DETACHED
                {
                    members.clear();
                    break;
                }
            }
        }
        if members.is_empty() {
            for slot in table.slots() {
                slot.counted.store(false, SeqCst);
            }
        }
        if written.as_ref() != Some(&members) && !self.write_sync_record(node, &members) {
            return;
        }
        // Named: now their acks count (a member that attached again counts again).
        for (i, name) in &synchronous_attached {
            if members.contains(name) {
                table.slots()[*i].counted.store(true, SeqCst);
            }
        }
        if members.is_empty() && !node.lease.sync_cleared.swap(true, SeqCst) {
            node.nudge();
        }
    }

    /// Write `{prefix}/sync` while this node holds the leader key; whether it was written.
    fn write_sync_record(&self, node: &Arc<Node>, members: &[String]) -> bool {
        if !members.is_empty() {
            node.lease.sync_cleared.store(false, SeqCst);
        }
        let record = SyncRecord {
            epoch: node.epoch(),
            needed: self.needed,
            members: members.to_vec(),
        };
        let put = self.etcd.put_while_held(
            &self.keys.sync,
            &record.encode(),
            &self.keys.leader,
            self.lease_id(),
        );
        match put {
            Ok(false) => {
                self.lost(Some(node), "the leader key is not under this node's lease");
                false
            }
            Ok(true) => {
                log::info(
                    "sync_standbys",
                    &[
                        ("standbys", &members.join(",")),
                        ("needed", &self.needed),
                        ("epoch", &record.epoch),
                    ],
                );
                node.lease.sync_cleared.store(members.is_empty(), SeqCst);
                node.nudge();
                *self.sync_written.lock().expect("sync lock") = Some(members.to_vec());
                true
            }
            Err(e) => {
                self.complain(&e);
                false
            }
        }
    }

    /// Stop this node from acknowledging anything more and exit for a restart.
    fn lost(&self, node: Option<&Arc<Node>>, why: &str) {
        if self.stopped.load(SeqCst) {
            return; // a clean stop revoked the lease: nothing was lost
        }
        if let Some(node) = node {
            node.lease.enabled.store(true, SeqCst);
            node.lease.deadline_ns.store(0, SeqCst);
            node.lease.leading.store(false, SeqCst);
            node.nudge();
        }
        log::line(
            Level::Error,
            "leadership_lost",
            Some(repl_code(ReplicationCode::LeadershipLost)),
            &[
                ("why", &why),
                ("detail", &"exiting with status 75 to rejoin as a standby"),
            ],
        );
        std::process::exit(EXIT_REJOIN);
    }

    /// A clean stop: give the key back at once, so a standby need not wait out the lease.
    pub fn step_down(&self) {
        self.stopped.store(true, SeqCst);
        let id = self.lease_id();
        if self.etcd.revoke(id).is_ok() {
            log::info("coordinator_lease_revoked", &[("lease", &id)]);
        }
    }

    /// Attach the running node: from now on its release gate follows the lease.
    pub fn attach(&self, node: &Arc<Node>, shared: &Arc<Shared>) {
        let _ = node.lease.clock.set(shared.clock.clone());
        if let Some(deadline) = self.lease.lock().expect("lease lock").deadline {
            publish_deadline(node, shared, deadline);
        }
        node.lease.reachable.store(true, SeqCst);
        node.lease.leading.store(self.leading.load(SeqCst), SeqCst);
        node.lease.enabled.store(true, SeqCst);
        node.nudge();
    }
}

/// The deadline on the server's monotonic clock, a millisecond early for the conversion.
fn publish_deadline(node: &Node, shared: &Shared, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    let at_ns = (shared.clock.mono_ns() + left.as_nanos() as u64).saturating_sub(1_000_000);
    node.lease.deadline_ns.store(at_ns, SeqCst);
    node.nudge();
}
