//! The engine stage's part of checkpointing its own engine (the files are written by
//! `checkpoint::saver` on a thread of its own). When one is due, the cut: between two
//! batches, the engine's scalars are taken and its tables note where they end
//! (microseconds). Then after each batch is released, one step: up to `step_kib` of chunks
//! copied (more steps while the ring stays quiet), handed to the writer, which encodes
//! them, through a queue
//! whose bytes are bounded (`queue_mib`): a full queue stops the copying ahead, and
//! copy-on-update keeps the chunks a write reaches first meanwhile.
//!
//! A delta holds the chunks written since the engine's previous cut, so it is only valid on
//! top of that one: after a checkpoint that was abandoned (a write failed), or when the
//! engine was not restored from a checkpoint, the next one is full.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use engine::checkpoint::Copied;
use engine::Engine;

use crate::pipeline::shared::Shared;

/// When to cut and how much to copy per step.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub every_records: u64,
    pub every_secs: u64,
    pub full_every: u32,
    pub step_bytes: usize,
    pub queue_bytes: u64,
}

/// Steps taken in a row while the ring stays quiet, before the stage looks for work again
/// the usual way.
const QUIET_STEPS_MAX: usize = 64;

/// What the engine stage hands the writer, in order: a `Begin`, the chunks copied (the
/// writer encodes them), an `End`.
pub enum ToSaver {
    Begin {
        /// The checkpoint this one is a delta on; 0: it is full.
        parent: u64,
        seq: u64,
        hash: u64,
        head: Vec<u8>,
        cut_ns: u64,
    },
    Chunk(Copied),
    End,
}

/// What the engine stage and the writer share, and the one place its rules are kept: the
/// stage cuts only while the writer is idle, a delta builds on the checkpoint the writer put
/// in place last for this engine, and after one the writer gave up the next is full.
pub struct CheckpointLink {
    /// The checkpoint a delta cut now would build on (`None`: the next must be full).
    delta_parent: Mutex<Option<u64>>,
    /// The writer is busy with a checkpoint (from the cut until it is in place or given up).
    busy: AtomicBool,
    /// Bytes of copied chunks queued for the writer.
    queued_bytes: AtomicU64,
}

impl CheckpointLink {
    /// `restored_from`: the checkpoint the engine was restored from, if it was.
    pub fn new(restored_from: Option<u64>) -> Arc<CheckpointLink> {
        Arc::new(CheckpointLink {
            delta_parent: Mutex::new(restored_from),
            busy: AtomicBool::new(false),
            queued_bytes: AtomicU64::new(0),
        })
    }

    /// The stage: whether the writer is still busy with the last cut.
    pub fn busy(&self) -> bool {
        self.busy.load(SeqCst)
    }

    /// The stage, at a cut: the writer is busy from now; the checkpoint a delta builds on.
    pub fn cut(&self) -> Option<u64> {
        self.busy.store(true, SeqCst);
        *self.delta_parent.lock().expect("checkpoint link")
    }

    /// The writer: checkpoint `number` is in place; the next delta builds on it.
    pub fn placed(&self, number: u64) {
        *self.delta_parent.lock().expect("checkpoint link") = Some(number);
        self.busy.store(false, SeqCst);
    }

    /// The writer: the checkpoint under way was given up; the next is full.
    pub fn abandoned(&self) {
        *self.delta_parent.lock().expect("checkpoint link") = None;
        self.busy.store(false, SeqCst);
    }

    /// The stage queued `bytes` of chunks; the bytes queued now.
    pub fn queued(&self, bytes: usize) -> u64 {
        self.queued_bytes.fetch_add(bytes as u64, Relaxed) + bytes as u64
    }

    /// The writer took `bytes` of chunks; the bytes queued now.
    pub fn taken(&self, bytes: usize) -> u64 {
        self.queued_bytes.fetch_sub(bytes as u64, Relaxed) - bytes as u64
    }

    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Relaxed)
    }
}

pub struct Checkpointer {
    policy: Policy,
    to_saver: Sender<ToSaver>,
    link: Arc<CheckpointLink>,
    shared: Arc<Shared>,
    /// A checkpoint is under way: the engine's own flag, mirrored.
    under_way: bool,
    /// The frames of the step under way not yet queued (the queue was full).
    copies: Vec<Copied>,
    last_cut_seq: u64,
    last_cut_ns: u64,
    deltas_since_full: u32,
}

impl Checkpointer {
    /// `deltas_on_disk`: the deltas in the chain the engine was restored from (the next full
    /// one comes `full_every` checkpoints after that chain's full one, restarts or not).
    pub fn new(
        policy: Policy,
        to_saver: Sender<ToSaver>,
        link: Arc<CheckpointLink>,
        shared: Arc<Shared>,
        applied_seq: u64,
        deltas_on_disk: u32,
    ) -> Checkpointer {
        shared.metrics.checkpoint.enabled.store(1, Relaxed);
        shared
            .metrics
            .checkpoint
            .queue_limit_bytes
            .store(policy.queue_bytes, Relaxed);
        let now = shared.clock.mono_ns();
        Checkpointer {
            policy,
            to_saver,
            link,
            shared,
            under_way: false,
            copies: Vec::new(),
            last_cut_seq: applied_seq,
            last_cut_ns: now,
            deltas_since_full: deltas_on_disk,
        }
    }

    /// Between batches, the engine at `applied_seq`: cut one if due, or take one step of
    /// the one under way.
    pub fn between_batches(&mut self, engine: &mut Engine, applied_seq: u64) {
        if self.under_way {
            self.step(engine);
        } else if self.due(applied_seq) {
            self.cut(engine, applied_seq);
        }
    }

    /// The ring is quiet: as `between_batches`, then more steps while `quiet()` still says
    /// so (each one short: work that arrives waits for one step at most).
    pub fn while_quiet(
        &mut self,
        engine: &mut Engine,
        applied_seq: u64,
        quiet: &mut dyn FnMut() -> bool,
    ) {
        self.between_batches(engine, applied_seq);
        for _ in 1..QUIET_STEPS_MAX {
            if !self.under_way || !quiet() {
                return;
            }
            self.step(engine);
        }
    }

    /// Whether a checkpoint is under way (the stage polls instead of sleeping).
    pub fn under_way(&self) -> bool {
        self.under_way
    }

    fn due(&self, applied_seq: u64) -> bool {
        let records = applied_seq.saturating_sub(self.last_cut_seq);
        if records == 0 || self.link.busy() {
            return false;
        }
        let p = &self.policy;
        let elapsed_ns = self.shared.clock.mono_ns().saturating_sub(self.last_cut_ns);
        (p.every_records > 0 && records >= p.every_records)
            || (p.every_secs > 0 && elapsed_ns >= p.every_secs * 1_000_000_000)
    }

    fn cut(&mut self, engine: &mut Engine, applied_seq: u64) {
        let clock = &self.shared.clock;
        let started_ns = clock.mono_ns();
        let parent = match self.link.cut() {
            Some(parent) if self.deltas_since_full + 1 < self.policy.full_every => parent,
            _ => 0,
        };
        let full = parent == 0;
        let cut = engine.begin_checkpoint(full);
        let cut_ns = clock.mono_ns();
        self.shared
            .metrics
            .checkpoint
            .cut_ns
            .observe(cut_ns.saturating_sub(started_ns));
        debug_assert_eq!(cut.head.hash, engine.hash());
        self.deltas_since_full = if full { 0 } else { self.deltas_since_full + 1 };
        self.under_way = true;
        self.last_cut_seq = applied_seq;
        self.last_cut_ns = cut_ns;
        // The writer outlives the stage; were it gone, the frames are simply dropped.
        let _ = self.to_saver.send(ToSaver::Begin {
            parent,
            seq: applied_seq,
            hash: cut.head.hash,
            head: cut.head.to_bytes().to_vec(),
            cut_ns,
        });
    }

    fn step(&mut self, engine: &mut Engine) {
        if !self.flush() {
            return; // the writer is behind: copy-on-update keeps what changes meanwhile
        }
        let clock = &self.shared.clock;
        let (started_ns, started_cpu_ns) = (clock.mono_ns(), thread_cpu_ns());
        let whole = engine.checkpoint_step(self.policy.step_bytes, &mut self.copies);
        let m = &self.shared.metrics.checkpoint;
        m.step_ns
            .observe(clock.mono_ns().saturating_sub(started_ns));
        // The thread's own CPU time too: the wall clock also counts being descheduled.
        m.step_cpu_ns
            .observe(thread_cpu_ns().saturating_sub(started_cpu_ns));
        self.flush();
        if whole {
            // Every chunk is out of the engine; those still here follow before the End,
            // whatever the queue holds (copies already made cost the same memory here).
            self.under_way = false;
            self.send(u64::MAX);
            let _ = self.to_saver.send(ToSaver::End);
        }
    }

    /// Queue the chunks waiting while the queue has room; whether all went.
    fn flush(&mut self) -> bool {
        self.send(self.policy.queue_bytes)
    }

    /// Send the chunks waiting while fewer than `limit` bytes are queued; whether all went.
    fn send(&mut self, limit: u64) -> bool {
        let mut queued = self.link.queued_bytes();
        let mut sent = 0;
        for copied in &self.copies {
            if queued >= limit {
                break;
            }
            queued = self.link.queued(copied.bytes());
            sent += 1;
        }
        for copied in self.copies.drain(..sent) {
            let _ = self.to_saver.send(ToSaver::Chunk(copied));
        }
        let m = &self.shared.metrics.checkpoint;
        m.queued_bytes.store(queued, Relaxed);
        self.copies.is_empty()
    }
}

/// CPU time this thread has used, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
