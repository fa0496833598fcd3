//! Failover through etcd (`replication.failover = "etcd"`), inside a node: the thread that
//! runs `group::coordinator`'s machine against a real etcd. It makes each call the machine
//! asks for (blocking, bounded by a fraction of the lease), steps the answer, and carries
//! out the rest: the lease deadline into the release gate, the sync record's standbys into
//! the ack count, a promotion, or leadership lost (exit 75: the service manager restarts the
//! node, and it rejoins as a standby).
//!
//! `connect` takes the first lease; `spawn` starts the thread (renewals from then on);
//! `join` asks the machine for the node's role and waits for it; `register` and `attach`
//! hand it the running node.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use coordinator::{Etcd, EtcdError, NodeRecord};
use replicator::standbys::DETACHED;
use replicator::ReplicationCode;

use crate::config::ServerConfig;
use crate::error::{Result, ServerError};
use crate::group::coordinator::sync_record::SlotView;
pub use crate::group::coordinator::Joined;
use crate::group::coordinator::{Action, Coordinator, Input, Keys, Running, Settings, View};
use crate::group::node::Node;
use crate::group::role::Role;
use crate::pipeline::shared::Shared;
use crate::telemetry::log::repl_code;
use crate::telemetry::log::{self, Level};
use crate::{Clock, SystemClock};

/// The exit status of a node that lost its leadership (EX_TEMPFAIL): restart me.
pub const EXIT_REJOIN: i32 = 75;
/// How long an elected node waits for its promotion (or new term) to complete.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(10);
/// The thread looks at its machine at least this often.
const POLL: Duration = Duration::from_millis(10);

/// The running node the coordinator thread works on, once there is one.
pub type Attached = Arc<Mutex<Option<(Arc<Node>, Arc<Shared>)>>>;

pub struct Coordination {
    etcd: Etcd,
    name: String,
    clock: SystemClock,
    machine: Mutex<Coordinator>,
    /// What `join` read: this node's epoch and how far its journal goes.
    local: Mutex<(u64, Option<u64>)>,
    joined: Mutex<Option<Joined>>,
    changed: Condvar,
    attached: Attached,
    /// `replication.timeout_ms`: a standby's primary heard within it still streams.
    replication_timeout: Duration,
    /// `step_down` was called: the thread ends.
    stopped: AtomicBool,
}

impl Coordination {
    /// Reach etcd and take a lease for this node (waiting while etcd is unreachable, until
    /// `stop`).
    pub fn connect(config: &ServerConfig, stop: &AtomicBool) -> Result<Option<Arc<Coordination>>> {
        let c = &config.coordinator;
        let ttl = Duration::from_millis(c.lease_ms);
        let this = Coordination {
            // Each call gets a fraction of the lease: a slow etcd must not eat the margin.
            etcd: Etcd::with_access(
                c.endpoints.clone(),
                (ttl / 4).min(Duration::from_secs(1)),
                config.etcd_access()?,
            ),
            name: config.replication.node.clone(),
            clock: SystemClock::new(),
            machine: Mutex::new(Coordinator::new(Settings {
                name: config.replication.node.clone(),
                ttl,
                margin: Duration::from_millis(c.margin_ms),
                needed: config.replication.sync_standbys,
                keys: Keys::under(&c.prefix),
            })),
            local: Mutex::new((0, None)),
            joined: Mutex::new(None),
            changed: Condvar::new(),
            attached: Arc::new(Mutex::new(None)),
            replication_timeout: Duration::from_millis(config.replication.timeout_ms),
            stopped: AtomicBool::new(false),
        };
        while !this.machine.lock().expect("machine lock").connected() {
            if stop.load(SeqCst) {
                return Ok(None);
            }
            this.turn();
            std::thread::sleep(POLL);
        }
        Ok(Some(Arc::new(this)))
    }

    /// Keep the lease alive from now on, and do the role's duties once `node` runs.
    pub fn spawn(self: &Arc<Self>, node: Attached) -> Result<JoinHandle<()>> {
        *self.attached.lock().expect("attach lock") = node.lock().expect("attach lock").clone();
        let this = self.clone();
        std::thread::Builder::new()
            .name("surge-coordinator".into())
            .spawn(move || {
                while !this.stopped.load(SeqCst) {
                    let running = node.lock().expect("attach lock").clone();
                    *this.attached.lock().expect("attach lock") = running;
                    this.turn();
                    std::thread::sleep(POLL);
                }
            })
            .map_err(|e| ServerError::io("spawning the coordinator thread", e))
    }

    /// Decide this node's role: lead (won a campaign) or follow the node that leads. Waits
    /// while etcd is unreachable or the leader has not registered its addresses yet.
    /// `local_seq`: how far this node's journal goes (compared with other standbys' in a
    /// campaign).
    pub fn join(
        &self,
        local_epoch: u64,
        local_seq: &dyn Fn() -> Option<u64>,
        stop: &AtomicBool,
    ) -> Result<Option<Joined>> {
        *self.local.lock().expect("local lock") = (local_epoch, local_seq());
        let view = self.view();
        let now = self.clock.mono_ns();
        let actions = self
            .machine
            .lock()
            .expect("machine lock")
            .step(now, Input::Join, &view);
        self.carry_out(actions);
        let mut joined = self.joined.lock().expect("joined lock");
        while joined.is_none() {
            if stop.load(SeqCst) {
                return Ok(None);
            }
            joined = self
                .changed
                .wait_timeout(joined, Duration::from_millis(50))
                .expect("joined lock")
                .0;
        }
        Ok(joined.clone())
    }

    /// Publish where this node can be reached (a standby dials `replication`).
    pub fn register(&self, client: SocketAddr, http: SocketAddr, replication: Option<SocketAddr>) {
        let record = NodeRecord {
            client: client.to_string(),
            http: http.to_string(),
            replication: replication.map(|a| a.to_string()),
        };
        let view = self.view();
        self.machine.lock().expect("machine lock").step(
            self.clock.mono_ns(),
            Input::Register(record),
            &view,
        );
    }

    /// Attach the running node: from now on its release gate follows the lease.
    pub fn attach(&self, node: &Arc<Node>, shared: &Arc<Shared>) {
        let _ = node.lease().clock.set(shared.clock.clone());
        let (deadline, leading) = {
            let m = self.machine.lock().expect("machine lock");
            (m.deadline(), m.leading())
        };
        *self.attached.lock().expect("attach lock") = Some((node.clone(), shared.clone()));
        node.lease()
            .deadline_ns
            .store(self.on_server_clock(shared, deadline.at_ns), SeqCst);
        node.lease().reachable.store(true, SeqCst);
        node.lease().leading.store(leading, SeqCst);
        node.lease().enabled.store(true, SeqCst);
        node.nudge();
    }

    /// A clean stop: give the key back at once, so a standby need not wait out the lease.
    pub fn step_down(&self) {
        self.stopped.store(true, SeqCst);
        let view = self.view();
        let mut machine = self.machine.lock().expect("machine lock");
        let actions = machine.step(self.clock.mono_ns(), Input::StepDown, &view);
        for action in actions {
            if let Action::Call(call) = action {
                let answer = self.etcd.execute(&call);
                if let Some(Action::Revoked(lease)) = machine.revoked(&answer) {
                    log::info("coordinator_lease_revoked", &[("lease", &lease)]);
                }
            }
        }
    }

    /// One look at the machine: a round if one is due, each call it asks for made.
    fn turn(&self) {
        let view = self.view();
        let actions = self.machine.lock().expect("machine lock").step(
            self.clock.mono_ns(),
            Input::Tick,
            &view,
        );
        self.carry_out(actions);
    }

    fn carry_out(&self, actions: Vec<Action>) {
        let mut pending: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = pending.pop_front() {
            if self.stopped.load(SeqCst) {
                return; // a clean stop revoked the lease: nothing more is done
            }
            let running = self.attached.lock().expect("attach lock").clone();
            let node = running.as_ref().map(|(n, _)| n);
            if let Some((node, shared)) = &running {
                let to_server = |at_ns| self.on_server_clock(shared, at_ns);
                if apply_to_node(&action, node, &to_server) {
                    continue;
                }
            }
            match action {
                Action::Call(call) => {
                    let answer = self.etcd.execute(&call);
                    if let Some((node, _)) = &running {
                        node.lease()
                            .authentications_total
                            .store(self.etcd.authentications(), SeqCst);
                    }
                    let view = self.view();
                    let next = self.machine.lock().expect("machine lock").step(
                        self.clock.mono_ns(),
                        Input::Answer(answer),
                        &view,
                    );
                    pending.extend(next);
                }
                Action::Connected => log::info(
                    "coordinator_connected",
                    &[
                        ("endpoints", &self.etcd.endpoints().join(",")),
                        ("access", &self.etcd.access().describe()),
                        ("lease_ms", &self.ttl_ms()),
                    ],
                ),
                Action::Joined(joined) => {
                    match &joined {
                        Joined::Lead { epoch } => self.log_elected(*epoch),
                        Joined::Follow {
                            leader,
                            replication,
                        } => log::info(
                            "following_leader",
                            &[("leader", leader), ("replication", replication)],
                        ),
                    }
                    *self.joined.lock().expect("joined lock") = Some(joined);
                    self.changed.notify_all();
                }
                Action::Promote { epoch } => {
                    let Some((node, shared)) = &running else {
                        continue;
                    };
                    self.log_elected(epoch);
                    let asked = shared.clock.mono_ns();
                    let result = match node.role() {
                        Role::Primary => node.new_term(asked, PROMOTE_TIMEOUT, epoch),
                        _ => node.promote(asked, PROMOTE_TIMEOUT, Some(epoch)),
                    };
                    match result {
                        Ok(p) => log::info(
                            "promoted_by_election",
                            &[("epoch", &p.epoch), ("start_seq", &p.start_seq)],
                        ),
                        Err(e) => self.lost(node, &format!("promotion failed: {e}")),
                    }
                }
                Action::Lost(why) => match node {
                    Some(node) => self.lost(node, &why),
                    None => exit_to_rejoin(&why),
                },
                Action::Complain(e) => complain(&e),
                Action::Withheld(why) => {
                    log::line(Level::Warn, "campaign_withheld", None, &[("why", &why)])
                }
                Action::Revoked(lease) => {
                    log::info("coordinator_lease_revoked", &[("lease", &lease)])
                }
                // The node's own, when none is attached yet: nothing to apply them to.
                Action::Deadline(_)
                | Action::Reachable(_)
                | Action::Leading(_)
                | Action::Uncount(_)
                | Action::Count(_)
                | Action::SyncWritten { .. }
                | Action::SyncCleared => {}
            }
        }
    }

    fn ttl_ms(&self) -> u128 {
        let machine = self.machine.lock().expect("machine lock");
        machine.settings().ttl.as_millis()
    }

    fn log_elected(&self, epoch: u64) {
        log::line(
            Level::Warn,
            "elected",
            Some(repl_code(ReplicationCode::Elected)),
            &[("epoch", &epoch), ("node", &self.name)],
        );
    }

    /// What the machine needs of the node now.
    fn view(&self) -> View {
        let (local_epoch, local_seq) = *self.local.lock().expect("local lock");
        let running = self
            .attached
            .lock()
            .expect("attach lock")
            .clone()
            .filter(|(_, shared)| !shared.stop.load(SeqCst))
            .map(|(node, shared)| running_view(&node, &shared, self.replication_timeout));
        View {
            local_epoch,
            local_seq,
            running,
        }
    }

    /// A time on this thread's clock, on the server's (the machine runs on this thread's),
    /// a millisecond early for the conversion. 0 stays 0 (no lease).
    fn on_server_clock(&self, shared: &Shared, at_ns: u64) -> u64 {
        if at_ns == 0 {
            return 0;
        }
        let left = at_ns.saturating_sub(self.clock.mono_ns());
        (shared.clock.mono_ns() + left).saturating_sub(1_000_000)
    }

    /// Stop this node from acknowledging anything more and exit for a restart.
    fn lost(&self, node: &Node, why: &str) {
        if self.stopped.load(SeqCst) {
            return; // a clean stop revoked the lease: nothing was lost
        }
        node.lease().enabled.store(true, SeqCst);
        node.lease().deadline_ns.store(0, SeqCst);
        node.lease().leading.store(false, SeqCst);
        node.nudge();
        exit_to_rejoin(why);
    }
}

/// Carry out what the machine decided about the node itself (its lease deadline, whether
/// etcd answers, its standbys' count, the sync record); `false` for every other action
/// (calls, joins, promotions, exits: the driver's). `on_node_clock` moves a time on the
/// machine's clock to the node's.
pub fn apply_to_node(action: &Action, node: &Node, on_node_clock: &dyn Fn(u64) -> u64) -> bool {
    match action {
        Action::Deadline(deadline) => {
            node.lease()
                .deadline_ns
                .store(on_node_clock(deadline.at_ns), SeqCst);
            node.nudge();
        }
        Action::Reachable(yes) => {
            node.lease().reachable.store(*yes, SeqCst);
            if !yes {
                node.lease().unreachable_total.fetch_add(1, SeqCst);
            }
        }
        Action::Leading(yes) => node.lease().leading.store(*yes, SeqCst),
        Action::Uncount(slots) => count(node, slots, false),
        Action::Count(slots) => count(node, slots, true),
        Action::SyncWritten { members, epoch } => {
            log::info(
                "sync_standbys",
                &[
                    ("standbys", &members.join(",")),
                    ("needed", &node.policy().needed),
                    ("epoch", epoch),
                ],
            );
            node.lease().sync_cleared.store(members.is_empty(), SeqCst);
            node.nudge();
        }
        Action::SyncCleared => {
            if !node.lease().sync_cleared.swap(true, SeqCst) {
                node.nudge();
            }
        }
        _ => return false,
    }
    true
}

/// What the coordinator's machine needs of the running node.
pub fn running_view(node: &Node, shared: &Shared, replication_timeout: Duration) -> Running {
    let link = &node.follower().link;
    let now_ms = shared.clock.mono_ns() / 1_000_000;
    let heard_ago = now_ms.saturating_sub(link.heard_ms.load(SeqCst));
    let policy = &node.policy();
    Running {
        role: node.role(),
        epoch: node.epoch(),
        received_seq: node.follower().received_seq.load(SeqCst),
        primary_streams: link.connected.load(SeqCst)
            && heard_ago <= replication_timeout.as_millis() as u64,
        durable_seq: shared.release.durable(),
        released_seq: shared.release.bound(),
        synchronous: policy.synchronous,
        may_ack_alone: policy.degrade || policy.alone_ok.load(SeqCst),
        standby_detached: node.standby_state() == DETACHED,
        slots: node
            .standbys()
            .slots()
            .iter()
            .map(|s| SlotView {
                name: s.name(),
                synchronous: s.mode().synchronous(),
                state: s.state.load(SeqCst),
                acked: s.acked(),
                counts: s.counted.load(SeqCst) && s.mode().synchronous(),
            })
            .collect(),
    }
}

/// Whether these slots' acks count (named in the sync record, or not any more).
fn count(node: &Node, slots: &[usize], counts: bool) {
    for &i in slots {
        node.standbys().slots()[i].counted.store(counts, SeqCst);
    }
}

fn exit_to_rejoin(why: &str) -> ! {
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

fn complain(e: &EtcdError) {
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
