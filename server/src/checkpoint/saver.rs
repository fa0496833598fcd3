//! The checkpoint writer's thread: takes what the engine stage cuts and copies
//! (`pipeline::checkpoints`) and writes it as a checkpoint file (`journal::checkpoint_file`).
//! A checkpoint goes in place only once the journal is durable through its sequence (the
//! engine applies commands before they are durable), so a restore never starts ahead of
//! the journal, and once the feed log is durable through it, so a restart's feed resumes
//! without a gap. Then the chains beyond `keep_chains` are deleted, and, where no snapshotter
//! runs, the journal segments the oldest kept chain covers are retired — never one an
//! attached standby has not synced.
//!
//! Crash points (`SURGE_CRASH_AT`): `checkpoint.mid_frames`, `checkpoint.before_rename`,
//! `checkpoint.after_rename`, `checkpoint.mid_retention`.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use journal::checkpoint_file::{self, CheckpointMeta, CheckpointWriter};
use journal::retention::Retention;
use journal::Storage;

use crate::checkpoint::chain::{chain_to, oldest_kept};
use crate::checkpoint::data_dir::DataDir;
use crate::checkpoint::snapshotter::retirable_through;
use crate::error::{Result, ServerError};
use crate::feed::FeedShared;
use crate::group::node::Node;
use crate::pipeline::checkpoints::{CheckpointLink, ToSaver};
use crate::pipeline::shared::Shared;
use crate::telemetry::crash_point;
use crate::telemetry::log::{self, Level};

/// The crash points, in the order a checkpoint reaches them.
pub const CHECKPOINT_STEPS: [&str; 4] = [
    "checkpoint.mid_frames",
    "checkpoint.before_rename",
    "checkpoint.after_rename",
    "checkpoint.mid_retention",
];

/// How often the writer looks at the durable sequence while it waits for it.
const DURABLE_POLL: Duration = Duration::from_millis(1);

pub struct Saver {
    dir: DataDir,
    from_stage: Receiver<ToSaver>,
    link: Arc<CheckpointLink>,
    shared: Arc<Shared>,
    node: Arc<Node>,
    keep_chains: usize,
    /// Retire covered journal segments this way (`None`: the snapshotter does).
    retention: Option<(Arc<dyn Storage>, Retention)>,
    /// The feed, whose log must reach a checkpoint before it is kept.
    feed: Option<Arc<FeedShared>>,
    next_number: u64,
}

/// The checkpoint being written.
struct Writing {
    file: Option<CheckpointWriter>,
    meta: CheckpointMeta,
    cut_ns: u64,
    failed: Option<String>,
}

impl Saver {
    pub fn new(
        dir: DataDir,
        from_stage: Receiver<ToSaver>,
        link: Arc<CheckpointLink>,
        shared: Arc<Shared>,
        node: Arc<Node>,
        keep_chains: usize,
        retention: Option<(Arc<dyn Storage>, Retention)>,
    ) -> Result<Saver> {
        let (metas, _) = dir.checkpoint_metas()?;
        let next_number = metas.keys().next_back().map_or(1, |n| n + 1);
        if let Some(meta) = metas.values().next_back() {
            let m = &shared.metrics.checkpoint;
            m.seq.store(meta.seq, Relaxed);
            m.number.store(meta.number, Relaxed);
        }
        let saver = Saver {
            dir,
            from_stage,
            link,
            shared,
            node,
            keep_chains,
            retention,
            feed: None,
            next_number,
        };
        saver.count_disk_bytes();
        Ok(saver)
    }

    /// Keep no checkpoint before `feed`'s log reaches it.
    pub fn with_feed(mut self, feed: Option<Arc<FeedShared>>) -> Saver {
        self.feed = feed;
        self
    }

    pub fn run(mut self) {
        let mut writing: Option<Writing> = None;
        loop {
            match self.from_stage.recv_timeout(Duration::from_millis(100)) {
                Ok(ToSaver::Begin {
                    parent,
                    seq,
                    hash,
                    head,
                    cut_ns,
                }) => writing = Some(self.begin(parent, seq, hash, &head, cut_ns)),
                Ok(ToSaver::Chunk(copied)) => {
                    if let Some(w) = &mut writing {
                        let f = copied.encode();
                        w.frame(f.table as u16, f.chunk, f.elements, &f.payload);
                    }
                    let queued = self.link.taken(copied.bytes());
                    let m = &self.shared.metrics.checkpoint;
                    m.queued_bytes.store(queued, Relaxed);
                }
                Ok(ToSaver::End) => {
                    if let Some(w) = writing.take() {
                        self.end(w);
                    }
                }
                Err(RecvTimeoutError::Timeout) if self.shared.stop.load(SeqCst) => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Some(w) = writing {
            w.abandon("the node stopped");
        }
    }

    fn begin(&mut self, parent: u64, seq: u64, hash: u64, head: &[u8], cut_ns: u64) -> Writing {
        let meta = CheckpointMeta::new(self.next_number, parent, seq, hash);
        self.next_number += 1;
        let mut w = Writing {
            file: None,
            meta,
            cut_ns,
            failed: None,
        };
        match CheckpointWriter::create(&self.dir.checkpoint_dir(), meta, head) {
            Ok(file) => w.file = Some(file),
            Err(e) => w.failed = Some(format!("creating its file: {e}")),
        }
        w
    }

    fn end(&mut self, mut w: Writing) {
        let meta = w.meta;
        if w.failed.is_none() && !self.wait_durable(meta.seq) {
            w.failed = Some("the node stopped before the journal reached it".into());
        }
        if w.failed.is_none() && !self.wait_feed(meta.seq) {
            w.failed = Some("the node stopped before the feed log reached it".into());
        }
        let placed = match (w.file.take(), &w.failed) {
            (Some(file), None) => file
                .finish(|| crash_point::reached(CHECKPOINT_STEPS[1]))
                .map_err(|e| format!("writing it: {e}")),
            (file, failed) => {
                if let Some(file) = file {
                    file.abandon();
                }
                Err(failed.clone().unwrap_or_default())
            }
        };
        let m = &self.shared.metrics.checkpoint;
        let bytes = match placed {
            Ok(bytes) => bytes,
            Err(why) => {
                self.link.abandoned();
                m.failures.fetch_add(1, Relaxed);
                log::line(
                    Level::Error,
                    "checkpoint_failed",
                    None,
                    &[
                        ("number", &meta.number),
                        ("seq", &meta.seq),
                        ("why", &why),
                        ("detail", &"the next checkpoint is full; the journal is kept until one is in place"),
                    ],
                );
                return;
            }
        };
        crash_point::reached(CHECKPOINT_STEPS[2]);
        let write_ns = self.shared.clock.mono_ns().saturating_sub(w.cut_ns);
        self.link.placed(meta.number);
        m.taken.fetch_add(1, Relaxed);
        if meta.full {
            m.full.fetch_add(1, Relaxed);
        }
        m.seq.store(meta.seq, Relaxed);
        m.number.store(meta.number, Relaxed);
        m.bytes.fetch_add(bytes, Relaxed);
        m.last_bytes.store(bytes, Relaxed);
        m.write_ns.observe(write_ns);
        let retired = match self.retire() {
            Ok(retired) => retired,
            Err(e) => {
                log::line(
                    Level::Warn,
                    "checkpoint_retention_failed",
                    None,
                    &[("error", &e.to_string())],
                );
                0
            }
        };
        self.count_disk_bytes();
        log::info(
            "checkpoint",
            &[
                ("number", &meta.number),
                ("kind", &if meta.full { "full" } else { "delta" }),
                ("parent", &meta.parent),
                ("seq", &meta.seq),
                ("bytes", &bytes),
                ("ms", &(write_ns / 1_000_000)),
                ("segments_retired", &retired),
            ],
        );
    }

    /// Wait until the journal is durable through `seq`; false if the node stops first.
    fn wait_durable(&self, seq: u64) -> bool {
        while self.shared.release.durable() < seq {
            if self.shared.stop.load(SeqCst) {
                return false;
            }
            std::thread::sleep(DURABLE_POLL);
        }
        true
    }

    /// Wait until the feed log is durable through `seq` (a restart resumes the feed from the
    /// checkpoint: the log must reach it); false if the node stops first. A feed that has
    /// stopped is not waited for: it begins again at the next start.
    fn wait_feed(&self, seq: u64) -> bool {
        let Some(feed) = &self.feed else {
            return true;
        };
        let stop = &self.shared.stop;
        feed.wait_synced(seq, &|| stop.load(SeqCst)) || !stop.load(SeqCst)
    }

    /// Delete the chains older than the newest `keep_chains`; retire the journal segments
    /// the oldest kept one covers (where this writer retires them). Segments retired.
    fn retire(&self) -> Result<usize> {
        let (metas, _) = self.dir.checkpoint_metas()?;
        let Some(kept_from) = oldest_kept(&metas, self.keep_chains) else {
            return Ok(0);
        };
        self.dir
            .remove_checkpoints(|meta| meta.number < kept_from)?;
        crash_point::reached(CHECKPOINT_STEPS[3]);
        let Some((journal, retention)) = &self.retention else {
            return Ok(0);
        };
        let oldest_seq = metas[&kept_from].seq;
        let Some(covered) = retirable_through(
            &[oldest_seq],
            self.node.standbys().slowest_attached_durable(),
        ) else {
            return Ok(0);
        };
        let retired = journal::retention::prune(
            journal.as_ref(),
            &self.dir.journal_dir(),
            covered,
            retention,
        )
        .map_err(|e| ServerError::journal("retiring covered segments", e))?;
        self.shared
            .metrics
            .segments_retired
            .fetch_add(retired.len() as u64, Relaxed);
        Ok(retired.len())
    }

    fn count_disk_bytes(&self) {
        let bytes = checkpoint_file::list(&self.dir.checkpoint_dir())
            .unwrap_or_default()
            .iter()
            .filter_map(|(_, path)| std::fs::metadata(path).ok())
            .map(|m| m.len())
            .sum();
        self.shared
            .metrics
            .checkpoint
            .disk_bytes
            .store(bytes, Relaxed);
    }
}

impl Writing {
    fn frame(&mut self, table: u16, chunk: u32, elements: u32, payload: &[u8]) {
        let Some(file) = &mut self.file else {
            return;
        };
        if let Err(e) = file.frame(table, chunk, elements, payload) {
            self.failed = Some(format!("writing a frame: {e}"));
            if let Some(file) = self.file.take() {
                file.abandon();
            }
            return;
        }
        crash_point::reached(CHECKPOINT_STEPS[0]);
    }

    fn abandon(mut self, why: &str) {
        if let Some(file) = self.file.take() {
            file.abandon();
        }
        log::line(
            Level::Warn,
            "checkpoint_abandoned",
            None,
            &[("number", &self.meta.number), ("why", &why)],
        );
    }
}

/// Start checkpointing if `[checkpoint]` asks for it: the engine stage's part, to give to
/// the stage, and the writer's thread. `restored_from`: the checkpoint the engine was
/// restored from; `applied_seq`: where the engine is.
pub fn start(
    config: &crate::config::ServerConfig,
    dir: &DataDir,
    shared: &Arc<Shared>,
    node: &Arc<Node>,
    restored_from: Option<u64>,
    applied_seq: u64,
    feed: Option<Arc<FeedShared>>,
) -> Result<
    Option<(
        crate::pipeline::checkpoints::Checkpointer,
        std::thread::JoinHandle<()>,
    )>,
> {
    use crate::pipeline::checkpoints::{Checkpointer, Policy};
    if !config.checkpoints_on() {
        return Ok(None);
    }
    let c = &config.checkpoint;
    let link = CheckpointLink::new(restored_from);
    let (to_saver, from_stage) = crossbeam_channel::unbounded();
    // Where no snapshotter runs, the checkpoints decide which journal segments may go.
    let retention = match config.snapshots_on() {
        true => None,
        false => {
            let journal: Arc<dyn Storage> = Arc::new(dir.journal(journal::IoMode::Pwritev2)?);
            Some((journal, config.retention()?))
        }
    };
    let saver = Saver::new(
        DataDir::new(dir.root()),
        from_stage,
        link.clone(),
        shared.clone(),
        node.clone(),
        c.keep_chains as usize,
        retention,
    )?
    .with_feed(feed);
    let policy = Policy {
        every_records: c.every_records,
        every_secs: c.every_secs,
        full_every: c.full_every,
        step_bytes: (c.step_kib << 10) as usize,
        queue_bytes: c.queue_mib << 20,
    };
    let (metas, _) = dir.checkpoint_metas()?;
    let deltas_on_disk = restored_from
        .and_then(|newest| chain_to(&metas, newest))
        .map_or(0, |chain| chain.len() as u32 - 1);
    let checkpointer = Checkpointer::new(
        policy,
        to_saver,
        link,
        shared.clone(),
        applied_seq,
        deltas_on_disk,
    );
    let thread = std::thread::Builder::new()
        .name("surge-checkpoint".into())
        .spawn(move || saver.run())
        .map_err(|e| ServerError::io("spawning the checkpoint writer", e))?;
    Ok(Some((checkpointer, thread)))
}
