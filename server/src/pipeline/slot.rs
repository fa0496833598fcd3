//! What one ring slot carries: a client's request as intake decoded it (or a Tick the
//! sequencer inserted, or a record a standby received), the journal sequence and timestamp
//! the sequencer stamped on it, where its answer goes, and the engine stage's answer and feed
//! events. Slots are allocated once and reused; the journal stage and the engine stage read
//! them side by side, the release gate after both, and the feed stage (when the feed is on)
//! after the gate.

use engine::feed_items::FeedItems;
use engine::ring::StageCell;
use engine::{Answer, Command, Output, Query, Request};

/// A connection, as a slot remembers it: the table index and the generation of the
/// connection that sent the request, so an answer never reaches a later connection that
/// reused the index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnRef {
    pub index: u32,
    pub generation: u32,
}

impl ConnRef {
    /// The sequencer's own requests (Ticks): nobody to answer.
    pub const NONE: ConnRef = ConnRef {
        index: u32::MAX,
        generation: 0,
    };
}

pub struct Slot {
    /// The journal sequence of this command, stamped once by the sequencer; 0 for a query.
    /// The journal stage asserts its writer gives the same, the engine stage checks it is
    /// the next, and the gate and the answer carry it.
    pub seq: u64,
    pub conn: ConnRef,
    /// The command to journal and apply; for a query, `request.command` is unused.
    pub request: Request,
    /// Set for queries: sequenced (so they see a consistent state) but not journaled.
    pub query: Option<Query>,
    /// Wall-clock stamp from the sequencer; the engine's only source of time.
    pub timestamp_ns: u64,
    /// Monotonic nanoseconds since the server started, at publish (for the gate-wait metric).
    pub published_mono_ns: u64,
    /// When its bytes were read (for the request-latency metric); a client's requests only.
    pub received_mono_ns: u64,
    /// Written by the engine stage, read by the gate.
    pub output: StageCell<SlotOutput>,
}

#[derive(Default)]
pub struct SlotOutput {
    pub output: Output,
    /// A query's answer.
    pub answer: Option<Answer>,
    /// A command's feed events, drafted when the feed is on (read by the feed stage).
    pub feed: FeedItems,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            seq: 0,
            conn: ConnRef::NONE,
            request: Request {
                client: engine::ClientId::SYSTEM,
                request: engine::RequestId(0),
                command: Command::Tick,
            },
            query: None,
            timestamp_ns: 0,
            published_mono_ns: 0,
            received_mono_ns: 0,
            output: StageCell::default(),
        }
    }
}

impl Slot {
    /// A slot whose feed events have their room allocated now (when the feed is on).
    pub fn with_feed_room() -> Slot {
        Slot {
            output: StageCell::new(SlotOutput {
                feed: FeedItems::with_room(),
                ..SlotOutput::default()
            }),
            ..Slot::default()
        }
    }

    pub fn is_command(&self) -> bool {
        self.query.is_none()
    }
}
