//! A node's checkpoints in the simulation. The engine stage's real `Checkpointer` cuts and
//! copies; in place of the writer thread and its files, `SimSaver` takes what the stage
//! hands over during the node's turn and keeps each checkpoint on the node's simulated disk
//! once the journal is durable through it, as the writer does (a kill loses one not yet in
//! place). A start restores the newest chain with the engine's `Restorer` and applies the
//! journal after it; the world checks that engine against a replay of the journal alone.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Receiver;
use engine::checkpoint::{EngineHead, Frame, Restorer};
use engine::Engine;
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

#[derive(Clone)]
struct Placed {
    number: u64,
    parent: u64,
    seq: u64,
    head: Vec<u8>,
    frames: Vec<Frame>,
}

/// The checkpoints on a node's disk: they outlive its process, as files do.
#[derive(Default)]
pub struct CheckpointDisk(Mutex<Vec<Placed>>);

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
        self.0
            .lock()
            .expect("checkpoint disk")
            .retain(|p| p.seq <= seq);
    }

    /// The newest chain's engine (its newest checkpoint first, as the server restores), or
    /// why it could not be restored (with the chain's newest number and sequence).
    pub fn restore(&self) -> Option<Result<Restored, (u64, u64, String)>> {
        let placed = self.0.lock().expect("checkpoint disk");
        let newest = placed.last()?;
        let mut chain = vec![newest];
        while chain[chain.len() - 1].parent != 0 {
            let parent = chain[chain.len() - 1].parent;
            chain.push(placed.iter().find(|p| p.number == parent)?);
        }
        let failed = |e: engine::SnapshotError| (newest.number, newest.seq, e.to_string());
        let restore = || {
            let head = EngineHead::from_bytes(&newest.head).map_err(failed)?;
            let mut restorer = Restorer::new(head.config);
            for checkpoint in &chain {
                for f in &checkpoint.frames {
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

    fn place(&self, checkpoint: Placed) {
        let mut placed = self.0.lock().expect("checkpoint disk");
        placed.push(checkpoint);
        let bases: Vec<u64> = placed
            .iter()
            .filter(|p| p.parent == 0)
            .map(|p| p.number)
            .collect();
        if let Some(&oldest_kept) = bases.iter().rev().nth(KEEP_CHAINS - 1) {
            placed.retain(|p| p.number >= oldest_kept);
        }
    }

    fn next_number(&self) -> u64 {
        let placed = self.0.lock().expect("checkpoint disk");
        placed.last().map_or(1, |p| p.number + 1)
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
                    full, seq, head, ..
                } => {
                    let parent = match full {
                        true => 0,
                        false => self
                            .link
                            .delta_parent
                            .lock()
                            .expect("checkpoint link")
                            .expect("a delta has a checkpoint to build on"),
                    };
                    self.writing = Some(Placed {
                        number: self.next_number,
                        parent,
                        seq,
                        head,
                        frames: Vec::new(),
                    });
                    self.next_number += 1;
                    self.ended = false;
                }
                ToSaver::Chunk(copied) => {
                    self.link
                        .queued_bytes
                        .fetch_sub(copied.bytes() as u64, Relaxed);
                    if let Some(w) = &mut self.writing {
                        w.frames.push(copied.encode());
                    }
                }
                ToSaver::End => self.ended = true,
            }
        }
        let durable_through = self.writing.as_ref().is_some_and(|w| w.seq <= durable);
        if self.ended && durable_through {
            let placed = self.writing.take().expect("a checkpoint was written");
            *self.link.delta_parent.lock().expect("checkpoint link") = Some(placed.number);
            self.disk.place(placed);
            self.link.in_flight.store(false, SeqCst);
            self.ended = false;
        }
    }
}
