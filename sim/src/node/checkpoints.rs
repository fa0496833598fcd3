//! A node's checkpoints in the simulation. The engine stage's real `Checkpointer` cuts and
//! copies; in place of the writer thread and its files, `SimSaver` takes what the stage
//! hands over during the node's turn and keeps each checkpoint on the node's simulated disk
//! once the journal is durable through it, as the writer does (a kill loses one not yet in
//! place). A start restores the newest chain with the engine's `Restorer` and applies the
//! journal after it; the world checks that engine against a replay of the journal alone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crossbeam_channel::Receiver;
use engine::checkpoint::{EngineHead, Frame, Restorer};
use engine::Engine;
use journal::checkpoint_file::CheckpointMeta;
use server::checkpoint::chain::{chain_to, oldest_kept};
use server::pipeline::checkpoints::{CheckpointLink, Checkpointer, Policy, ToSaver};
use server::pipeline::shared::Shared;

/// How the simulated nodes checkpoint: often, about a chunk a step, so that cuts,
/// copy-on-update and restores meet every fault.
const POLICY: Policy = Policy {
    every_records: 300,
    every_secs: 0,
    full_every: 3,
    step_bytes: 1 << 10,
    queue_bytes: 256 << 10,
};
/// Chains kept, as `checkpoint.keep_chains`.
const KEEP_CHAINS: usize = 2;

struct Placed {
    meta: CheckpointMeta,
    head: Vec<u8>,
    frames: Vec<Frame>,
}

/// The checkpoints on a node's disk, by number: they outlive its process, as files do.
#[derive(Default)]
pub struct CheckpointDisk(Mutex<BTreeMap<u64, Placed>>);

/// An engine restored from the disk's newest chain.
pub struct Restored {
    pub engine: Engine,
    pub seq: u64,
    pub number: u64,
    pub deltas: u32,
}

impl CheckpointDisk {
    /// A failback cut: the checkpoints past `seq` go.
    pub fn cut_after(&self, seq: u64) {
        let mut placed = self.0.lock().expect("checkpoint disk");
        placed.retain(|_, p| p.meta.seq <= seq);
    }

    /// The newest chain's engine (its newest checkpoint first, as the server restores), or
    /// why it could not be restored (with the chain's newest number and sequence).
    pub fn restore(&self) -> Option<Result<Restored, (u64, u64, String)>> {
        let placed = self.0.lock().expect("checkpoint disk");
        let metas = self.metas(&placed);
        let newest = placed.values().next_back()?.meta;
        let chain = chain_to(&metas, newest.number)?;
        let failed = |e: engine::SnapshotError| (newest.number, newest.seq, e.to_string());
        let restore = || {
            let head = EngineHead::from_bytes(&placed[&newest.number].head).map_err(failed)?;
            let mut restorer = Restorer::new(head.config);
            for number in chain.iter().rev() {
                for f in &placed[number].frames {
                    restorer
                        .apply(f.table as u16, f.chunk, f.elements, &f.payload)
                        .map_err(failed)?;
                }
            }
            Ok(Restored {
                engine: restorer.finish(&head).map_err(failed)?,
                seq: newest.seq,
                number: newest.number,
                deltas: chain.len() as u32 - 1,
            })
        };
        Some(restore())
    }

    fn metas(&self, placed: &BTreeMap<u64, Placed>) -> BTreeMap<u64, CheckpointMeta> {
        placed.iter().map(|(n, p)| (*n, p.meta)).collect()
    }

    /// Put `checkpoint` in place; the chains before the newest `KEEP_CHAINS` go.
    fn place(&self, checkpoint: Placed) {
        let mut placed = self.0.lock().expect("checkpoint disk");
        placed.insert(checkpoint.meta.number, checkpoint);
        if let Some(kept_from) = oldest_kept(&self.metas(&placed), KEEP_CHAINS) {
            placed.retain(|n, _| *n >= kept_from);
        }
    }

    fn next_number(&self) -> u64 {
        let placed = self.0.lock().expect("checkpoint disk");
        placed.keys().next_back().map_or(1, |n| n + 1)
    }
}

/// Stands in for the checkpoint writer's thread.
pub struct SimSaver {
    from_stage: Receiver<ToSaver>,
    link: Arc<CheckpointLink>,
    disk: Arc<CheckpointDisk>,
    writing: Option<Placed>,
    ended: bool,
    next_number: u64,
}

impl SimSaver {
    /// The saver and the engine stage's part, for an engine restored from `restored` (or
    /// not) and now at `applied_seq`.
    pub fn start(
        disk: Arc<CheckpointDisk>,
        restored: Option<(u64, u32)>,
        shared: Arc<Shared>,
        applied_seq: u64,
    ) -> (SimSaver, Checkpointer) {
        let link = CheckpointLink::new(restored.map(|(number, _)| number));
        let (to_saver, from_stage) = crossbeam_channel::unbounded();
        let deltas = restored.map_or(0, |(_, deltas)| deltas);
        let checkpointer =
            Checkpointer::new(POLICY, to_saver, link.clone(), shared, applied_seq, deltas);
        let next_number = disk.next_number();
        let saver = SimSaver {
            from_stage,
            link,
            disk,
            writing: None,
            ended: false,
            next_number,
        };
        (saver, checkpointer)
    }

    /// Take what the engine stage handed over; put a whole checkpoint in place once the
    /// journal is `durable` through it.
    pub fn turn(&mut self, durable: u64) {
        while let Ok(message) = self.from_stage.try_recv() {
            match message {
                ToSaver::Begin {
                    parent,
                    seq,
                    hash,
                    head,
                    ..
                } => {
                    let meta = CheckpointMeta::new(self.next_number, parent, seq, hash);
                    self.writing = Some(Placed {
                        meta,
                        head,
                        frames: Vec::new(),
                    });
                    self.next_number += 1;
                    self.ended = false;
                }
                ToSaver::Chunk(copied) => {
                    self.link.taken(copied.bytes());
                    if let Some(w) = &mut self.writing {
                        w.frames.push(copied.encode());
                    }
                }
                ToSaver::End => self.ended = true,
            }
        }
        let durable_through = self.writing.as_ref().is_some_and(|w| w.meta.seq <= durable);
        if self.ended && durable_through {
            let placed = self.writing.take().expect("a checkpoint was written");
            self.link.placed(placed.meta.number);
            self.disk.place(placed);
            self.ended = false;
        }
    }
}
