//! The standby's side of replication. A follower thread keeps a session with the primary
//! (handshake, records, checkpoints), hands each record to the gateway (the ring's one
//! producer) as a request stamped with the primary's timestamp, and reconnects when the
//! primary goes away. With `failover = "auto"` it promotes this node once a primary it
//! followed has been silent past the timeout. `FollowerSide` is what the rest of the node
//! sees of it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use engine::codec::{self, kind};
use engine::{Request, TimestampNs};
use replicator::checkpoints::{Comparer, Divergence};
use replicator::follower::{self, AckSignal, Ended, Follower, Hello, Link, Progress, Sink};
use replicator::ReplicationCode;

use crate::node::{repl_code, Node};
use crate::ops::log::{self, Level};
use crate::promotion::Promotion;
use crate::role::Role;
use crate::shared::{Shared, Wake};

/// The standby side of the node: written by the follower thread, read by the rest.
#[derive(Default)]
pub struct FollowerSide {
    /// The link to the primary (its last sequences, whether it is connected).
    pub link: Arc<Link>,
    /// Set to end the session (promotion, divergence, shutdown).
    pub stop_flag: Arc<AtomicBool>,
    /// Pokes the acker when received, durable or applied moved.
    pub ack_signal: Arc<AckSignal>,
    /// Sequences handed to this standby's pipeline.
    pub received_seq: AtomicU64,
    /// The primary's checkpoints against this engine's.
    pub comparer: Comparer,
    pub diverged: AtomicBool,
    /// Taken by the follower while it hands records to the gateway; promotion sets it to
    /// closed, after which nothing more is handed over.
    pub intake_closed: Mutex<bool>,
    /// Set when a failback needs this node's journal cut after the given sequence.
    pub truncate_to: Mutex<Option<u64>>,
    /// Set when the primary sent a snapshot (staged in the data directory) to start over
    /// from, at the given sequence.
    pub snapshot_to: Mutex<Option<u64>>,
}

impl FollowerSide {
    pub fn stop(&self) {
        self.stop_flag.store(true, SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.stop_flag.load(SeqCst)
    }

    pub fn diverge(&self, d: Divergence) {
        if self.diverged.swap(true, SeqCst) {
            return;
        }
        log::line(
            Level::Error,
            "replication_diverged",
            Some(repl_code(ReplicationCode::Diverged)),
            &[
                ("seq", &d.seq),
                ("primary_hash", &format!("{:#018x}", d.primary)),
                ("standby_hash", &format!("{:#018x}", d.standby)),
                (
                    "detail",
                    &"the standby's state differs from the primary's; it stops following",
                ),
            ],
        );
        self.stop();
        self.link.fence_and_close(0);
    }
}

/// One replicated command, as the sequencer publishes it.
pub struct Replicated {
    /// The primary's sequence for it (this node's journal must give it the same).
    pub seq: u64,
    pub timestamp_ns: TimestampNs,
    pub request: Request,
}

/// Batches of replicated commands waiting for the gateway, at most.
pub const INTAKE_BATCHES: usize = 64;
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

struct Counters {
    node: Arc<Node>,
    shared: Arc<Shared>,
}

impl Progress for Counters {
    fn received(&self) -> u64 {
        self.node.follower.received_seq.load(SeqCst)
    }
    fn durable(&self) -> u64 {
        self.shared.metrics.durable_seq.load(SeqCst)
    }
    fn applied(&self) -> u64 {
        self.shared.metrics.applied_seq.load(SeqCst)
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
        let side = &node.follower;
        let follower = Follower {
            settings: self.settings.clone(),
            link: side.link.clone(),
            clock: self.shared.clock.clone(),
            stop: side.stop_flag.clone(),
            progress: Arc::new(Counters {
                node: node.clone(),
                shared: self.shared.clone(),
            }),
            signal: side.ack_signal.clone(),
        };
        let mut sink = GatewaySink {
            node: node.clone(),
            wake: self.wake.clone(),
            intake: self.intake.clone(),
            dir: crate::data_dir::DataDir::new(&self.dir),
        };
        let mut last_complaint = String::new();
        let retry = self.settings.heartbeat;
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
                if let Err(e) = Promotion::ask(node, now_ns, AUTO_PROMOTE_TIMEOUT) {
                    log::line(Level::Error, "auto_failover_failed", None, &[("error", &e)]);
                }
                return;
            }
            let last_seq = side.received_seq.load(SeqCst);
            let hello = Hello {
                node: self.name.clone(),
                epochs: node.epochs.get(),
                last_seq,
                hash: node.checkpoints.hash_at(last_seq).unwrap_or(0),
            };
            let ended = match follower::handshake(
                self.dialer.as_ref(),
                self.primary,
                &self.settings,
                &hello,
            ) {
                Ok((stream, accepted)) => {
                    if accepted.config != self.config {
                        log::line(
                            Level::Error,
                            "standby_stopped",
                            Some(repl_code(ReplicationCode::ConfigMismatch)),
                            &[(
                                "detail",
                                &"the primary's engine configuration differs from this journal's",
                            )],
                        );
                        return;
                    }
                    match node.adopt(accepted.epoch, &accepted.history) {
                        Ok(Ok(())) => {}
                        Ok(Err(why)) => {
                            // A handshake begun before a promotion, or a primary that would
                            // move this node back: tell it this node's epoch, never follow.
                            let mut stream = stream;
                            follower::refuse_primary(&mut stream, node.epoch());
                            complain(
                                &mut last_complaint,
                                Level::Warn,
                                "stale_primary_ignored",
                                Some(ReplicationCode::StaleEpoch),
                                &format!("{}: {why}", self.primary),
                            );
                            if node.role() != Role::Standby || side.stopped() {
                                return;
                            }
                            std::thread::sleep(retry);
                            continue;
                        }
                        Err(e) => {
                            log::line(Level::Error, "epoch_store_failed", None, &[("error", &e)]);
                            return;
                        }
                    }
                    log::info(
                        "following",
                        &[
                            ("primary", &self.primary),
                            ("epoch", &accepted.epoch),
                            ("from_seq", &(last_seq + 1)),
                            ("primary_last_seq", &accepted.primary_last_seq),
                        ],
                    );
                    last_complaint.clear();
                    follower.follow(stream, &mut sink)
                }
                Err(ended) => ended,
            };
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
                        "{} is at epoch {primary_epoch}, this node at {}",
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
            std::thread::sleep(retry);
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
    dir: crate::data_dir::DataDir,
}

type Refusal = (ReplicationCode, String);

impl Sink for GatewaySink {
    fn records(&mut self, first: u64, last: u64, bytes: &[u8]) -> Result<(), Refusal> {
        let mut batch = Vec::with_capacity((last - first + 1) as usize);
        let mut offset = 0;
        let mut seq = first;
        while offset < bytes.len() {
            let record = journal::format::decode_record(&bytes[offset..])
                .map_err(|e| (ReplicationCode::BadFrame, format!("record {seq}: {e:?}")))?;
            if record.seq != seq {
                return Err((
                    ReplicationCode::SequenceGap,
                    format!("record {} where {seq} comes next", record.seq),
                ));
            }
            if record.kind == kind::ENGINE_CONFIG {
                return Err((
                    ReplicationCode::BadFrame,
                    "a configuration record in the stream".into(),
                ));
            }
            let request = codec::decode_request(record.payload)
                .map_err(|e| (ReplicationCode::BadFrame, format!("record {seq}: {e}")))?;
            batch.push(Replicated {
                seq,
                timestamp_ns: record.timestamp_ns,
                request,
            });
            offset += record.total_len;
            seq += 1;
        }
        if seq != last + 1 {
            return Err((
                ReplicationCode::SequenceGap,
                format!("records end at {} not {last}", seq - 1),
            ));
        }
        // Hand over unless promotion closed the intake: what is handed over is published
        // before the promotion completes; nothing is handed over after it.
        loop {
            let closed = self
                .node
                .follower
                .intake_closed
                .lock()
                .expect("intake lock");
            if *closed {
                return Err((ReplicationCode::NotPrimary, "promoted".into()));
            }
            match self.intake.try_send(batch) {
                Ok(()) => break,
                Err(TrySendError::Full(b)) => {
                    batch = b;
                    drop(closed);
                    self.wake.nudge();
                    std::thread::sleep(INTAKE_RETRY);
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err((ReplicationCode::NotPrimary, "the gateway stopped".into()))
                }
            }
        }
        self.node.follower.received_seq.store(last, SeqCst);
        self.wake.nudge();
        Ok(())
    }

    fn snapshot_piece(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Refusal> {
        self.dir
            .stage_snapshot_piece(offset, bytes)
            .map_err(|e| (ReplicationCode::BadFrame, e.to_string()))
    }

    fn checkpoint(&mut self, seq: u64, hash: u64) -> Result<(), Refusal> {
        match self.node.follower.comparer.theirs(seq, hash) {
            Ok(()) => Ok(()),
            Err(d) => {
                self.node.follower.diverge(d);
                Err((
                    ReplicationCode::Diverged,
                    format!("rolling hash differs at {seq}"),
                ))
            }
        }
    }
}
