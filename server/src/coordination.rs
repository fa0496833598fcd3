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
//! etcd unreachable: nothing is promoted (no one can take the key), and a primary past its
//! deadline acknowledges only what its standby received (docs/REPLICATION.md has the timing
//! argument).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coordinator::lease::next_epoch;
use coordinator::{Etcd, EtcdError, LeaderRecord, NodeRecord};
use replicator::primary::STREAMING;
use replicator::ReplicationCode;

use crate::config::{AckMode, ServerConfig};
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
    /// The standby that holds every acknowledged write of the epoch, if one does:
    /// `node=<name or empty> epoch=<n>`, written by that epoch's primary.
    sync: String,
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
    /// What this primary last wrote to `{prefix}/sync` (the standby's name, or "").
    sync_written: Mutex<Option<String>>,
    /// The durable sequence when the standby was first seen streaming: it is named in sync
    /// once it has acked that far (everything acknowledged alone before is then on it).
    sync_target: Mutex<Option<u64>>,
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
            etcd: Etcd::new(c.endpoints.clone(), (ttl / 4).min(Duration::from_secs(1))),
            name: config.replication.node.clone(),
            keys: Keys {
                leader: format!("{prefix}/leader"),
                epoch: format!("{prefix}/epoch"),
                sync: format!("{prefix}/sync"),
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
            log::line(
                Level::Warn,
                "coordinator_unreachable",
                Some(repl_code(ReplicationCode::CoordinatorUnreachable)),
                &[("error", e)],
            );
        }
    }

    fn lease_id(&self) -> i64 {
        self.lease.lock().expect("lease lock").id
    }

    /// Decide this node's role: lead (won a campaign) or follow the node that leads. Waits
    /// while etcd is unreachable or the leader has not registered its addresses yet.
    pub fn join(&self, local_epoch: u64, stop: &AtomicBool) -> Result<Option<Joined>> {
        while !stop.load(SeqCst) {
            match self.try_join(local_epoch) {
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

    fn try_join(&self, local_epoch: u64) -> std::result::Result<Option<Joined>, EtcdError> {
        let Some(held) = self.etcd.get(&self.keys.leader)? else {
            return Ok(self
                .campaign(local_epoch)?
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
            *self.sync_written.lock().expect("sync lock") = Some(String::new());
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
    /// this node may not win (it might lack acknowledged writes).
    fn campaign(&self, local_epoch: u64) -> std::result::Result<Option<u64>, EtcdError> {
        let counter = self.etcd.get(&self.keys.epoch)?;
        let last_term = counter
            .as_ref()
            .and_then(|kv| LeaderRecord::decode(&kv.value));
        let sync = self.etcd.get(&self.keys.sync)?;
        let in_sync = sync.as_ref().and_then(|kv| LeaderRecord::decode(&kv.value));
        if let Some(why) = withheld(&self.name, last_term.as_ref(), in_sync.as_ref()) {
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
        let no_sync = LeaderRecord {
            node: String::new(),
            epoch,
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
            *self.sync_written.lock().expect("sync lock") = Some(String::new());
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
            Ok(None) => match self.campaign(node.epoch()) {
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
        *self.sync_written.lock().expect("sync lock") = Some(String::new());
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

    /// Keep `{prefix}/sync` naming the standby that holds every acknowledged write: a
    /// standby streaming in a synchronous ack mode; the last one named while `halt` keeps
    /// this node from acknowledging alone; else no one. Naming one comes first (this node
    /// stops acknowledging alone before the standby may win); clearing comes before
    /// acknowledging alone (a standby that lacks those writes may no longer win).
    fn keep_sync_record(&self, node: &Arc<Node>, shared: &Shared) {
        let standby = &node.standby;
        let policy = &node.policy;
        let synchronous = policy.ack != AckMode::Async;
        let streaming = standby.state.load(SeqCst) == STREAMING;
        let may_ack_alone = policy.degrade || policy.alone_ok.load(SeqCst);
        let caught_up = {
            // Streaming means the standby is past its catch-up, not that it has acked what
            // this node acknowledged alone before: wait for its acks to pass that point.
            let mut target = self.sync_target.lock().expect("sync target lock");
            if !streaming {
                *target = None;
            }
            let at = *target.get_or_insert_with(|| shared.metrics.durable_seq.load(SeqCst));
            let acked = match policy.ack {
                AckMode::Received => standby.received.load(SeqCst),
                _ => standby.durable.load(SeqCst),
            };
            streaming && acked >= at
        };
        let desired = if synchronous && caught_up {
            standby.name.lock().expect("standby name lock").clone()
        } else if synchronous && (streaming || !may_ack_alone) {
            // A standby still acking its way past what was acknowledged alone: not yet. Or
            // `halt` without its standby, which acknowledges nothing: the standby named last
            // still holds every acknowledged write, and may still take over.
            return;
        } else {
            String::new()
        };
        let mut written = self.sync_written.lock().expect("sync lock");
        if written.as_deref() == Some(desired.as_str()) {
            // Written already (by this loop, or by the campaign that won the term).
            if desired.is_empty() && !node.lease.sync_cleared.swap(true, SeqCst) {
                node.nudge();
            }
            return;
        }
        if !desired.is_empty() {
            node.lease.sync_cleared.store(false, SeqCst);
        }
        let record = LeaderRecord {
            node: desired.clone(),
            epoch: node.epoch(),
        };
        let put = self.etcd.put_while_held(
            &self.keys.sync,
            &record.encode(),
            &self.keys.leader,
            self.lease_id(),
        );
        match put {
            Ok(false) => self.lost(Some(node), "the leader key is not under this node's lease"),
            Ok(true) => {
                log::info(
                    "sync_standby",
                    &[("standby", &desired), ("epoch", &record.epoch)],
                );
                node.lease.sync_cleared.store(desired.is_empty(), SeqCst);
                node.nudge();
                *written = Some(desired);
            }
            Err(e) => self.complain(&e),
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

/// Why `name` may not campaign, if it may not: it might lack acknowledged writes. It may
/// when no term was ever held, when it led the last term itself (a primary holds everything
/// it acknowledged), or when the last term's primary named it the standby in sync.
fn withheld(
    name: &str,
    last_term: Option<&LeaderRecord>,
    in_sync: Option<&LeaderRecord>,
) -> Option<String> {
    // No term yet: anyone.
    let term = last_term?;
    if term.node == name {
        return None;
    }
    match in_sync {
        Some(sync) if sync.epoch == term.epoch && sync.node == name => None,
        Some(sync) if sync.epoch == term.epoch && !sync.node.is_empty() => Some(format!(
            "{} is the standby in sync for epoch {}, not this node",
            sync.node, term.epoch
        )),
        _ => Some(format!(
            "no standby is in sync for epoch {} (its primary {} acknowledged alone, or the \
             ack mode is async): only {} holds every acknowledged write",
            term.epoch, term.node, term.node
        )),
    }
}

/// The deadline on the server's monotonic clock, a millisecond early for the conversion.
fn publish_deadline(node: &Node, shared: &Shared, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    let at_ns = (shared.clock.mono_ns() + left.as_nanos() as u64).saturating_sub(1_000_000);
    node.lease.deadline_ns.store(at_ns, SeqCst);
    node.nudge();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(node: &str, epoch: u64) -> LeaderRecord {
        LeaderRecord {
            node: node.into(),
            epoch,
        }
    }

    #[test]
    fn only_a_node_that_holds_every_acknowledged_write_campaigns() {
        // The first term: anyone.
        assert_eq!(withheld("b", None, None), None);
        // The last leader itself.
        assert_eq!(withheld("a", Some(&term("a", 3)), Some(&term("", 3))), None);
        // The standby its primary named in sync for that epoch.
        assert_eq!(
            withheld("b", Some(&term("a", 3)), Some(&term("b", 3))),
            None
        );
        // Not: the primary acknowledged alone, named another, or the record is of an old term.
        assert!(withheld("b", Some(&term("a", 3)), Some(&term("", 3))).is_some());
        assert!(withheld("b", Some(&term("a", 3)), Some(&term("c", 3))).is_some());
        assert!(withheld("b", Some(&term("a", 3)), Some(&term("b", 2))).is_some());
        assert!(withheld("b", Some(&term("a", 3)), None).is_some());
    }
}
