//! The feed stage: the ring's consumer behind the release gate, the LMAX way. The engine
//! stage drafts each command's feed events into its slot right after applying it
//! (`engine::feed_items`), from the serving engine's own state; this stage appends them to
//! the feed log once the gate has released the command (durable, and acked as the ack mode
//! asks), publishes how far the log goes, and syncs the log when a checkpoint or snapshot
//! waits for it (`FeedShared::wait_synced`). No second engine derives anything.
//!
//! A failed write stops the feed (its consumers are told, 223); the stage goes on releasing
//! slots, so the node keeps serving.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use engine::ring::Consumer;

use super::writer::FeedWriter;
use super::FeedShared;
use crate::pipeline::slot::Slot;

/// How long the stage naps when it finds nothing new. It never waits on the ring: nothing
/// waits for the feed within a millisecond, and spinning or yielding for each slot cost a
/// fifth of a core at saturation on the 2-vCPU VM (a nap gathers ~500 slots per batch
/// there); the ring's 65,536 slots hold far more than a nap's worth.
const NAP: Duration = Duration::from_millis(1);

pub struct FeedStage {
    ring: Consumer<Slot>,
    /// `None` once a write failed.
    writer: Option<FeedWriter>,
    feed: Arc<FeedShared>,
}

impl FeedStage {
    pub fn new(ring: Consumer<Slot>, writer: FeedWriter, feed: Arc<FeedShared>) -> FeedStage {
        FeedStage {
            ring,
            writer: Some(writer),
            feed,
        }
    }

    pub fn run(mut self) {
        loop {
            if !self.step() {
                if self.feed.shared.stop.load(SeqCst) {
                    // What was appended is written; make it durable for the next start.
                    self.write(|w| w.sync());
                    return;
                }
                std::thread::sleep(NAP);
            }
            self.write(|w| w.sync_if_wanted());
        }
    }

    /// Append what the gate has released; false if nothing.
    pub fn step(&mut self) -> bool {
        let Some(batch) = self.ring.try_read() else {
            return false;
        };
        let mut last_seq = None;
        for (_, slot) in batch.iter() {
            if !slot.is_command() {
                continue;
            }
            // SAFETY: the engine stage wrote `output` and released the slot before the gate
            // did, and this stage follows the gate; nobody writes it again until this stage
            // releases it.
            let out = unsafe { slot.output.get() };
            if let Some(writer) = &mut self.writer {
                writer.append(slot.seq, &out.feed);
            }
            last_seq = Some(slot.seq);
        }
        drop(batch);
        if let Some(seq) = last_seq {
            self.write(|w| w.processed(seq));
        }
        true
    }

    fn write(&mut self, op: impl FnOnce(&mut FeedWriter) -> std::io::Result<()>) {
        let Some(writer) = &mut self.writer else {
            return;
        };
        if let Err(e) = op(writer) {
            self.writer = None;
            self.feed.stopped(&e);
        }
    }
}
