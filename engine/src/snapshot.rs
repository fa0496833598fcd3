//! The engine's whole state as one plain value (`EngineSnapshot`), its rkyv encoding, and the
//! validated way back. Maps become sorted or FIFO-ordered vectors, so the same state always
//! encodes to the same bytes; derived indexes are rebuilt and cross-checked on restore.

use crate::config::EngineConfig;
use crate::holdings::{Holding, Holdings};
use crate::idempotency::{IdempotencyWindow, Session};
use crate::ids::TimestampNs;
use crate::order::{Order, OrderBook};
use crate::retired::{RetiredOrder, RetiredOrders};
use crate::rolling_hash::RollingHash;
use crate::sku::{Catalog, Sku};
use crate::state_machine::Engine;

/// Bumped whenever the snapshot layout changes; a snapshot of another version is refused.
/// 2: orders retire (open and closed chains, the retired ring), holdings carry stamps.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;

#[derive(Clone, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct EngineSnapshot {
    pub format_version: u32,
    pub config: EngineConfig,
    pub clock_ns: TimestampNs,
    pub hash: u64,
    pub commands_applied: u64,
    pub skus: Vec<Sku>,
    pub next_order_id: u64,
    /// Open orders, earliest deadline first.
    pub open_orders: Vec<Order>,
    /// Closed orders not yet retired, in closing order.
    pub closed_orders: Vec<Order>,
    /// Retired records, oldest first; `retired_total` retirements ever.
    pub retired: Vec<RetiredOrder>,
    pub retired_total: u64,
    pub reconcile_from: u64,
    pub evicted_unreconciled: u64,
    /// The holdings table exactly: (slot, entry), and the sweep's cursor.
    pub holdings: Vec<(u32, Holding)>,
    pub holdings_cursor: u32,
    pub holdings_resets: u32,
    /// By client id.
    pub idempotency: Vec<Session>,
    pub waitlist_entries: u64,
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
        let sessions: usize = self
            .idempotency
            .iter()
            .map(|s| 64 + std::mem::size_of_val(s.remembered.as_slice()))
            .sum();
        let estimate = 4096
            + std::mem::size_of_val(self.skus.as_slice())
            + std::mem::size_of_val(self.open_orders.as_slice())
            + std::mem::size_of_val(self.closed_orders.as_slice())
            + std::mem::size_of_val(self.retired.as_slice())
            + std::mem::size_of_val(self.holdings.as_slice())
            + sessions;
        let buffer = rkyv::util::AlignedVec::<16>::with_capacity(estimate + estimate / 4);
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(self, buffer)
            .expect("serializing to memory cannot fail")
    }

    /// Decode and validate (every byte checked by bytecheck before use).
    pub fn from_bytes(bytes: &[u8]) -> Result<EngineSnapshot, SnapshotError> {
        let snapshot = with_aligned(bytes, |aligned| {
            rkyv::from_bytes::<EngineSnapshot, rkyv::rancor::Error>(aligned)
        })
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
        let (holdings, holdings_cursor) = self.holdings.image();
        EngineSnapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            config: self.config,
            clock_ns: self.clock_ns,
            hash: self.hash.value(),
            commands_applied: self.commands_applied,
            skus: self.catalog.skus().to_vec(),
            next_order_id: self.orders.next_id().0,
            open_orders: self.orders.open_orders().cloned().collect(),
            closed_orders: self.orders.closed_orders().cloned().collect(),
            retired: self.retired.iter().copied().collect(),
            retired_total: self.retired.retired_total(),
            reconcile_from: self.retired.reconcile_from(),
            evicted_unreconciled: self.retired.evicted_unreconciled,
            holdings,
            holdings_cursor,
            holdings_resets: self.holdings_resets,
            idempotency: self.idempotency.sessions(),
            waitlist_entries: self.waitlist_entries,
        }
    }

    /// Rebuild an engine from a snapshot, checking that its parts agree.
    pub fn restore(snapshot: EngineSnapshot) -> Result<Engine, SnapshotError> {
        Engine::assemble(Parts {
            format_version: snapshot.format_version,
            config: snapshot.config,
            clock_ns: snapshot.clock_ns,
            hash: snapshot.hash,
            commands_applied: snapshot.commands_applied,
            skus: snapshot.skus,
            next_order_id: snapshot.next_order_id,
            open_orders: snapshot.open_orders.into_iter(),
            closed_orders: snapshot.closed_orders.into_iter(),
            retired: snapshot.retired.into_iter(),
            retired_total: snapshot.retired_total,
            reconcile_from: snapshot.reconcile_from,
            evicted_unreconciled: snapshot.evicted_unreconciled,
            holdings: snapshot.holdings.iter().copied(),
            holdings_cursor: snapshot.holdings_cursor,
            holdings_resets: snapshot.holdings_resets,
            idempotency: snapshot.idempotency,
            waitlist_entries: snapshot.waitlist_entries,
        })
    }

    /// Rebuild an engine from a snapshot's bytes (validated first, every byte), reading each
    /// order and record out of the archive straight into its table: no `EngineSnapshot` is
    /// built in between (for a big state that copy was a quarter of a restart).
    pub fn restore_from_bytes(bytes: &[u8]) -> Result<Engine, SnapshotError> {
        with_aligned(bytes, Engine::restore_from_aligned)
    }

    fn restore_from_aligned(aligned: &[u8]) -> Result<Engine, SnapshotError> {
        let a = rkyv::access::<ArchivedEngineSnapshot, rkyv::rancor::Error>(aligned)
            .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        fn out<T: rkyv::Archive>(archived: &T::Archived) -> T
        where
            T::Archived:
                rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
        {
            rkyv::deserialize::<T, rkyv::rancor::Error>(archived)
                .expect("a validated archive deserializes")
        }
        Engine::assemble(Parts {
            format_version: a.format_version.to_native(),
            config: out::<EngineConfig>(&a.config),
            clock_ns: a.clock_ns.to_native(),
            hash: a.hash.to_native(),
            commands_applied: a.commands_applied.to_native(),
            skus: out::<Vec<Sku>>(&a.skus),
            next_order_id: a.next_order_id.to_native(),
            open_orders: a.open_orders.iter().map(out::<Order>),
            closed_orders: a.closed_orders.iter().map(out::<Order>),
            retired: a.retired.iter().map(out::<RetiredOrder>),
            retired_total: a.retired_total.to_native(),
            reconcile_from: a.reconcile_from.to_native(),
            evicted_unreconciled: a.evicted_unreconciled.to_native(),
            holdings: a.holdings.iter().map(out::<(u32, Holding)>),
            holdings_cursor: a.holdings_cursor.to_native(),
            holdings_resets: a.holdings_resets.to_native(),
            idempotency: out::<Vec<Session>>(&a.idempotency),
            waitlist_entries: a.waitlist_entries.to_native(),
        })
    }

    fn assemble<O, C, R, H>(p: Parts<O, C, R, H>) -> Result<Engine, SnapshotError>
    where
        O: ExactSizeIterator<Item = Order>,
        C: ExactSizeIterator<Item = Order>,
        R: ExactSizeIterator<Item = RetiredOrder> + Send,
        H: ExactSizeIterator<Item = (u32, Holding)> + Clone,
    {
        let inconsistent = |why: &str| SnapshotError::Inconsistent(why.to_string());
        if p.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(p.format_version));
        }
        let config = p.config;
        let mut skus = p.skus;
        for sku in &mut skus {
            sku.waitlist.rebuild_index().map_err(inconsistent)?;
            if sku.holdings_since > p.holdings_resets {
                return Err(inconsistent("a SKU's holdings stamp is from the future"));
            }
        }
        let catalog = Catalog::from_skus(skus, config.skus_max as usize).map_err(inconsistent)?;
        // The book and the retired ring are independent: rebuilt side by side.
        let (retired, orders) = std::thread::scope(|scope| {
            let retired = scope.spawn(|| {
                RetiredOrders::restore(
                    config.orders_retired_max,
                    p.retired,
                    p.retired_total,
                    p.reconcile_from,
                    p.evicted_unreconciled,
                )
            });
            let orders = OrderBook::restore(
                config.orders_max,
                p.next_order_id,
                p.open_orders,
                p.closed_orders,
            );
            (
                retired.join().expect("restoring the retired ring panicked"),
                orders,
            )
        });
        let (orders, retired) = (
            orders.map_err(inconsistent)?,
            retired.map_err(inconsistent)?,
        );
        if retired.iter().any(|r| orders.get(r.id).is_some()) {
            return Err(inconsistent("an order is both held and retired"));
        }
        let idempotency = IdempotencyWindow::restore(
            config.idempotency_window,
            config.clients_max,
            p.idempotency,
        )
        .map_err(inconsistent)?;
        let holdings =
            Holdings::from_image(config.holdings_max as usize, p.holdings, p.holdings_cursor)
                .map_err(inconsistent)?;
        let engine = Engine {
            config,
            clock_ns: p.clock_ns,
            catalog,
            orders,
            retired,
            holdings,
            holdings_resets: p.holdings_resets,
            idempotency,
            waitlist_entries: p.waitlist_entries,
            hash: RollingHash(p.hash),
            commands_applied: p.commands_applied,
            checkpoint: Default::default(),
        };
        engine
            .check_invariants()
            .map_err(SnapshotError::Inconsistent)?;
        Ok(engine)
    }
}

/// A snapshot's parts as `Engine::assemble` takes them: the big tables as iterators, so
/// they can come from an owned image or straight out of an archive.
struct Parts<O, C, R, H> {
    format_version: u32,
    config: EngineConfig,
    clock_ns: TimestampNs,
    hash: u64,
    commands_applied: u64,
    skus: Vec<Sku>,
    next_order_id: u64,
    open_orders: O,
    closed_orders: C,
    retired: R,
    retired_total: u64,
    reconcile_from: u64,
    evicted_unreconciled: u64,
    holdings: H,
    holdings_cursor: u32,
    holdings_resets: u32,
    idempotency: Vec<Session>,
    waitlist_entries: u64,
}

/// Run `f` on `bytes` aligned as rkyv needs them: a mapped file's payload already is (it
/// starts 64 bytes into a page); anything else is copied first.
pub(crate) fn with_aligned<R>(bytes: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    if (bytes.as_ptr() as usize).is_multiple_of(16) {
        return f(bytes);
    }
    let mut copy = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    copy.extend_from_slice(bytes);
    f(&copy)
}
