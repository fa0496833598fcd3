//! One applied command's feed events, encoded as the feed log carries them
//! (`wire::feed::encode_feed_item`), drafted where the command was applied. The engine stage
//! drafts them into the command's ring slot right after `Engine::apply`, from the serving
//! engine's state then; the feed stage behind the release gate appends them to the log once
//! the command is released. Replaying the journal drafts the same bytes the same way (the
//! engine is deterministic), which is how a restart fills in what the log missed.

use crate::feed::{derive, FeedEvent};
use crate::outcome::Output;
use crate::state_machine::Engine;
use crate::wire::feed::encode_feed_item;
use crate::Request;

/// Bytes of events a slot holds room for from the start (an order event is about 130, a
/// SKU's about 90), and keeps room for after a burst (a mass expiry) needed more: a ring has
/// one per slot, and every slot keeping the largest burst it ever saw would make memory grow
/// for the whole day.
pub const FEED_BYTES_KEPT: usize = 384;
/// Events a slot holds room for, likewise.
const FEED_EVENTS_KEPT: usize = 4;

/// The encoded events of one command, and where each ends. Reused: a slot drafts without
/// allocating unless a command has more than `FEED_BYTES_KEPT` bytes of events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedItems {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl FeedItems {
    /// Items with their room allocated now (at start, for every ring slot).
    pub fn with_room() -> FeedItems {
        FeedItems {
            bytes: Vec::with_capacity(FEED_BYTES_KEPT),
            ends: Vec::with_capacity(FEED_EVENTS_KEPT),
        }
    }

    /// Empty, with any room past the kept room given back.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.bytes.shrink_to(FEED_BYTES_KEPT);
        self.ends.shrink_to(FEED_EVENTS_KEPT);
    }

    /// Replace these items with the events of `request`, just applied by `engine` as sequence
    /// `seq` at `at_ns` with `output`. `scratch` is reused between calls.
    pub fn draft(
        &mut self,
        engine: &Engine,
        seq: u64,
        at_ns: u64,
        request: &Request,
        output: &Output,
        scratch: &mut Vec<FeedEvent>,
    ) {
        self.clear();
        scratch.clear();
        derive(engine, request, output, scratch);
        for event in scratch.iter() {
            encode_feed_item(seq, at_ns, event, &mut self.bytes);
            let end = u32::try_from(self.bytes.len()).expect("one command's events under 4 GiB");
            self.ends.push(end);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn count(&self) -> usize {
        self.ends.len()
    }

    /// The encoded bytes of every event, back to back.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where each event ends in `bytes`, in order.
    pub fn ends(&self) -> &[u32] {
        &self.ends
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::bytes::Reader;
    use crate::wire::feed::read_feed_item;
    use crate::{ClientId, Command, EngineConfig, OrderLine, RequestId, SkuId, SkuSpec, UserId};

    #[test]
    fn room_past_the_kept_room_is_given_back() {
        let mut items = FeedItems::with_room();
        items.bytes.resize(64 << 10, 0);
        items.clear();
        assert!(items.bytes.capacity() < 1 << 10);
        assert!(items.bytes.capacity() >= FEED_BYTES_KEPT);
    }

    #[test]
    fn items_decode_to_the_derived_events_in_order() {
        let mut engine = Engine::new(EngineConfig::default());
        let mut out = Output::default();
        let mut items = FeedItems::default();
        let mut scratch = Vec::new();
        let sku = Request {
            client: ClientId(1),
            request: RequestId(1),
            command: Command::UpsertSku(SkuSpec {
                sku: SkuId(7),
                price: 250,
                stock: 3,
                per_user_limit: 0,
                sale_window: None,
            }),
        };
        engine.apply(1_000, &sku, &mut out);
        items.draft(&engine, 2, 1_000, &sku, &out, &mut scratch);
        assert_eq!(items.count(), 1);
        let place = Request {
            client: ClientId(1),
            request: RequestId(2),
            command: Command::PlaceOrder {
                user: UserId(9),
                lines: vec![OrderLine {
                    sku: SkuId(7),
                    qty: 2,
                }],
                join_waitlist: false,
            },
        };
        engine.apply(2_000, &place, &mut out);
        items.draft(&engine, 3, 2_000, &place, &out, &mut scratch);
        let mut derived = Vec::new();
        derive(&engine, &place, &out, &mut derived);
        assert_eq!(items.count(), derived.len());
        let mut start = 0;
        for (end, want) in items.ends().iter().zip(&derived) {
            let mut r = Reader::new(&items.bytes()[start..*end as usize]);
            let item = read_feed_item(&mut r).expect("decodes");
            assert_eq!((item.seq, item.at_ns, &item.event), (3, 2_000, want));
            start = *end as usize;
        }
        assert_eq!(start, items.bytes().len(), "nothing after the last event");
    }
}
