//! The engine's whole state as one plain value (`EngineSnapshot`), its rkyv encoding, and the
//! validated way back. Maps become sorted or FIFO-ordered vectors, so the same state always
//! encodes to the same bytes; derived indexes are rebuilt and cross-checked on restore.

use std::collections::VecDeque;

use crate::config::EngineConfig;
use crate::holdings::Holdings;
use crate::idempotency::{IdempotencyWindow, Session};
use crate::ids::{OrderId, SkuId, TimestampNs, UserId};
use crate::order::{Order, OrderBook, OrderState};
use crate::rolling_hash::RollingHash;
use crate::sku::{Catalog, Sku};
use crate::state_machine::Engine;

/// Bumped whenever the snapshot layout changes; a snapshot of another version is refused.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct EngineSnapshot {
    pub format_version: u32,
    pub config: EngineConfig,
    pub clock_ns: TimestampNs,
    pub hash: u64,
    pub commands_applied: u64,
    pub skus: Vec<Sku>,
    pub orders: Vec<Order>,
    pub holdings: Vec<(UserId, SkuId, u32)>,
    /// By client id.
    pub idempotency: Vec<Session>,
    pub deadlines: Vec<OrderId>,
    pub unreconciled_paid: Vec<OrderId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// The bytes are not a valid archive (truncated, corrupted, another format).
    Malformed(String),
    UnsupportedVersion(u32),
    /// The archive decoded but its contents contradict each other.
    Inconsistent(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Malformed(why) => write!(f, "snapshot is malformed: {why}"),
            SnapshotError::UnsupportedVersion(v) => write!(
                f,
                "snapshot format version {v} is not supported (this build reads {SNAPSHOT_FORMAT_VERSION})"
            ),
            SnapshotError::Inconsistent(why) => write!(f, "snapshot is inconsistent: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl EngineSnapshot {
    /// The archive, in a buffer sized for it up front: growing it by doubling re-copied
    /// gigabytes for a big state, and converting it to a `Vec` would copy it once more.
    pub fn to_bytes(&self) -> rkyv::util::AlignedVec<16> {
        let estimate = 4096
            + std::mem::size_of_val(self.skus.as_slice())
            + std::mem::size_of_val(self.orders.as_slice())
            + std::mem::size_of_val(self.holdings.as_slice())
            + std::mem::size_of_val(self.idempotency.as_slice())
            + std::mem::size_of_val(self.deadlines.as_slice())
            + std::mem::size_of_val(self.unreconciled_paid.as_slice());
        let buffer = rkyv::util::AlignedVec::<16>::with_capacity(estimate + estimate / 4);
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(self, buffer)
            .expect("serializing to memory cannot fail")
    }

    /// Decode and validate (every byte checked by bytecheck before use).
    pub fn from_bytes(bytes: &[u8]) -> Result<EngineSnapshot, SnapshotError> {
        // rkyv needs the archive aligned; a slice from a file or a mmap may not be.
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        let snapshot = rkyv::from_bytes::<EngineSnapshot, rkyv::rancor::Error>(&aligned)
            .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        if snapshot.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(snapshot.format_version));
        }
        Ok(snapshot)
    }
}

impl Engine {
    /// Copy the whole state out. O(state): take it on a replica, not on the hot engine.
    pub fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            config: self.config,
            clock_ns: self.clock_ns,
            hash: self.hash.value(),
            commands_applied: self.commands_applied,
            skus: self.catalog.skus().to_vec(),
            orders: self.orders.as_slice().to_vec(),
            holdings: self.holdings.to_sorted_vec(),
            idempotency: self.idempotency.sessions(),
            deadlines: self.deadlines.iter().copied().collect(),
            unreconciled_paid: self.unreconciled_paid.iter().copied().collect(),
        }
    }

    /// Rebuild an engine from a snapshot, checking that its parts agree.
    pub fn restore(snapshot: EngineSnapshot) -> Result<Engine, SnapshotError> {
        let inconsistent = |why: &str| SnapshotError::Inconsistent(why.to_string());
        if snapshot.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(snapshot.format_version));
        }
        let mut skus = snapshot.skus;
        for sku in &mut skus {
            sku.waitlist.rebuild_index().map_err(inconsistent)?;
        }
        let catalog = Catalog::from_skus(skus).map_err(inconsistent)?;
        let orders = OrderBook::from_orders(snapshot.orders);
        let pending = |id: &OrderId| orders.get(*id).is_some();
        if !snapshot.deadlines.iter().all(pending)
            || !snapshot.unreconciled_paid.iter().all(pending)
        {
            return Err(inconsistent("a queue names an unknown order"));
        }
        let idempotency = IdempotencyWindow::restore(
            snapshot.config.idempotency_window,
            snapshot.config.clients_max,
            snapshot.idempotency,
        )
        .map_err(inconsistent)?;
        let every_pending_has_a_deadline = {
            let queued: std::collections::BTreeSet<_> = snapshot.deadlines.iter().collect();
            orders
                .iter()
                .filter(|(_, o)| o.state == OrderState::PendingPayment)
                .all(|(id, _)| queued.contains(&id))
        };
        if !every_pending_has_a_deadline {
            return Err(inconsistent("a pending order has no deadline"));
        }
        let engine = Engine {
            config: snapshot.config,
            clock_ns: snapshot.clock_ns,
            catalog,
            orders,
            holdings: Holdings::from_entries(&snapshot.holdings).map_err(inconsistent)?,
            idempotency,
            deadlines: VecDeque::from(snapshot.deadlines),
            unreconciled_paid: VecDeque::from(snapshot.unreconciled_paid),
            hash: RollingHash(snapshot.hash),
            commands_applied: snapshot.commands_applied,
        };
        engine
            .check_invariants()
            .map_err(SnapshotError::Inconsistent)?;
        Ok(engine)
    }
}
