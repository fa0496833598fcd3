//! A surge data directory: `journal/` (segments) and `snapshots/`. This module ties the
//! byte-level journal to the engine: requests become records (rkyv payload, command kind),
//! the first record of a journal holds the engine configuration, and replay rebuilds the
//! engine as newest valid snapshot + every record after it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use engine::codec::{self, kind};
use engine::{Engine, EngineConfig, EngineSnapshot, Output, Request, TimestampNs};
use journal::snapshot;
use journal::{FileStorage, IoMode, JournalError, JournalWriter, RecordOut, Storage};

pub struct DataDir {
    root: PathBuf,
}

/// What `replay` rebuilt, and how.
pub struct Replayed {
    pub engine: Engine,
    /// The last sequence applied (0 if none).
    pub last_seq: u64,
    pub records_replayed: u64,
    pub snapshot_seq: Option<u64>,
    /// Notices worth logging: damaged snapshots skipped, a torn tail.
    pub warnings: Vec<String>,
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_path_buf(),
        }
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn journal(&self, mode: IoMode) -> anyhow::Result<FileStorage> {
        FileStorage::open(&self.journal_dir(), mode)
            .with_context(|| format!("opening {}", self.journal_dir().display()))
    }

    pub fn snapshots(&self) -> anyhow::Result<FileStorage> {
        FileStorage::open(&self.snapshot_dir(), IoMode::Pwritev2)
            .with_context(|| format!("opening {}", self.snapshot_dir().display()))
    }

    /// Rebuild the engine: newest valid snapshot, then every journal record after it.
    /// Corruption is an error carrying the journal's code.
    pub fn replay(&self) -> anyhow::Result<Replayed> {
        let snapshots = self.snapshots()?;
        let (snapshot, mut warnings) = snapshot::load_newest(&snapshots)?;
        let mut engine = None;
        let mut snapshot_seq = None;
        if let Some(snapshot) = snapshot {
            let state = EngineSnapshot::from_bytes(&snapshot.payload)
                .and_then(Engine::restore)
                .map_err(|e| anyhow!("snapshot at sequence {}: {e}", snapshot.seq))?;
            if state.hash() != snapshot.check {
                bail!(
                    "snapshot at sequence {}: its rolling hash disagrees with its header",
                    snapshot.seq
                );
            }
            engine = Some(state);
            snapshot_seq = Some(snapshot.seq);
        }
        let journal = self.journal(IoMode::Pwritev2)?;
        let after = snapshot_seq.unwrap_or(0);
        let mut applier = Applier::new(engine);
        let mut records = 0u64;
        let mut last_seq = after;
        let mut failure: Option<anyhow::Error> = None;
        let report = journal::scan(&journal, |record, at| {
            if failure.is_some() || record.seq <= after {
                return;
            }
            if record.seq != last_seq + 1 {
                failure = Some(anyhow!(
                    "{}: the journal resumes at {} but the snapshot ends at {after}",
                    journal::ErrorCode::MissingSegment,
                    record.seq
                ));
                return;
            }
            let applied = applier.push(record);
            if let Err(e) = applied {
                failure = Some(e.context(format!(
                    "record {} (segment {}, offset {})",
                    record.seq, at.segment, at.offset
                )));
                return;
            }
            records += 1;
            last_seq = record.seq;
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let engine = applier.finish();
        if let (Some(seq), Some(end)) = (snapshot_seq, report.last_seq) {
            if end < seq {
                return Err(JournalError::new(
                    journal::ErrorCode::SnapshotAheadOfJournal,
                    format!("snapshot at {seq}, journal ends at {end}"),
                )
                .into());
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
            warnings,
        })
    }

    /// Write a snapshot of `engine` as of `seq`; optionally retire covered segments.
    pub fn write_snapshot(
        &self,
        engine: &Engine,
        seq: u64,
        retention: &journal::retention::Retention,
    ) -> anyhow::Result<(String, Vec<String>)> {
        let snapshots = self.snapshots()?;
        let payload = engine.snapshot().to_bytes();
        let name = snapshot::write_snapshot(&snapshots, seq, engine.hash(), &payload)?;
        let journal = self.journal(IoMode::Pwritev2)?;
        let retired = journal::retention::prune(&journal, &self.journal_dir(), seq, retention)?;
        Ok((name, retired))
    }
}

/// An exclusive lock on a data directory (`DIR/lock`, flock), held while a server runs:
/// a second process on the same directory would interleave its writes with the first's.
pub struct DirLock {
    _file: std::fs::File,
}

impl DataDir {
    pub fn lock(&self) -> anyhow::Result<DirLock> {
        use std::os::fd::AsRawFd;
        let path = self.root.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!(
                "{} is in use by another surge process ({})",
                self.root.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(DirLock { _file: file })
    }

    /// Whether the journal holds no segment yet (a new node).
    pub fn is_empty(&self) -> anyhow::Result<bool> {
        if !self.journal_dir().exists() {
            return Ok(true);
        }
        let journal = self.journal(IoMode::Pwritev2)?;
        Ok(journal::scan::segment_names(&journal)?.is_empty())
    }

    /// Cut everything after `seq` (failback): journal records and snapshots past it.
    pub fn truncate_after(&self, seq: u64) -> anyhow::Result<u64> {
        let journal = self.journal(IoMode::Pwritev2)?;
        let cut = journal::truncate_after(&journal, seq)?;
        let snapshots = self.snapshots()?;
        for name in snapshots.list().context("listing snapshots")? {
            let covers = name
                .strip_suffix(".snap")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|s| s > seq);
            if covers {
                snapshots
                    .remove(&name)
                    .with_context(|| format!("removing snapshot {name}"))?;
            }
        }
        snapshots
            .sync_dir()
            .context("syncing the snapshot directory")?;
        Ok(cut)
    }
}

/// Requests decoded ahead of the one being applied, so the engine can prefetch what each
/// will touch while it applies the ones before (as the engine stage does).
const REPLAY_LOOKAHEAD: usize = 4;

/// Applies journal records to the engine being rebuilt (created by the config record).
struct Applier {
    engine: Option<Engine>,
    ahead: std::collections::VecDeque<(TimestampNs, Request)>,
    out: Output,
}

impl Applier {
    fn new(engine: Option<Engine>) -> Applier {
        Applier {
            engine,
            ahead: std::collections::VecDeque::with_capacity(REPLAY_LOOKAHEAD + 1),
            out: Output::default(),
        }
    }

    /// Decode `record`, prefetch for it, and apply the one `REPLAY_LOOKAHEAD` before it.
    fn push(&mut self, record: &journal::Record<'_>) -> anyhow::Result<()> {
        if record.kind == kind::ENGINE_CONFIG {
            if self.engine.is_some() {
                bail!("an engine configuration record in the middle of the journal");
            }
            self.engine = Some(Engine::new(codec::decode_config(record.payload)?));
            return Ok(());
        }
        let request = codec::decode_request(record.payload)?;
        if request.command.kind() != record.kind {
            bail!(
                "record kind {} but the payload is {}",
                record.kind,
                codec::kind_name(request.command.kind())
            );
        }
        engine_or_default(&mut self.engine).prefetch(&request);
        self.ahead.push_back((record.timestamp_ns, request));
        if self.ahead.len() > REPLAY_LOOKAHEAD {
            self.apply_oldest();
        }
        Ok(())
    }

    fn apply_oldest(&mut self) {
        let Some((now_ns, request)) = self.ahead.pop_front() else {
            return;
        };
        engine_or_default(&mut self.engine).apply(now_ns, &request, &mut self.out);
    }

    /// Apply what is still ahead; the rebuilt engine.
    fn finish(mut self) -> Option<Engine> {
        while !self.ahead.is_empty() {
            self.apply_oldest();
        }
        self.engine
    }
}

/// A journal that does not start with a configuration record runs on the defaults.
fn engine_or_default(engine: &mut Option<Engine>) -> &mut Engine {
    engine.get_or_insert_with(|| Engine::new(EngineConfig::default()))
}

/// Appends requests to a data directory's journal, as the server's journaler will.
pub struct Journaler {
    writer: JournalWriter,
    payload: Vec<u8>,
}

impl Journaler {
    /// Open (recovering) the journal; a new journal starts with the engine configuration.
    pub fn open(
        dir: &DataDir,
        mode: IoMode,
        config: &EngineConfig,
    ) -> anyhow::Result<(Journaler, String)> {
        Journaler::open_dir(dir, mode, config, journal::writer::SEGMENT_LEN_DEFAULT)
    }

    pub fn open_dir(
        dir: &DataDir,
        mode: IoMode,
        config: &EngineConfig,
        segment_len: u64,
    ) -> anyhow::Result<(Journaler, String)> {
        Journaler::open_on(Arc::new(dir.journal(mode)?), config, segment_len)
    }

    /// Open the journal on any storage (tests slow it down or make it fail).
    pub fn open_on(
        storage: Arc<dyn Storage>,
        config: &EngineConfig,
        segment_len: u64,
    ) -> anyhow::Result<(Journaler, String)> {
        let described = storage.describe();
        let recovered = journal::recover(storage.as_ref())?;
        if let Some(notice) = recovered.cut_notice() {
            crate::server::log::line(
                crate::server::log::Level::Warn,
                "journal_tail_cut",
                Some(crate::server::log::journal_code(
                    journal::ErrorCode::TailTruncated,
                )),
                &[("detail", &notice)],
            );
        }
        let mut writer = JournalWriter::open(storage, &recovered, segment_len, 1)?;
        if writer.next_seq() == 1 {
            let payload = codec::encode_config(config);
            writer.append(RecordOut {
                seq: 1,
                timestamp_ns: 0,
                kind: kind::ENGINE_CONFIG,
                payload: &payload,
            })?;
            writer.commit()?;
        }
        let journaler = Journaler {
            writer,
            payload: Vec::new(),
        };
        Ok((journaler, described))
    }

    pub fn next_seq(&self) -> u64 {
        self.writer.next_seq()
    }

    /// See each commit's records before they are written (the replicator's backlog).
    pub fn set_tap(&mut self, tap: journal::writer::Tap) {
        self.writer.set_tap(tap);
    }

    pub fn append(&mut self, now_ns: TimestampNs, request: &Request) -> anyhow::Result<u64> {
        self.payload.clear();
        codec::encode_request(request, &mut self.payload);
        let seq = self.writer.next_seq();
        self.writer.append(RecordOut {
            seq,
            timestamp_ns: now_ns,
            kind: request.command.kind(),
            payload: &self.payload,
        })?;
        Ok(seq)
    }

    /// Group commit; returns the durable sequence.
    pub fn commit(&mut self) -> anyhow::Result<u64> {
        Ok(self.writer.commit()?)
    }
}
