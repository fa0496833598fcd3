//! A surge data directory: `journal/` (segments), `snapshots/`, the `epoch` file and the
//! `lock`. This module knows where things are, holds the lock, writes snapshots and cuts the
//! journal for a failback. Rebuilding the state from it is `replay.rs`; appending to its
//! journal is `journaler.rs`.

use std::path::{Path, PathBuf};

use engine::Engine;
use journal::snapshot;
use journal::snapshot_writer::SnapshotWriter;
use journal::{FileStorage, IoMode, Storage};

use crate::error::{Result, ServerError};

pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.root.join("journal")
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Create the directory if it is not there.
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| ServerError::io(format!("creating {}", self.root.display()), e))
    }

    pub fn journal(&self, mode: IoMode) -> Result<FileStorage> {
        FileStorage::open(&self.journal_dir(), mode)
            .map_err(|e| ServerError::io(format!("opening {}", self.journal_dir().display()), e))
    }

    /// The last sequence in the journal, read through (0 for none): how far a node that is
    /// not running got (`coordination.rs` compares it with the other standbys').
    pub fn journal_last_seq(&self) -> Result<u64> {
        let journal = self.journal(IoMode::Pwritev2)?;
        let report = journal::scan(&journal, |_, _| {})
            .map_err(|e| ServerError::journal("reading the journal for its last sequence", e))?;
        Ok(report.last_seq.unwrap_or(0))
    }

    pub fn snapshots(&self) -> Result<FileStorage> {
        FileStorage::open(&self.snapshot_dir(), IoMode::Pwritev2)
            .map_err(|e| ServerError::io(format!("opening {}", self.snapshot_dir().display()), e))
    }

    /// Write a snapshot of `engine` as of `seq`; optionally retire covered segments.
    pub fn write_snapshot(
        &self,
        engine: &Engine,
        seq: u64,
        retention: &journal::retention::Retention,
    ) -> Result<(String, Vec<String>)> {
        let snapshots = self.snapshots()?;
        let (name, _) = write_engine_snapshot(&snapshots, engine, seq, snapshot::Pace::AT_ONCE)?;
        let journal = self.journal(IoMode::Pwritev2)?;
        let retired = journal::retention::prune(&journal, &self.journal_dir(), seq, retention)
            .map_err(|e| ServerError::journal("retiring covered segments", e))?;
        Ok((name, retired))
    }

    /// Whether it holds neither a journal segment nor a snapshot yet (a new node).
    pub fn is_empty(&self) -> Result<bool> {
        if !self.journal_dir().exists() {
            return Ok(true);
        }
        let journal = self.journal(IoMode::Pwritev2)?;
        let names = journal::scan::segment_names(&journal)
            .map_err(|e| ServerError::journal("listing segments", e))?;
        let snapshots = snapshot::snapshot_seqs(&self.snapshots()?)
            .map_err(|e| ServerError::journal("listing snapshots", e))?;
        Ok(names.is_empty() && snapshots.is_empty())
    }

    /// Cut everything after `seq` (failback): checkpoints, snapshots and journal records
    /// past it, in that order (a crash between leaves no state ahead of the journal).
    pub fn truncate_after(&self, seq: u64) -> Result<u64> {
        self.remove_checkpoints(|meta| meta.seq > seq)?;
        let snapshots = self.snapshots()?;
        let after: Vec<String> = snapshot::snapshot_seqs(&snapshots)
            .map_err(|e| ServerError::journal("listing snapshots", e))?
            .into_iter()
            .filter(|&s| s > seq)
            .map(snapshot::snapshot_name)
            .collect();
        remove_and_sync(&snapshots, "the snapshot directory", after)?;
        let journal = self.journal(IoMode::Pwritev2)?;
        let cut = journal::truncate_after(&journal, seq)
            .map_err(|e| ServerError::journal(format!("cutting the journal after {seq}"), e))?;
        // Epochs that began after the cut hold nothing here now: the history continues the
        // new primary's from here (`Epochs::adopt` takes only a history that continues it).
        let root = self.root();
        if let Some(mut epochs) = replicator::Epochs::load(root)
            .map_err(|e| ServerError::io("reading the epoch file", e))?
        {
            let before = epochs.clone();
            epochs.cut_after(seq);
            if epochs != before {
                epochs
                    .store(root)
                    .map_err(|e| ServerError::io("writing the epoch file", e))?;
            }
        }
        Ok(cut)
    }

    /// Open (recovering) the journal in `journal/`; a new journal starts with the engine
    /// configuration.
    pub fn journaler(
        &self,
        mode: journal::IoMode,
        config: &engine::EngineConfig,
        segment_len: u64,
        start_seq: u64,
    ) -> Result<(crate::pipeline::journaler::Journaler, String)> {
        crate::pipeline::journaler::Journaler::open_on(
            std::sync::Arc::new(self.journal(mode)?),
            config,
            segment_len,
            start_seq,
        )
    }
}

/// Where a standby puts the snapshot a primary sends it, piece by piece, before it starts
/// over from it (in `snapshots/`, under a name no snapshot has).
const STAGED_SNAPSHOT: &str = "incoming.snap.tmp";

impl DataDir {
    /// Where what the primary sends a standby that fell behind is staged.
    pub fn staged_snapshot_path(&self) -> PathBuf {
        self.snapshot_dir().join(STAGED_SNAPSHOT)
    }
}

impl DataDir {
    /// Write a piece of the snapshot a primary is sending (the first piece starts a new file).
    pub fn stage_snapshot_piece(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        if offset == 0 {
            std::fs::create_dir_all(self.snapshot_dir())
                .map_err(|e| ServerError::io("making the snapshot directory", e))?;
        }
        let path = self.staged_snapshot_path();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(offset == 0)
            .open(&path)
            .and_then(|f| f.write_all_at(bytes, offset).map(|()| f))
            .map_err(|e| ServerError::io(format!("writing {}", path.display()), e))?;
        drop(file);
        Ok(())
    }

    /// Start over from the staged snapshot taken at `seq`: check it, drop the journal and
    /// every other snapshot (all older than it, on a standby too far behind to follow), and
    /// make it the snapshot; synced. The journal then continues at `seq + 1`.
    /// What was staged may be a checkpoint chain instead (`adopt_staged_chain`).
    pub fn adopt_staged_snapshot(&self, seq: u64) -> Result<()> {
        let staged = self.staged_snapshot_path();
        let is_chain = journal::checkpoint_bundle::is_bundle(&staged)
            .map_err(|e| ServerError::io("reading the staged snapshot", e))?;
        if is_chain {
            return self.adopt_staged_chain(seq);
        }
        let snapshots = self.snapshots()?;
        let staged = snapshots
            .read(STAGED_SNAPSHOT)
            .map_err(|e| ServerError::io("reading the staged snapshot", e))?;
        let (said, _) = snapshot::check_snapshot(&staged).map_err(|why| ServerError::Snapshot {
            seq,
            why: format!("as received: {why}"),
        })?;
        if said != seq {
            return Err(ServerError::Snapshot {
                seq,
                why: format!("the file received says sequence {said}"),
            });
        }
        drop(staged);
        // The checkpoints go first: they build on the journal about to go.
        self.remove_checkpoints(|_| true)?;
        snapshots
            .sync(STAGED_SNAPSHOT)
            .map_err(|e| ServerError::io("syncing the staged snapshot", e))?;
        self.forget_history(|name| name != STAGED_SNAPSHOT)?;
        snapshots
            .rename(STAGED_SNAPSHOT, &snapshot::snapshot_name(seq))
            .and_then(|()| snapshots.sync_dir())
            .map_err(|e| ServerError::io("keeping the received snapshot", e))?;
        Ok(())
    }
}

impl DataDir {
    /// Remove every journal segment and the snapshots `drop` names, each directory synced:
    /// a standby starting over from what its primary sent (all of it older).
    pub(super) fn forget_history(&self, drop: impl Fn(&str) -> bool) -> Result<()> {
        let journal = self.journal(IoMode::Pwritev2)?;
        let segments = journal
            .list()
            .map_err(|e| ServerError::io("listing the journal", e))?;
        remove_and_sync(&journal, "the journal directory", segments)?;
        let snapshots = self.snapshots()?;
        let dropped: Vec<String> = snapshots
            .list()
            .map_err(|e| ServerError::io("listing snapshots", e))?
            .into_iter()
            .filter(|name| drop(name))
            .collect();
        remove_and_sync(&snapshots, "the snapshot directory", dropped)
    }
}

/// Remove `names` from `dir` (`what` names it in errors), then sync the directory.
fn remove_and_sync(dir: &FileStorage, what: &str, names: Vec<String>) -> Result<()> {
    for name in names {
        dir.remove(&name)
            .map_err(|e| ServerError::io(format!("removing {name} from {what}"), e))?;
    }
    dir.sync_dir()
        .map_err(|e| ServerError::io(format!("syncing {what}"), e))
}

/// An exclusive lock on a data directory (`DIR/lock`, flock), held while a server runs:
/// a second process on the same directory would interleave its writes with the first's.
pub struct DirLock {
    _file: std::fs::File,
}

impl DataDir {
    pub fn lock(&self) -> Result<DirLock> {
        use std::os::fd::AsRawFd;
        let path = self.root.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ServerError::io(format!("opening {}", path.display()), e))?;
        // SAFETY: flock on a descriptor this function owns, open for the whole call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(ServerError::DataDirInUse {
                dir: self.root.clone(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(DirLock { _file: file })
    }
}

/// Write `engine`'s snapshot as of `seq` into `snapshots`, archived straight into the file
/// as `pace` allows (no copy of the state is built in memory). Its name and payload bytes.
pub fn write_engine_snapshot(
    snapshots: &dyn Storage,
    engine: &Engine,
    seq: u64,
    pace: snapshot::Pace,
) -> Result<(String, u64)> {
    let journal_error = |e| ServerError::journal("writing a snapshot", e);
    let mut writer = SnapshotWriter::create(snapshots, seq, pace).map_err(journal_error)?;
    if let Err(e) = engine.write_snapshot_archive(&mut writer) {
        return Err(journal_error(writer.abandon("archiving the engine", e)));
    }
    let bytes = writer.payload_len();
    let name = writer.finish(engine.hash()).map_err(journal_error)?;
    Ok((name, bytes))
}
