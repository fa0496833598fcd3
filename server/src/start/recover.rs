//! What a node is at start: its engine rebuilt from the data directory (the newest snapshot
//! or checkpoint chain and the journal after it, the tables faulted in before or while it
//! serves), its feed log brought up to the same sequence, and its role and epochs from the
//! epoch files and how it was started.

use std::sync::Arc;
use std::thread::JoinHandle;

use engine::Engine;
use replicator::Epochs;

use super::Start;
use crate::checkpoint::data_dir::DataDir;
use crate::config::ServerConfig;
use crate::error::{Result, ServerError};
use crate::feed::writer::{FeedLimits, FeedWriter};
use crate::feed::FeedShared;
use crate::group::role::Role;
use crate::telemetry::log;
use crate::telemetry::log::repl_code;
use crate::Clock;

/// The engine a node starts with, and how it was rebuilt.
pub(super) struct Recovered {
    pub engine: Engine,
    /// The last sequence it applied.
    pub seq: u64,
    /// The thread faulting its tables in, if they are faulted in while it serves.
    pub faulter: Option<JoinHandle<()>>,
    /// The checkpoint it was restored from, if it was (a delta may build on it).
    pub checkpoint: Option<u64>,
    /// The feed log, reaching `seq`, if the feed is on and could be opened.
    pub feed: Option<FeedWriter>,
}

/// The feed to keep, if it is on.
pub(super) type FeedToKeep = Option<(Arc<FeedShared>, FeedLimits)>;

/// Rebuild the engine from the data directory and log how, faulting its tables in (before
/// or while it serves, as configured: see `fault_in`); the engine, the last sequence it
/// applied, and the thread faulting it in.
pub(super) fn recover(
    dir: &DataDir,
    config: &ServerConfig,
    start: &Start,
    clock: &dyn Clock,
    feed: &FeedToKeep,
) -> Result<Recovered> {
    let started_ns = clock.mono_ns();
    let mut faulter = None;
    let mut fault_result = Ok(());
    // The journal's end is not known until the replay has read it: the log is opened
    // without cutting anything, and cut back below if it turns out to run past the end.
    let open_feed = |resume_seq: u64, journal_end: u64| {
        let (feed, limits) = feed.as_ref()?;
        FeedWriter::open(&feed.dir, *limits, resume_seq, journal_end, feed.clone())
            .map_err(|e| {
                feed.stopped(&format!(
                    "opening the feed log in {}: {e}",
                    feed.dir.display()
                ))
            })
            .ok()
    };
    let mut replayed = dir.replay_with(
        &mut |engine| {
            // Background: the pages fault in alongside the replay of the journal.
            if config.engine.fault_in == "background" {
                match fault_in(engine, config, clock) {
                    Ok(handle) => faulter = handle,
                    Err(e) => fault_result = Err(e),
                }
            }
        },
        &mut |resume_seq| open_feed(resume_seq, u64::MAX),
    )?;
    let resume_seq = replayed.snapshot_seq.unwrap_or(0);
    let mut feed_writer = replayed.feed.take();
    if feed_writer
        .as_ref()
        .is_some_and(|w| w.through() > replayed.last_seq)
    {
        // The journal was cut behind the log (a failback, a restored backup).
        drop(feed_writer);
        feed_writer = open_feed(resume_seq, replayed.last_seq);
    }
    fault_result?;
    for warning in &replayed.warnings {
        log::line(
            log::Level::Warn,
            "recovery_notice",
            None,
            &[("detail", warning)],
        );
    }
    let configured = match start {
        Start::Standby {
            engine: Some(engine),
            ..
        } => *engine,
        _ => config.engine_config(),
    };
    let engine = if replayed.last_seq == 0 {
        Engine::new(configured)
    } else {
        if *replayed.engine.config() != configured {
            log::line(
                log::Level::Warn,
                "engine_config_from_journal",
                None,
                &[(
                    "detail",
                    &"the journal's engine configuration differs from the configured one; \
                      the journal's is used",
                )],
            );
        }
        replayed.engine
    };
    log::info(
        "recovered",
        &[
            ("last_seq", &replayed.last_seq),
            ("records_replayed", &replayed.records_replayed),
            ("snapshot_seq", &replayed.snapshot_seq.unwrap_or(0)),
            ("checkpoint", &replayed.checkpoint.unwrap_or(0)),
            ("snapshot_ms", &replayed.snapshot_load.as_millis()),
            (
                "ms",
                &(clock.mono_ns().saturating_sub(started_ns) / 1_000_000),
            ),
        ],
    );
    // A new engine, or one faulted in before serving, is faulted in now.
    if faulter.is_none() {
        faulter = fault_in(&engine, config, clock)?;
    }
    Ok(Recovered {
        engine,
        seq: replayed.last_seq,
        faulter,
        checkpoint: replayed.checkpoint,
        feed: feed_writer,
    })
}

/// Fault the serving engine's tables in: now, or on a thread of its own while the node
/// serves ("background": a restart then waits for the snapshot and the journal only; the
/// engine meets a page fault where it reaches a page first). Logs the memory they take.
fn fault_in(
    engine: &Engine,
    config: &ServerConfig,
    clock: &dyn Clock,
) -> Result<Option<JoinHandle<()>>> {
    /// Faulted in this much at a time, looking at the stop flag in between.
    const PIECE: usize = 64 << 20;
    let bytes = engine.memory_bytes();
    let regions = engine.regions();
    if config.engine.fault_in == "before_serving" {
        let started_ns = clock.mono_ns();
        for region in regions {
            region.populate();
        }
        log::info(
            "memory",
            &[
                ("engine_limits_bytes", &bytes),
                ("fault_in", &"before_serving"),
                (
                    "ms",
                    &(clock.mono_ns().saturating_sub(started_ns) / 1_000_000),
                ),
            ],
        );
        return Ok(None);
    }
    log::info(
        "memory",
        &[("engine_limits_bytes", &bytes), ("fault_in", &"background")],
    );
    let faulter = std::thread::Builder::new()
        .name("surge-fault-in".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            for piece in regions.into_iter().flat_map(|r| r.pieces(PIECE)) {
                piece.populate();
            }
            log::info(
                "memory_faulted_in",
                &[("bytes", &bytes), ("ms", &started.elapsed().as_millis())],
            );
        })
        .map_err(|e| ServerError::io("spawning the fault-in thread", e))?;
    Ok(Some(faulter))
}

/// This node's role and epochs at start. A primary whose epoch file names a newer epoch than
/// it leads was replaced while it was away: it starts fenced.
pub(super) fn node_epochs(dir: &DataDir, start: &Start, next_seq: u64) -> Result<(Role, Epochs)> {
    let root = dir.root();
    let loaded = Epochs::load(root).map_err(|e| ServerError::io("reading the epoch file", e))?;
    Ok(match (start, loaded) {
        (Start::Primary, None) => {
            let epochs = Epochs::first();
            epochs
                .store(root)
                .map_err(|e| ServerError::io("writing the epoch file", e))?;
            (Role::Primary, epochs)
        }
        (Start::Primary, Some(epochs)) if epochs.leads() => (Role::Primary, epochs),
        (Start::Primary, Some(epochs)) => {
            log::line(
                log::Level::Warn,
                "starting_fenced",
                Some(repl_code(replicator::ReplicationCode::Fenced)),
                &[
                    ("epoch", &epochs.epoch),
                    (
                        "detail",
                        &"a newer primary exists: writes are refused; rejoin with `surge standby`",
                    ),
                ],
            );
            (Role::Fenced, epochs)
        }
        (Start::Elected { epoch }, loaded) => {
            // Stored before anything is served: the journal's next record opens the epoch.
            let mut epochs = loaded.unwrap_or(Epochs {
                epoch: 0,
                history: Vec::new(),
            });
            epochs.promote_to((*epoch).max(epochs.epoch + 1), next_seq);
            epochs
                .store(root)
                .map_err(|e| ServerError::io("writing the epoch file", e))?;
            (Role::Primary, epochs)
        }
        (Start::Standby { .. }, loaded) => {
            let mut epochs = loaded.unwrap_or(Epochs {
                epoch: 0,
                history: Vec::new(),
            });
            if epochs.drop_unwritten(next_seq) {
                epochs
                    .store(root)
                    .map_err(|e| ServerError::io("writing the epoch file", e))?;
            }
            (Role::Standby, epochs)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_start_drops_and_stores_an_epoch_it_led_without_writing() {
        let root = std::env::temp_dir().join(format!("surge-recover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let mut led = Epochs::first();
        led.promote_to(6, 10_669);
        led.store(&root).unwrap();
        let start = Start::Standby {
            primary: "127.0.0.1:1".parse().unwrap(),
            engine: None,
        };
        let (role, epochs) = node_epochs(&DataDir::new(&root), &start, 10_669).unwrap();
        assert_eq!(role, Role::Standby);
        assert_eq!((epochs.epoch, epochs.history.clone()), (6, vec![(1, 1)]));
        assert_eq!(Epochs::load(&root).unwrap(), Some(epochs), "stored");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
