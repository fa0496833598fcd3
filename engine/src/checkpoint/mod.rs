//! Checkpoints of the serving engine itself: consistent at a sequence boundary, incremental,
//! taken on the engine's own thread a budget at a time between commands, with no second
//! engine and no copy of the state beyond the chunks in flight.
//!
//! `begin_checkpoint` is the cut: the engine's scalars (`EngineHead`) are taken and every
//! tracked table notes where it ends; nothing is copied yet, so it costs microseconds. Then
//! `checkpoint_step`, called between commands, copies the chunks the checkpoint holds (a
//! delta: those written since the previous cut; a full one: all in use) and encodes them as
//! `Copied` chunks (encoded as `Frame`s by the writer), while a write that reaches a chunk first copies it before it changes
//! (`tracked`). When every chunk is out, the checkpoint is whole. Restoring is `Restorer`:
//! the frames of the newest delta, then of each checkpoint before it back to a full one (a
//! chunk already restored is skipped), then the newest head.

mod frame;
mod restore;

pub use frame::{Copied, Frame, TableId};
pub use restore::Restorer;

use rkyv::rancor::Error;
use rkyv::util::AlignedVec;

use crate::config::EngineConfig;
use crate::holdings::HoldingsHead;
use crate::idempotency::WindowHead;
use crate::ids::TimestampNs;
use crate::order::BookHead;
use crate::retired::RetiredHead;
use crate::snapshot::SnapshotError;
use crate::state_machine::Engine;
use crate::tracked::Tracked;

/// Bumped whenever a checkpoint's head or a table's element layout changes.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// The engine's scalars at a cut: everything that is not a chunk of a table.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct EngineHead {
    pub format_version: u32,
    pub config: EngineConfig,
    pub clock_ns: TimestampNs,
    /// The rolling hash at the cut.
    pub hash: u64,
    pub commands_applied: u64,
    pub holdings_resets: u32,
    pub waitlist_entries: u64,
    pub book: BookHead,
    pub retired: RetiredHead,
    pub holdings: HoldingsHead,
    pub window: WindowHead,
    pub skus: u64,
}

impl EngineHead {
    pub fn to_bytes(&self) -> AlignedVec<16> {
        rkyv::to_bytes::<Error>(self).expect("serializing to memory cannot fail")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<EngineHead, SnapshotError> {
        let head = crate::snapshot::with_aligned(bytes, |aligned| {
            rkyv::from_bytes::<EngineHead, Error>(aligned)
        })
        .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        if head.format_version != CHECKPOINT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(head.format_version));
        }
        Ok(head)
    }
}

/// A checkpoint begun: its number (the engine's own count since it started), whether it
/// holds every chunk, and the scalars at the cut.
#[derive(Clone, Debug)]
pub struct Cut {
    pub number: u32,
    pub full: bool,
    pub head: EngineHead,
}

/// Where the engine is in its checkpoints.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Progress {
    /// The interval writes now belong to: the number of the last checkpoint begun (1 at
    /// start, before any).
    interval: u32,
    under_way: bool,
}

impl Default for Progress {
    fn default() -> Progress {
        Progress {
            interval: 1,
            under_way: false,
        }
    }
}

impl Engine {
    /// The cut of a checkpoint, now, between two commands. `full`: it holds every chunk in
    /// use (the first after a start, or after one was lost); else the chunks written since
    /// the previous cut.
    pub fn begin_checkpoint(&mut self, full: bool) -> Cut {
        assert!(
            !self.checkpoint.under_way,
            "a checkpoint is already under way"
        );
        let number = self.checkpoint.interval + 1;
        let head = self.head();
        self.for_each_table(|t| t.begin(number, full));
        self.checkpoint = Progress {
            interval: number,
            under_way: true,
        };
        Cut { number, full, head }
    }

    /// Whether a checkpoint is under way (`checkpoint_step` has more to do).
    pub fn checkpoint_under_way(&self) -> bool {
        self.checkpoint.under_way
    }

    /// Copy about `budget` bytes more of the checkpoint under way into `out` (and every
    /// chunk a write copied meanwhile); `Copied::encode` makes them frames. True when it is
    /// whole: every chunk is out.
    pub fn checkpoint_step(&mut self, budget: usize, out: &mut Vec<Copied>) -> bool {
        if !self.checkpoint.under_way {
            return true;
        }
        let mut budget = budget;
        let mut whole = true;
        let (orders, links, free) = self.orders.tables();
        whole &= step_table(orders, Copied::Orders, &mut budget, out);
        whole &= step_table(links, Copied::OrderLinks, &mut budget, out);
        whole &= step_table(free, Copied::OrderFree, &mut budget, out);
        whole &= step_table(self.retired.table(), Copied::Retired, &mut budget, out);
        whole &= step_table(self.holdings.table(), Copied::Holdings, &mut budget, out);
        let (slots, tenants, free) = self.idempotency.tables();
        whole &= step_table(slots, Copied::Remembered, &mut budget, out);
        whole &= step_table(tenants, Copied::Tenants, &mut budget, out);
        whole &= step_table(free, Copied::TenantsFree, &mut budget, out);
        whole &= step_table(self.catalog.table(), Copied::Skus, &mut budget, out);
        if whole {
            self.for_each_table(|t| t.finish());
            self.checkpoint.under_way = false;
        }
        whole
    }

    /// The scalars now.
    fn head(&self) -> EngineHead {
        EngineHead {
            format_version: CHECKPOINT_FORMAT_VERSION,
            config: self.config,
            clock_ns: self.clock_ns,
            hash: self.hash.value(),
            commands_applied: self.commands_applied,
            holdings_resets: self.holdings_resets,
            waitlist_entries: self.waitlist_entries,
            book: self.orders.head(),
            retired: self.retired.head(),
            holdings: self.holdings.head(),
            window: self.idempotency.head(),
            skus: self.catalog.len() as u64,
        }
    }

    /// Do `f` to every tracked table, whatever its element type.
    fn for_each_table(&mut self, mut f: impl FnMut(&mut dyn TableControl)) {
        let (orders, links, free) = self.orders.tables();
        f(orders);
        f(links);
        f(free);
        f(self.retired.table());
        f(self.holdings.table());
        let (slots, tenants, free) = self.idempotency.tables();
        f(slots);
        f(tenants);
        f(free);
        f(self.catalog.table());
    }
}

/// What the engine does to every tracked table alike, whatever its element type.
trait TableControl {
    fn begin(&mut self, checkpoint: u32, full: bool);
    fn finish(&mut self);
    fn settle(&mut self);
}

impl<T: Clone> TableControl for Tracked<T> {
    fn begin(&mut self, checkpoint: u32, full: bool) {
        Tracked::begin(self, checkpoint, full)
    }

    fn finish(&mut self) {
        Tracked::finish(self)
    }

    fn settle(&mut self) {
        Tracked::settle(self)
    }
}

/// One table's share of a step: copy within the budget left, hand out what was copied.
fn step_table<T: Clone>(
    table: &mut Tracked<T>,
    wrap: fn(u32, Vec<T>) -> Copied,
    budget: &mut usize,
    out: &mut Vec<Copied>,
) -> bool {
    let (spent, done) = table.step(*budget);
    *budget = budget.saturating_sub(spent);
    let (copies, _) = table.take_copies();
    out.extend(
        copies
            .into_iter()
            .map(|(chunk, elements)| wrap(chunk, elements)),
    );
    done
}
