//! The standby's follower: a thread that keeps a session with the primary (handshake,
//! records, checkpoints), hands each record to the gateway (the ring's one producer) as a
//! request stamped with the primary's timestamp, and reconnects when the primary goes away.
//! With `failover = "auto"` it promotes this node once a primary it followed has been
//! silent past the timeout.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use engine::codec::{self, kind};
use engine::{Request, TimestampNs};
use replicator::follower::{self, Ended, Follower, Hello, Progress, Sink};
use replicator::ReplicationCode;

use super::log::{self, Level};
use super::node::{repl_code, Node, Role};
use super::{Shared, Wake};

/// One replicated command, as the gateway publishes it.
pub struct Replicated {
    pub timestamp_ns: TimestampNs,
    pub request: Request,
}

/// Batches of replicated commands waiting for the gateway, at most.
pub const INTAKE_BATCHES: usize = 64;
/// How long the sink waits for the gateway to take a batch before it looks again.
const INTAKE_RETRY: Duration = Duration::from_micros(100);

pub struct FollowerThread {
    pub primary: SocketAddr,
    pub settings: replicator::Settings,
    pub name: String,
    pub auto_failover: bool,
    /// The engine configuration record's payload, to compare with the primary's.
    pub config: Vec<u8>,
    pub node: Arc<Node>,
    pub shared: Arc<Shared>,
    pub wake: Arc<Wake>,
    pub intake: Sender<Vec<Replicated>>,
}

struct Counters {
    node: Arc<Node>,
    shared: Arc<Shared>,
}

impl Progress for Counters {
    fn received(&self) -> u64 {
        self.node.received_seq.load(SeqCst)
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
        let follower = Follower {
            settings: self.settings.clone(),
            link: node.link.clone(),
            clock: Instant::now(),
            stop: node.stop_following.clone(),
            progress: Arc::new(Counters {
                node: node.clone(),
                shared: self.shared.clone(),
            }),
            signal: node.ack_signal.clone(),
        };
        let mut sink = GatewaySink {
            node: node.clone(),
            wake: self.wake.clone(),
            intake: self.intake.clone(),
        };
        let mut last_complaint = String::new();
        let retry = self.settings.heartbeat;
        loop {
            if node.stop_following.load(SeqCst) || self.shared.stop.load(SeqCst) {
                return;
            }
            let silent = follower.heard_ms_ago();
            if self.auto_failover
                && node.link.followed.load(SeqCst)
                && silent > self.settings.timeout.as_millis() as u64
                && node.role() == Role::Standby
            {
                log::line(
                    Level::Warn,
                    "auto_failover",
                    Some(repl_code(ReplicationCode::AutoPromoted)),
                    &[("primary", &self.primary), ("silent_ms", &silent)],
                );
                if let Err(e) = node.promote(Duration::from_secs(5)) {
                    log::line(Level::Error, "auto_failover_failed", None, &[("error", &e)]);
                }
                return;
            }
            let last_seq = node.received_seq.load(SeqCst);
            let hello = Hello {
                node: self.name.clone(),
                epochs: node.epochs(),
                last_seq,
                hash: node.checkpoints.hash_at(last_seq).unwrap_or(0),
            };
            let ended = match follower::handshake(self.primary, &self.settings, &hello) {
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
                    if let Err(e) = node.adopt(accepted.epoch, &accepted.history) {
                        log::line(Level::Error, "epoch_store_failed", None, &[("error", &e)]);
                        return;
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
                    *node.truncate_to.lock().expect("node lock") = Some(seq);
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
            let closed = self.node.intake.lock().expect("intake lock");
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
        self.node.received_seq.store(last, SeqCst);
        self.wake.nudge();
        Ok(())
    }

    fn checkpoint(&mut self, seq: u64, hash: u64) -> Result<(), Refusal> {
        match self.node.comparer.theirs(seq, hash) {
            Ok(()) => Ok(()),
            Err(d) => {
                self.node.diverge(d);
                Err((
                    ReplicationCode::Diverged,
                    format!("rolling hash differs at {seq}"),
                ))
            }
        }
    }
}
