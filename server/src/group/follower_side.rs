//! The standby side of this node, as the rest of it sees it: the link to the primary, how
//! far it received, the comparison of rolling hashes, the intake that promotion closes, and
//! the restarts a failback or a snapshot asks for. The follower thread (`drivers/follower.rs`)
//! writes it; `Replicated` is one record on its way into the sequencer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Sender, TrySendError};
use engine::codec::{self, kind};
use engine::{Request, TimestampNs};
use replicator::checkpoints::{Comparer, Divergence};
use replicator::follower::{AckSignal, Link};
use replicator::ReplicationCode;

use crate::telemetry::log::repl_code;
use crate::telemetry::log::{self, Level};

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

/// A refusal of what the primary sent: its code and why.
pub type Refusal = (ReplicationCode, String);

/// Records `first..=last`, back to back as the primary journaled them, as requests for the
/// sequencer; refused when they do not decode or do not run `first..=last` one by one.
pub fn decode_records(first: u64, last: u64, bytes: &[u8]) -> Result<Vec<Replicated>, Refusal> {
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
    Ok(batch)
}

impl FollowerSide {
    /// Hand `batch` to the sequencer through `intake`, unless promotion closed the intake:
    /// what is handed over is published before the promotion completes, nothing after it.
    /// `Ok(Some(batch))`: the intake is full, try again.
    pub fn hand_over(
        &self,
        batch: Vec<Replicated>,
        intake: &Sender<Vec<Replicated>>,
    ) -> Result<Option<Vec<Replicated>>, Refusal> {
        let closed = self.intake_closed.lock().expect("intake lock");
        if *closed {
            return Err((ReplicationCode::NotPrimary, "promoted".into()));
        }
        let last = batch.last().map(|r| r.seq);
        match intake.try_send(batch) {
            Ok(()) => {
                if let Some(last) = last {
                    self.received_seq.store(last, SeqCst);
                }
                Ok(None)
            }
            Err(TrySendError::Full(batch)) => Ok(Some(batch)),
            Err(TrySendError::Disconnected(_)) => {
                Err((ReplicationCode::NotPrimary, "the gateway stopped".into()))
            }
        }
    }
}
