//! Rebuilding the engine from a data directory: the newest valid snapshot, then every journal
//! record after it, applied with a short look-ahead so the engine can prefetch what each
//! request will touch (as the engine stage does). Corruption is an error carrying the
//! journal's code.

use std::collections::VecDeque;

use engine::codec::{self, kind};
use engine::{Engine, EngineConfig, Output, Request, TimestampNs};
use journal::{snapshot, IoMode, JournalError};

use crate::checkpoint::data_dir::DataDir;
use crate::error::{Result, ServerError};
use crate::feed::writer::FeedWriter;

/// What `replay` rebuilt, and how.
pub struct Replayed {
    pub engine: Engine,
    /// The last sequence applied (0 if none).
    pub last_seq: u64,
    pub records_replayed: u64,
    /// The sequence of the snapshot or checkpoint the replay started from.
    pub snapshot_seq: Option<u64>,
    /// The checkpoint it started from, if it was one (not a snapshot).
    pub checkpoint: Option<u64>,
    /// Time spent reading, checking and restoring the snapshot.
    pub snapshot_load: std::time::Duration,
    /// Notices worth logging: damaged snapshots skipped, a torn tail.
    pub warnings: Vec<String>,
    /// The feed log `open_feed` opened, through `last_seq` (`None`: none, or it failed).
    pub feed: Option<FeedWriter>,
}

/// An engine restored from a snapshot, and the sequence it is at.
pub type Restored = (Engine, u64);

/// Requests decoded ahead of the one being applied.
const REPLAY_LOOKAHEAD: usize = 4;

impl DataDir {
    /// The engine of the newest valid snapshot and its sequence, if there is one, and a
    /// notice for each damaged snapshot skipped.
    pub fn newest_snapshot(&self) -> Result<(Option<Restored>, Vec<String>)> {
        let snapshots = self.snapshots()?;
        let (snapshot, warnings) = snapshot::load_newest(&snapshots)
            .map_err(|e| ServerError::journal("loading the newest snapshot", e))?;
        let Some(snapshot) = snapshot else {
            return Ok((None, warnings));
        };
        let seq = snapshot.seq;
        let state =
            Engine::restore_from_bytes(snapshot.payload()).map_err(|e| ServerError::Snapshot {
                seq,
                why: e.to_string(),
            })?;
        if state.hash() != snapshot.check {
            return Err(ServerError::Snapshot {
                seq,
                why: "its rolling hash disagrees with its header".into(),
            });
        }
        Ok((Some((state, seq)), warnings))
    }

    /// Rebuild the engine: newest valid snapshot, then every journal record after it.
    pub fn replay(&self) -> Result<Replayed> {
        self.replay_with(&mut |_| {}, &mut |_| None)
    }

    /// `replay`, calling `made` once with the engine as soon as it exists (restored from the
    /// snapshot, or made by the journal's configuration record), before the journal is
    /// applied to it: the server starts faulting its tables in then, alongside the replay.
    /// `open_feed` is called with the sequence the replay starts from; the feed log it opens
    /// gets the events of every replayed sequence it misses (what the node applied but had
    /// not yet released to its feed stage when it stopped), and comes back in `feed`.
    pub fn replay_with(
        &self,
        made: &mut dyn FnMut(&Engine),
        open_feed: &mut dyn FnMut(u64) -> Option<FeedWriter>,
    ) -> Result<Replayed> {
        let loading = std::time::Instant::now();
        // The newer of the newest checkpoint chain and the newest snapshot.
        let newest_snapshot_seq = snapshot::snapshot_seqs(&self.snapshots()?)
            .map_err(|e| ServerError::journal("listing snapshots", e))?
            .last()
            .copied()
            .unwrap_or(0);
        let (from_checkpoint, mut warnings) = self.newest_checkpoint(newest_snapshot_seq)?;
        let (newest, checkpoint) = match from_checkpoint {
            Some(c) => (Some((c.engine, c.seq)), Some(c.number)),
            None => {
                let (newest, more) = self.newest_snapshot()?;
                warnings.extend(more);
                (newest, None)
            }
        };
        let snapshot_load = loading.elapsed();
        let (engine, snapshot_seq) = match newest {
            Some((engine, seq)) => (Some(engine), Some(seq)),
            None => (None, None),
        };
        let mut told = false;
        if let Some(engine) = &engine {
            made(engine);
            told = true;
        }
        let journal = self.journal(IoMode::Pwritev2)?;
        let after = snapshot_seq.unwrap_or(0);
        let mut applier = Applier::new(engine);
        applier.feed = open_feed(after);
        let mut records = 0u64;
        let mut last_seq = after;
        let mut failure: Option<ServerError> = None;
        let report = journal::scan_from(&journal, after + 1, |record, at| {
            if failure.is_some() || record.seq <= after {
                return;
            }
            if record.seq != last_seq + 1 {
                failure = Some(ServerError::journal(
                    "replaying",
                    JournalError::new(
                        journal::ErrorCode::MissingSegment,
                        format!(
                            "the journal resumes at {} but the snapshot ends at {after}",
                            record.seq
                        ),
                    ),
                ));
                return;
            }
            let pushed = applier.push(record);
            if !told {
                if let Some(engine) = applier.engine() {
                    made(engine);
                    told = true;
                }
            }
            if let Err(e) = pushed {
                failure = Some(match e {
                    ServerError::Record { seq, why } => ServerError::Record {
                        seq,
                        why: format!("{why} (segment {}, offset {})", at.segment, at.offset),
                    },
                    other => other,
                });
                return;
            }
            records += 1;
            last_seq = record.seq;
        })
        .map_err(|e| ServerError::journal("replaying", e))?;
        if let Some(e) = failure {
            return Err(e);
        }
        let feed = applier.take_feed(last_seq);
        let engine = applier.finish();
        if let (Some(seq), Some(end)) = (snapshot_seq, report.last_seq) {
            if end < seq {
                return Err(ServerError::journal(
                    "replaying",
                    JournalError::new(
                        journal::ErrorCode::SnapshotAheadOfJournal,
                        format!("snapshot at {seq}, journal ends at {end}"),
                    ),
                ));
            }
        }
        if let Some(torn) = &report.torn_tail {
            warnings.push(format!(
                "{}: a torn record at the tail will be cut at the next start (segment {}, \
                 offset {}, sequence {})",
                journal::ErrorCode::TailTruncated,
                torn.location.segment,
                torn.location.offset,
                torn.location.sequence
            ));
        }
        let engine = engine.unwrap_or_else(|| Engine::new(EngineConfig::default()));
        Ok(Replayed {
            engine,
            last_seq,
            records_replayed: records,
            snapshot_seq,
            checkpoint,
            snapshot_load,
            warnings,
            feed,
        })
    }
}

/// Applies journal records to the engine being rebuilt (created by the config record), and
/// hands what each command did to the feed writer, if it has one.
pub struct Applier {
    engine: Option<Engine>,
    ahead: VecDeque<(u64, TimestampNs, Request)>,
    out: Output,
    pub feed: Option<FeedWriter>,
}

impl Applier {
    pub fn new(engine: Option<Engine>) -> Applier {
        Applier {
            engine,
            ahead: VecDeque::with_capacity(REPLAY_LOOKAHEAD + 1),
            out: Output::default(),
            feed: None,
        }
    }

    /// Decode `record`, prefetch for it, and apply the one `REPLAY_LOOKAHEAD` before it.
    pub fn push(&mut self, record: &journal::Record<'_>) -> Result<()> {
        let bad = |why: String| ServerError::Record {
            seq: record.seq,
            why,
        };
        if record.kind == kind::ENGINE_CONFIG {
            if self.engine.is_some() {
                return Err(bad(
                    "an engine configuration record in the middle of the journal".into(),
                ));
            }
            let config = codec::decode_config(record.payload).map_err(|e| bad(e.to_string()))?;
            self.engine = Some(Engine::new(config));
            return Ok(());
        }
        let request = codec::decode_request(record.payload).map_err(|e| bad(e.to_string()))?;
        if request.command.kind() != record.kind {
            return Err(bad(format!(
                "record kind {} but the payload is {}",
                record.kind,
                codec::kind_name(request.command.kind())
            )));
        }
        engine_or_default(&mut self.engine).prefetch(&request);
        self.ahead
            .push_back((record.seq, record.timestamp_ns, request));
        if self.ahead.len() > REPLAY_LOOKAHEAD {
            self.apply_oldest();
        }
        Ok(())
    }

    /// Apply everything still ahead: the engine is now at the last record pushed.
    pub fn drain(&mut self) {
        while !self.ahead.is_empty() {
            self.apply_oldest();
        }
    }

    /// The engine being rebuilt (records still ahead not yet applied: `drain` first).
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }

    pub fn engine_mut(&mut self) -> Option<&mut Engine> {
        self.engine.as_mut()
    }

    fn apply_oldest(&mut self) {
        let Some((seq, now_ns, request)) = self.ahead.pop_front() else {
            return;
        };
        let engine = engine_or_default(&mut self.engine);
        engine.apply(now_ns, &request, &mut self.out);
        if let Some(feed) = &mut self.feed {
            feed.applied(seq, now_ns, &request, &self.out, engine);
        }
    }

    /// Apply what is still ahead; the rebuilt engine.
    pub fn finish(mut self) -> Option<Engine> {
        self.drain();
        self.engine
    }

    /// Apply what is still ahead, through `last_seq`, and hand over the feed log with every
    /// event through `last_seq` written (`None`: there is none, or writing it failed).
    pub fn take_feed(&mut self, last_seq: u64) -> Option<FeedWriter> {
        self.drain();
        let mut feed = self.feed.take()?;
        match feed.processed(last_seq) {
            Ok(()) => Some(feed),
            Err(e) => {
                feed.shared().stopped(&e);
                None
            }
        }
    }
}

/// A journal that does not start with a configuration record runs on the defaults.
fn engine_or_default(engine: &mut Option<Engine>) -> &mut Engine {
    engine.get_or_insert_with(|| Engine::new(EngineConfig::default()))
}
