//! An engine rebuilt from checkpoints: the frames of a chain's newest checkpoint, then of
//! each one before it back to a full one (the first frame to name a chunk wins; later ones
//! are not decoded), then the newest head. The derived indexes (order and retired ids, clients, SKU ids, waitlist users) are rebuilt from the
//! tables, every cross-reference is checked, and the engine's invariants must hold.

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::de::Pool;
use rkyv::rancor::{Error, Strategy};

use super::{EngineHead, Progress, TableId};
use crate::config::EngineConfig;
use crate::rolling_hash::RollingHash;
use crate::snapshot::SnapshotError;
use crate::state_machine::Engine;
use crate::tracked::Tracked;

pub struct Restorer {
    engine: Engine,
}

impl Restorer {
    /// An engine of `config` (every table allocated, none touched) to restore into.
    pub fn new(config: EngineConfig) -> Restorer {
        Restorer {
            engine: Engine::new(config),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.engine.config
    }

    /// Put one frame's elements into its table, unless a newer checkpoint's frame already
    /// did (checkpoints are applied newest first: the chain's newest, then its parent, back
    /// to the full one); false then, and the payload is not even decoded.
    pub fn apply(
        &mut self,
        table: u16,
        chunk: u32,
        elements: u32,
        payload: &[u8],
    ) -> Result<bool, SnapshotError> {
        let e = &mut self.engine;
        let table = TableId::from_u16(table)
            .ok_or_else(|| SnapshotError::Malformed(format!("unknown table {table}")))?;
        let put = match table {
            TableId::Orders => put(e.orders.tables().0, chunk, elements, payload),
            TableId::OrderLinks => put(e.orders.tables().1, chunk, elements, payload),
            TableId::OrderFree => put(e.orders.tables().2, chunk, elements, payload),
            TableId::Retired => put(e.retired.table(), chunk, elements, payload),
            TableId::Holdings => put(e.holdings.table(), chunk, elements, payload),
            TableId::Remembered => put(e.idempotency.tables().0, chunk, elements, payload),
            TableId::Tenants => put(e.idempotency.tables().1, chunk, elements, payload),
            TableId::TenantsFree => put(e.idempotency.tables().2, chunk, elements, payload),
            TableId::Skus => put(e.catalog.table(), chunk, elements, payload),
        }
        .map_err(|why| {
            SnapshotError::Malformed(format!("{} chunk {chunk}: {why}", table.name()))
        })?;
        Ok(put)
    }

    /// Every frame is in: take the newest head's scalars, rebuild the indexes, check it all.
    pub fn finish(mut self, head: &EngineHead) -> Result<Engine, SnapshotError> {
        let inconsistent = |why: &str| SnapshotError::Inconsistent(why.to_string());
        if head.config != self.engine.config {
            return Err(inconsistent(
                "the checkpoint's engine config differs from the one restored into",
            ));
        }
        let e = &mut self.engine;
        e.orders.restore_head(&head.book).map_err(inconsistent)?;
        e.retired
            .restore_head(&head.retired)
            .map_err(inconsistent)?;
        e.holdings
            .restore_head(&head.holdings)
            .map_err(inconsistent)?;
        e.idempotency
            .restore_head(&head.window)
            .map_err(inconsistent)?;
        e.catalog.restore_len(head.skus).map_err(inconsistent)?;
        if e.retired.iter().any(|r| e.orders.get(r.id).is_some()) {
            return Err(inconsistent("an order is both held and retired"));
        }
        e.clock_ns = head.clock_ns;
        e.hash = RollingHash(head.hash);
        e.commands_applied = head.commands_applied;
        e.holdings_resets = head.holdings_resets;
        e.waitlist_entries = head.waitlist_entries;
        e.checkpoint = Progress::default();
        e.for_each_table(|t| t.settle());
        e.check_invariants().map_err(SnapshotError::Inconsistent)?;
        Ok(self.engine)
    }
}

fn put<T: Clone>(
    table: &mut Tracked<T>,
    chunk: u32,
    elements: u32,
    payload: &[u8],
) -> Result<bool, String>
where
    Vec<T>: rkyv::Archive,
    <Vec<T> as rkyv::Archive>::Archived: for<'a> CheckBytes<HighValidator<'a, Error>>
        + rkyv::Deserialize<Vec<T>, Strategy<Pool, Error>>,
{
    if table.restored(chunk) {
        return Ok(false);
    }
    let decoded = super::frame::decode::<T>(payload, elements)?;
    table
        .restore_chunk(chunk, decoded)
        .map_err(str::to_string)?;
    Ok(true)
}
