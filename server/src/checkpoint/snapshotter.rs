//! Snapshots while serving, without touching the serving engine. The snapshotter follows the
//! durable journal from the files (`journal::Tail`) into an engine of its own, started as a
//! copy of the recovered one, on a thread at low priority (nice 19). Every `every_records` records (or
//! `every_secs` with new records) it writes that engine's state as a snapshot (temp file,
//! sync, rename, directory sync: a crash mid-way leaves the previous one), keeps the newest
//! `keep`, and retires the journal segments the oldest kept one covers — never one a
//! streaming standby still needs. Restart is then the newest valid snapshot plus the journal
//! after it.
//!
//! The serving engine is never paused or copied for this. What a snapshot can still cost it
//! is CPU, on a machine with fewer cores than threads; each snapshot records the longest the
//! engine stage sat with work waiting meanwhile (`surge_snapshot_engine_pause_seconds`).
//! The snapshotter runs at low priority (nice 19) while it keeps up; once it falls more than two
//! snapshot intervals behind (a saturated machine leaves it no idle CPU, and a restart would
//! replay all it missed) it takes its share of CPU at normal priority until it is within
//! half an interval again: restart time stays bounded, at some cost in peak throughput. Its
//! file is written in synced pieces (`Pace`), so the journal's syncs never queue behind it.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::Duration;

use journal::retention::Retention;
use journal::{snapshot, Storage, Tail};

use crate::checkpoint::data_dir::{write_engine_snapshot, DataDir};
use crate::checkpoint::replay::Applier;
use crate::error::{Result, ServerError};
use crate::feed::FeedShared;
use crate::group::node::Node;
use crate::pipeline::shared::Shared;
use crate::telemetry::log::{self, Level};

/// How often the snapshotter looks for new durable records when it has caught up.
const FOLLOW_POLL: Duration = Duration::from_millis(20);
/// Records applied between looks at the durable sequence and the stop flag.
const FOLLOW_CHUNK: u64 = 65_536;

/// When to take a snapshot and what to keep.
#[derive(Clone, Debug)]
pub struct Policy {
    pub every_records: u64,
    pub every_secs: u64,
    pub keep: usize,
    pub retention: Retention,
    /// How the file is written: synced pieces, paused between.
    pub pace: snapshot::Pace,
}

pub struct Snapshotter {
    /// The snapshotter's engine, rebuilt on its own thread (`None` until then).
    applier: Applier,
    tail: Tail,
    /// The last sequence applied to the snapshotter's engine.
    applied_seq: u64,
    last_snapshot_seq: u64,
    last_snapshot_ns: u64,
    dir: DataDir,
    journal: Arc<dyn Storage>,
    snapshots: Arc<dyn Storage>,
    policy: Policy,
    shared: Arc<Shared>,
    node: Arc<Node>,
    /// Whether the engine's tables were faulted in (a journal's config record makes one
    /// late, when there is no snapshot to start from).
    faulted: bool,
    priority: Priority,
    /// The feed, whose log must reach a snapshot before it is written.
    feed: Option<Arc<FeedShared>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Priority {
    /// Nice 19: little CPU while the pipeline keeps the cores busy.
    Idle,
    /// Behind: takes its share.
    Normal,
}

impl Snapshotter {
    /// A snapshotter for the journal in `dir`. Its engine is rebuilt when its thread starts,
    /// from the newest snapshot and the durable journal after it (so the server's start
    /// waits for neither a copy nor a second replay).
    pub fn new(
        dir: DataDir,
        journal: Arc<dyn Storage>,
        policy: Policy,
        shared: Arc<Shared>,
        node: Arc<Node>,
        feed: Option<Arc<FeedShared>>,
    ) -> Result<Snapshotter> {
        let snapshots: Arc<dyn Storage> = Arc::new(dir.snapshots()?);
        let newest = snapshot::snapshot_seqs(snapshots.as_ref())
            .map_err(|e| ServerError::journal("listing snapshots", e))?
            .last()
            .copied()
            .unwrap_or(0);
        let now = shared.clock.mono_ns();
        Ok(Snapshotter {
            applier: Applier::new(None),
            tail: Tail::new(journal.clone(), newest + 1),
            applied_seq: newest,
            last_snapshot_seq: newest,
            last_snapshot_ns: now,
            dir,
            journal,
            snapshots,
            policy,
            shared,
            node,
            faulted: false,
            priority: Priority::Normal,
            feed,
        })
    }

    /// On its own thread, at low priority, until the server stops.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("surge-snapshot".into())
            .spawn(move || self.run())
    }

    /// Rebuild this engine: the newest snapshot (its tables faulted in: it is not the
    /// serving engine, nothing waits for it). Records after it come from the tail. `Err`:
    /// no snapshots.
    fn rebuild(&mut self) -> Result<()> {
        let clock = self.shared.clock.clone();
        let started_ns = clock.mono_ns();
        let (newest, _) = self.dir.newest_snapshot()?;
        if let Some((mut engine, seq)) = newest {
            engine.fault_in();
            self.faulted = true;
            self.applier = Applier::new(Some(engine));
            self.tail = Tail::new(self.journal.clone(), seq + 1);
            self.applied_seq = seq;
            self.last_snapshot_seq = seq;
        }
        log::info(
            "snapshotter_ready",
            &[
                ("from_seq", &self.applied_seq),
                (
                    "ms",
                    &(clock.mono_ns().saturating_sub(started_ns) / 1_000_000),
                ),
            ],
        );
        Ok(())
    }

    fn run(mut self) {
        // Normal priority until its engine is faulted in: faulting holds the process's
        // memory-map lock, and at low priority the holder is preempted by the very threads
        // that then wait for the lock (an allocator growing, a segment mapped): measured
        // 250-325 ms stalls of the serving pipeline at start.
        let shared = self.shared.clone();
        let metrics = &shared.metrics;
        if let Err(e) = self.rebuild() {
            log::line(
                Level::Error,
                "snapshotter_stopped",
                e.journal_code().map(log::journal_code),
                &[("error", &e)],
            );
            metrics.snapshot_failures.fetch_add(1, Relaxed);
            return;
        }
        while !self.shared.stop.load(SeqCst) {
            let durable = self.shared.release.durable();
            if durable > self.applied_seq {
                if let Err(e) = self.follow(durable.min(self.applied_seq + FOLLOW_CHUNK)) {
                    log::line(
                        Level::Error,
                        "snapshotter_stopped",
                        e.journal_code().map(log::journal_code),
                        &[
                            ("error", &e),
                            (
                                "detail",
                                &"no more snapshots until a restart; serving goes on",
                            ),
                        ],
                    );
                    metrics.snapshot_failures.fetch_add(1, Relaxed);
                    return;
                }
            } else {
                std::thread::sleep(FOLLOW_POLL);
            }
            let lag = self
                .shared
                .release
                .durable()
                .saturating_sub(self.applied_seq);
            metrics.snapshot_lag_seq.store(lag, Relaxed);
            let interval = self.policy.every_records.max(FOLLOW_CHUNK);
            if !self.faulted || lag > 2 * interval {
                self.set_priority(Priority::Normal);
            } else if lag < interval / 2 {
                self.set_priority(Priority::Idle);
            }
            if self.due(lag) {
                if let Err(e) = self.take() {
                    log::line(
                        Level::Error,
                        "snapshot_failed",
                        e.journal_code().map(log::journal_code),
                        &[
                            ("error", &e),
                            ("detail", &"the previous snapshot stays in use"),
                        ],
                    );
                    metrics.snapshot_failures.fetch_add(1, Relaxed);
                    // Try again after another interval, not in a loop.
                    self.last_snapshot_seq = self.applied_seq;
                    self.last_snapshot_ns = self.shared.clock.mono_ns();
                }
            }
        }
    }

    /// Apply the durable records up to `upto`.
    fn follow(&mut self, upto: u64) -> Result<()> {
        let applier = &mut self.applier;
        let mut failed = None;
        self.tail
            .read(upto, |record| {
                if failed.is_none() {
                    failed = applier.push(record).err();
                }
            })
            .map_err(|e| ServerError::journal("following the journal", e))?;
        if let Some(e) = failed {
            return Err(e);
        }
        if !self.faulted {
            if let Some(engine) = self.applier.engine_mut() {
                engine.fault_in();
                self.faulted = true;
            }
        }
        self.applied_seq = upto;
        Ok(())
    }

    /// A snapshot is due every `every_records` records or `every_secs` seconds. While the
    /// snapshotter is behind the durable end (`lag` records), a due snapshot waits until it
    /// has caught up: one taken now would be older than it need be, and a saturated machine
    /// would spend the snapshotter's time writing snapshots (each one of the whole state)
    /// instead of following, falling further behind with each. Past four intervals it is
    /// taken anyway, so what a restart replays stays bounded.
    fn due(&self, lag: u64) -> bool {
        let new_records = self.applied_seq.saturating_sub(self.last_snapshot_seq);
        if new_records == 0 {
            return false;
        }
        let p = &self.policy;
        let elapsed_s = self
            .shared
            .clock
            .mono_ns()
            .saturating_sub(self.last_snapshot_ns)
            / 1_000_000_000;
        let intervals_past = |n: u64| {
            (p.every_records > 0 && new_records >= n * p.every_records)
                || (p.every_secs > 0 && elapsed_s >= n * p.every_secs)
        };
        intervals_past(1) && (lag <= FOLLOW_CHUNK || intervals_past(4))
    }

    /// Write a snapshot of the engine at `applied_seq`, then drop old snapshots and retire
    /// the segments the oldest kept one covers.
    fn take(&mut self) -> Result<()> {
        self.applier.drain();
        // The feed log must reach every snapshot: a restart resumes the feed from it. A feed
        // that has stopped is not waited for (it begins again at the next start).
        if let Some(feed) = &self.feed {
            let stop = &self.shared.stop;
            if !feed.wait_synced(self.applied_seq, &|| stop.load(SeqCst)) && stop.load(SeqCst) {
                return Ok(());
            }
        }
        let metrics = &self.shared.metrics;
        let clock = &self.shared.clock;
        metrics.engine_gap_max_ns.store(0, SeqCst);
        let started_ns = clock.mono_ns();
        let engine = self
            .applier
            .engine()
            .expect("the snapshotter has an engine");
        let seq = self.applied_seq;
        let (name, bytes) =
            write_engine_snapshot(self.snapshots.as_ref(), engine, seq, self.policy.pace)?;
        let write_ns = clock.mono_ns().saturating_sub(started_ns);
        let pause_ns = metrics.engine_gap_max_ns.swap(0, SeqCst);
        let retired = self.retire_old()?;
        metrics.snapshots.fetch_add(1, Relaxed);
        metrics.snapshot_seq.store(seq, Relaxed);
        metrics.snapshot_bytes.store(bytes, Relaxed);
        metrics.snapshot_write_ns.observe(write_ns);
        metrics.snapshot_engine_pause_ns.observe(pause_ns);
        metrics.segments_retired.fetch_add(retired as u64, Relaxed);
        log::info(
            "snapshot",
            &[
                ("name", &name),
                ("seq", &seq),
                ("bytes", &bytes),
                ("ms", &(write_ns / 1_000_000)),
                ("engine_pause_us", &(pause_ns / 1_000)),
                ("segments_retired", &retired),
            ],
        );
        self.last_snapshot_seq = seq;
        self.last_snapshot_ns = clock.mono_ns();
        Ok(())
    }

    /// Keep the newest `keep` snapshots; retire the segments the oldest of them covers, but
    /// none a streaming standby has not yet synced. How many were retired.
    fn retire_old(&self) -> Result<usize> {
        let seqs = snapshot::snapshot_seqs(self.snapshots.as_ref())
            .map_err(|e| ServerError::journal("listing snapshots", e))?;
        let drop_count = seqs.len().saturating_sub(self.policy.keep);
        for &old in &seqs[..drop_count] {
            let name = snapshot::snapshot_name(old);
            self.snapshots
                .remove(&name)
                .map_err(|e| ServerError::io(format!("removing snapshot {name}"), e))?;
        }
        if drop_count > 0 {
            self.snapshots
                .sync_dir()
                .map_err(|e| ServerError::io("syncing the snapshot directory", e))?;
        }
        let Some(covered) = retirable_through(
            &seqs[drop_count..],
            self.node.standbys().slowest_attached_durable(),
        ) else {
            return Ok(0);
        };
        let retired = journal::retention::prune(
            self.journal.as_ref(),
            &self.dir.journal_dir(),
            covered,
            &self.policy.retention,
        )
        .map_err(|e| ServerError::journal("retiring covered segments", e))?;
        Ok(retired.len())
    }
}

/// The last sequence whose segments may go: every record a restart needs comes after the
/// oldest snapshot kept (`kept`, oldest first; were the newest damaged, the restart falls
/// back to the one before it), and every record an attached standby has not synced must stay
/// for its catch-up. `None`: no snapshot, nothing may go.
pub fn retirable_through(kept: &[u64], standby_durable: Option<u64>) -> Option<u64> {
    let oldest = *kept.first()?;
    Some(standby_durable.map_or(oldest, |synced| oldest.min(synced)))
}

impl Snapshotter {
    /// Idle: nice 19, a few percent of a core while the pipeline keeps every core busy.
    /// Not SCHED_IDLE: a thread that gets no CPU at all while the others are busy can be
    /// preempted holding a kernel lock the others then wait for (the memory-map lock, in a
    /// page fault on a mapped segment), for as long as the machine stays busy.
    /// Normal: nice 0. Logged when it changes.
    fn set_priority(&mut self, priority: Priority) {
        if priority == self.priority {
            return;
        }
        let nice = if priority == Priority::Idle { 19 } else { 0 };
        // SAFETY: sets the calling thread's nice value (pid 0: this thread); no pointers.
        let set = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } == 0;
        self.priority = priority;
        log::info(
            "snapshotter_priority",
            &[
                ("priority", &format!("{priority:?}").to_lowercase()),
                (
                    "nice",
                    &if set {
                        nice.to_string()
                    } else {
                        "refused".into()
                    },
                ),
                (
                    "lag_seq",
                    &self.shared.metrics.snapshot_lag_seq.load(Relaxed),
                ),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::retirable_through;

    #[test]
    fn segments_go_only_behind_the_oldest_snapshot_and_the_standby() {
        // kept snapshots (oldest first), the attached standby's synced sequence → through
        let table: [(&[u64], Option<u64>, Option<u64>); 6] = [
            (&[], None, None),
            (&[], Some(50), None),
            (&[100], None, Some(100)),
            (&[100, 200], None, Some(100)),
            (&[100, 200], Some(150), Some(100)),
            (&[100, 200], Some(40), Some(40)),
        ];
        for (kept, standby, want) in table {
            assert_eq!(
                retirable_through(kept, standby),
                want,
                "{kept:?} {standby:?}"
            );
        }
    }
}
