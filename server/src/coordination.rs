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
    epoch: String,
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
    /// The leader this node follows, when it follows.
    following: Mutex<Option<String>>,
    /// Where this node is reached (client, HTTP, replication), once it runs.
    addresses: Mutex<Option<Addresses>>,
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
                nodes: format!("{prefix}/nodes/"),
            },
            ttl,
            margin: Duration::from_millis(c.margin_ms),
            lease: Mutex::new(LeaseState {
                id: 0,
                deadline: None,
            }),
            leading: AtomicBool::new(false),
            following: Mutex::new(None),
            addresses: Mutex::new(None),
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
                        } => {
                            *self.following.lock().expect("following lock") = Some(leader.clone());
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
        Ok(replication.map(|replication| Joined::Follow {
            leader: leader.node,
            replication,
        }))
    }

    /// Try to take the leader key: the epoch won, or `None` if another node was first.
    fn campaign(&self, local_epoch: u64) -> std::result::Result<Option<u64>, EtcdError> {
        let counter = self.etcd.get(&self.keys.epoch)?;
        let seen = counter
            .as_ref()
            .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse().ok());
        let epoch = next_epoch(seen, local_epoch);
        let record = LeaderRecord {
            node: self.name.clone(),
            epoch,
        };
        let won = self.etcd.campaign(
            &self.keys.leader,
            &record.encode(),
            self.lease_id(),
            &self.keys.epoch,
            counter.as_ref(),
            epoch,
        )?;
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
        // Renewals and the standby's look at the leader key: eight per TTL, so a key that
        // expires is seen within an eighth of it.
        let tick = self.ttl / 8;
        loop {
            let running = attached.lock().expect("attach lock").clone();
            if let Some((_, shared)) = &running {
                if shared.stop.load(SeqCst) {
                    self.step_down();
                    return;
                }
            }
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
        match self.etcd.get(&self.keys.leader) {
            Ok(None) => match self.campaign(node.epoch()) {
                Ok(Some(epoch)) => {
                    self.leading.store(true, SeqCst);
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
                Ok(None) => {}
                Err(e) => self.complain(&e),
            },
            Ok(Some(held)) => {
                let leader = LeaderRecord::decode(&held.value).map(|r| r.node);
                let following = self.following.lock().expect("following lock").clone();
                if leader.is_some() && leader != following && leader.as_deref() != Some(&self.name)
                {
                    // Another node won while this one followed someone else: follow it.
                    self.lost(Some(node), &format!("{leader:?} leads now; rejoining it"));
                }
            }
            Err(e) => self.complain(&e),
        }
    }

    /// Stop this node from acknowledging anything more and exit for a restart.
    fn lost(&self, node: Option<&Arc<Node>>, why: &str) {
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
