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

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
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
        full: bool,
        seq: u64,
        hash: u64,
        head: Vec<u8>,
        cut_ns: u64,
    },
    Chunk(Copied),
    End,
}

/// What the engine stage and the writer share.
pub struct CheckpointLink {
    /// The checkpoint a delta cut now would go on: the newest one on disk when it is also
    /// the engine's previous cut (`None`: the next must be full).
    pub delta_parent: Mutex<Option<u64>>,
    /// The writer is busy with a checkpoint (from `Begin` until it is in place or given up).
    pub in_flight: std::sync::atomic::AtomicBool,
    /// Bytes of copied chunks queued for the writer.
    pub queued_bytes: AtomicU64,
}

impl CheckpointLink {
    /// `restored_from`: the checkpoint the engine was restored from, if it was.
    pub fn new(restored_from: Option<u64>) -> Arc<CheckpointLink> {
        Arc::new(CheckpointLink {
            delta_parent: Mutex::new(restored_from),
            in_flight: false.into(),
            queued_bytes: AtomicU64::new(0),
        })
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
    frames: Vec<Copied>,
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
            frames: Vec::new(),
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
        if records == 0 || self.link.in_flight.load(SeqCst) {
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
        let parent = *self.link.delta_parent.lock().expect("checkpoint link");
        let full = parent.is_none() || self.deltas_since_full + 1 >= self.policy.full_every;
        let cut = engine.begin_checkpoint(full);
        let cut_ns = clock.mono_ns();
        self.shared
            .metrics
            .checkpoint
            .cut_ns
            .observe(cut_ns.saturating_sub(started_ns));
        debug_assert_eq!(cut.head.hash, engine.hash());
        self.deltas_since_full = if full { 0 } else { self.deltas_since_full + 1 };
        self.link.in_flight.store(true, SeqCst);
        self.under_way = true;
        self.last_cut_seq = applied_seq;
        self.last_cut_ns = cut_ns;
        // The writer outlives the stage; were it gone, the frames are simply dropped.
        let _ = self.to_saver.send(ToSaver::Begin {
            full,
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
        let whole = engine.checkpoint_step(self.policy.step_bytes, &mut self.frames);
        let m = &self.shared.metrics.checkpoint;
        m.step_ns
            .observe(clock.mono_ns().saturating_sub(started_ns));
        // The thread's own CPU time too: the wall clock also counts being descheduled.
        m.step_cpu_ns
            .observe(thread_cpu_ns().saturating_sub(started_cpu_ns));
        self.flush();
        if whole {
            // Every frame is out of the engine; those still here follow before the End.
            self.under_way = false;
            self.drain_rest();
            let _ = self.to_saver.send(ToSaver::End);
        }
    }

    /// Queue the frames waiting while the queue has room; whether all went.
    fn flush(&mut self) -> bool {
        let queued = &self.link.queued_bytes;
        let mut sent = 0;
        for frame in &self.frames {
            if queued.load(Relaxed) >= self.policy.queue_bytes {
                break;
            }
            queued.fetch_add(frame.bytes() as u64, Relaxed);
            sent += 1;
        }
        for frame in self.frames.drain(..sent) {
            let _ = self.to_saver.send(ToSaver::Chunk(frame));
        }
        self.shared
            .metrics
            .checkpoint
            .queued_bytes
            .store(queued.load(Relaxed), Relaxed);
        self.frames.is_empty()
    }

    /// The last step's frames go whatever the queue holds (they are copies already made:
    /// holding them here or in the queue costs the same memory).
    fn drain_rest(&mut self) {
        for frame in self.frames.drain(..) {
            self.link
                .queued_bytes
                .fetch_add(frame.bytes() as u64, Relaxed);
            let _ = self.to_saver.send(ToSaver::Chunk(frame));
        }
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
