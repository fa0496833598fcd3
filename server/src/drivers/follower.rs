//! The standby's side of replication. A follower thread keeps a session with the primary
//! (handshake, records, checkpoints), hands each record to the gateway (the ring's one
//! producer) as a request stamped with the primary's timestamp, and reconnects when the
//! primary goes away. With `failover = "auto"` it promotes this node once a primary it
//! followed has been silent past the timeout. The session's decisions are
//! `replicator::follower::machine`'s; `group::follower_side` is what the rest of the node
//! sees of it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use replicator::follower::{self, Ended, Follower, Sink, StandbyNode};
use replicator::ReplicationCode;

use crate::group::follower_side::{decode_records, Replicated};
use crate::group::node::Node;
use crate::group::role::Role;
use crate::pipeline::shared::{Shared, Wake};
use crate::telemetry::log::repl_code;
use crate::telemetry::log::{self, Level};

/// How long the sink waits for the gateway to take a batch before it looks again.
const INTAKE_RETRY: Duration = Duration::from_micros(100);
/// How long automatic failover waits for the gateway to complete the promotion.
const AUTO_PROMOTE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct FollowerThread {
    pub primary: SocketAddr,
    pub settings: replicator::Settings,
    /// TCP, or TLS (`replication.tls_*`).
    pub dialer: Arc<dyn replicator::net::Dialer>,
    pub name: String,
    pub auto_failover: bool,
    /// The engine configuration record's payload, to compare with the primary's.
    pub config: Vec<u8>,
    pub node: Arc<Node>,
    pub shared: Arc<Shared>,
    pub wake: Arc<Wake>,
    pub intake: Sender<Vec<Replicated>>,
    /// The data directory (a snapshot from the primary is staged there).
    pub dir: std::path::PathBuf,
}

/// The node as a session sees it.
struct Standing {
    node: Arc<Node>,
    shared: Arc<Shared>,
    primary: SocketAddr,
}

/// What the follower's machine needs of `node` now: its epochs, whether it still follows,
/// and how far it has received, made durable and applied (with the hash there). The thread
/// here and the simulator's stepped node read it the same way.
pub fn standing_of(node: &Node, shared: &Shared) -> follower::Standing {
    let received = node.follower().received_seq.load(SeqCst);
    follower::Standing {
        epochs: node.epochs(),
        follows: node.role() == Role::Standby && !node.follower().stopped(),
        received,
        durable: shared.release.durable(),
        applied: shared.metrics.applied_seq.load(SeqCst),
        hash: node.checkpoints().hash_at(received).unwrap_or(0),
    }
}

impl StandbyNode for Standing {
    fn standing(&self) -> follower::Standing {
        standing_of(&self.node, &self.shared)
    }

    fn adopt(
        &self,
        epoch: u64,
        history: &[(u64, u64)],
        _config: &[u8],
    ) -> std::io::Result<Result<(), String>> {
        self.node.adopt(epoch, history)
    }

    fn following(&self, epoch: u64, from_seq: u64, primary_last_seq: u64) {
        log::info(
            "following",
            &[
                ("primary", &self.primary),
                ("epoch", &epoch),
                ("from_seq", &from_seq),
                ("primary_last_seq", &primary_last_seq),
            ],
        );
    }
}

impl FollowerThread {
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("surge-follower".into())
            .spawn(move || self.run())
    }

    fn run(self) {
        let node = &self.node;
        let side = &node.follower();
        let follower = Follower::new(
            self.settings.clone(),
            self.name.clone(),
            self.config.clone(),
            side.link.clone(),
            self.shared.clock.clone(),
            side.stop_flag.clone(),
            side.ack_signal.clone(),
        );
        let standing = Standing {
            node: node.clone(),
            shared: self.shared.clone(),
            primary: self.primary,
        };
        let mut sink = GatewaySink {
            node: node.clone(),
            wake: self.wake.clone(),
            intake: self.intake.clone(),
            dir: crate::checkpoint::data_dir::DataDir::new(&self.dir),
        };
        let mut last_complaint = String::new();
        loop {
            if side.stopped() || self.shared.stop.load(SeqCst) {
                return;
            }
            let silent = follower.heard_ms_ago();
            if self.auto_failover
                && side.link.followed.load(SeqCst)
                && silent > self.settings.timeout.as_millis() as u64
                && node.role() == Role::Standby
            {
                log::line(
                    Level::Warn,
                    "auto_failover",
                    Some(repl_code(ReplicationCode::AutoPromoted)),
                    &[("primary", &self.primary), ("silent_ms", &silent)],
                );
                let now_ns = self.shared.clock.mono_ns();
                if let Err(e) = node.promote(now_ns, AUTO_PROMOTE_TIMEOUT, None) {
                    log::line(Level::Error, "auto_failover_failed", None, &[("error", &e)]);
                }
                return;
            }
            let ended = follower.session(self.dialer.as_ref(), self.primary, &standing, &mut sink);
            match ended {
                Ended::Halted => return,
                Ended::Truncate(seq) => {
                    log::line(
                        Level::Warn,
                        "standby_rejoin_truncate",
                        None,
                        &[
                            ("truncate_to", &seq),
                            ("detail", &"restarting to cut the journal"),
                        ],
                    );
                    *side.truncate_to.lock().expect("node lock") = Some(seq);
                    self.shared.draining.store(true, SeqCst);
                    return;
                }
                Ended::Snapshot(seq) => {
                    log::line(
                        Level::Warn,
                        "standby_restart_from_snapshot",
                        None,
                        &[
                            ("snapshot_seq", &seq),
                            (
                                "detail",
                                &"too far behind to follow: restarting from the primary's snapshot",
                            ),
                        ],
                    );
                    *side.snapshot_to.lock().expect("node lock") = Some(seq);
                    self.shared.draining.store(true, SeqCst);
                    return;
                }
                Ended::Stopped(code, why) => {
                    log::line(
                        Level::Error,
                        "standby_stopped",
                        Some(repl_code(code)),
                        &[("why", &why)],
                    );
                    return;
                }
                Ended::Refused(code, why) => complain(
                    &mut last_complaint,
                    Level::Warn,
                    "primary_refused",
                    Some(code),
                    &why,
                ),
                Ended::StalePrimary { primary_epoch } => complain(
                    &mut last_complaint,
                    Level::Warn,
                    "stale_primary_ignored",
                    Some(ReplicationCode::StaleEpoch),
                    &format!(
                        "{} is at epoch {primary_epoch}, this node at {} (or its history does \
                         not continue this node's): it is told this node's epoch and not followed",
                        self.primary,
                        node.epoch()
                    ),
                ),
                Ended::Lost(why) => complain(
                    &mut last_complaint,
                    Level::Warn,
                    "primary_unreachable",
                    Some(ReplicationCode::PrimaryUnreachable),
                    &why,
                ),
            }
        }
    }
}

/// Log a reason to retry once, not once per retry.
fn complain(
    last: &mut String,
    level: Level,
    event: &str,
    code: Option<ReplicationCode>,
    why: &str,
) {
    let key = format!("{event}:{}", why.split(':').next().unwrap_or(why));
    if *last != key {
        log::line(level, event, code.map(repl_code), &[("why", &why)]);
        *last = key;
    }
}

struct GatewaySink {
    node: Arc<Node>,
    wake: Arc<Wake>,
    intake: Sender<Vec<Replicated>>,
    dir: crate::checkpoint::data_dir::DataDir,
}

type Refusal = (ReplicationCode, String);

impl Sink for GatewaySink {
    fn records(&mut self, first: u64, last: u64, bytes: &[u8]) -> Result<(), Refusal> {
        let mut batch = decode_records(first, last, bytes)?;
        let side = &self.node.follower();
        loop {
            match side.hand_over(batch, &self.intake)? {
                None => break,
                Some(full) => {
                    batch = full;
                    self.wake.nudge();
                    std::thread::sleep(INTAKE_RETRY);
                }
            }
        }
        self.wake.nudge();
        Ok(())
    }

    fn snapshot_piece(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Refusal> {
        self.dir
            .stage_snapshot_piece(offset, bytes)
            .map_err(|e| (ReplicationCode::BadFrame, e.to_string()))
    }

    fn checkpoint(&mut self, seq: u64, hash: u64) -> Result<(), Refusal> {
        match self.node.follower().comparer.theirs(seq, hash) {
            Ok(()) => Ok(()),
            Err(d) => {
                self.node.follower().diverge(d);
                Err((
                    ReplicationCode::Diverged,
                    format!("rolling hash differs at {seq}"),
                ))
            }
        }
    }
}
