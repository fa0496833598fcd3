//! Restoring the engine from checkpoint files (`checkpoints/` in the data directory): the
//! newest chain that is whole — a full checkpoint and each delta after it, every file
//! checked — applied newest first (a chunk a newer one holds is skipped undecoded), then the
//! newest head. A file that fails a check is
//! skipped with a notice, and with it every delta that builds on it: the restore falls back
//! to the chain's last good checkpoint, or to an older chain. Which checkpoints a failback
//! cut or an adopted snapshot makes stale is decided here too, and which chain a primary
//! sends a standby that fell behind, and how the standby takes it in.

use std::collections::BTreeMap;
use std::path::PathBuf;

use engine::checkpoint::{EngineHead, Restorer};
use engine::Engine;
use journal::checkpoint_bundle;
use journal::checkpoint_file::{self, CheckpointFile, CheckpointMeta};
use replicator::primary::Chain;

use crate::checkpoint::data_dir::DataDir;
use crate::error::{Result, ServerError};

/// An engine restored from a chain: the engine, the sequence it reaches and the number of
/// its newest checkpoint (a delta cut next may build on it).
pub struct FromCheckpoint {
    pub engine: Engine,
    pub seq: u64,
    pub number: u64,
}

impl DataDir {
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.root().join("checkpoints")
    }

    /// The checkpoints on disk whose headers read, by number; a notice for each that does
    /// not.
    pub fn checkpoint_metas(&self) -> Result<(BTreeMap<u64, CheckpointMeta>, Vec<String>)> {
        let dir = self.checkpoint_dir();
        let listed = checkpoint_file::list(&dir)
            .map_err(|e| ServerError::io(format!("listing {}", dir.display()), e))?;
        let mut metas = BTreeMap::new();
        let mut notices = Vec::new();
        for (number, path) in listed {
            match checkpoint_file::read_meta(&path) {
                Ok(meta) if meta.number == number => {
                    metas.insert(number, meta);
                }
                Ok(_) => notices.push(format!(
                    "{}: its header names another number",
                    path.display()
                )),
                Err(why) => notices.push(format!("{}: {why}; not used", path.display())),
            }
        }
        Ok((metas, notices))
    }

    /// The engine of the newest whole chain that reaches past `past_seq` (the newest
    /// snapshot's sequence: an older chain is not worth restoring), with a notice for each
    /// file skipped. Leftover `.tmp` files of a crash mid-write are removed first.
    pub fn newest_checkpoint(
        &self,
        past_seq: u64,
    ) -> Result<(Option<FromCheckpoint>, Vec<String>)> {
        let dir = self.checkpoint_dir();
        checkpoint_file::remove_unfinished(&dir)
            .map_err(|e| ServerError::io(format!("clearing {}", dir.display()), e))?;
        let (metas, mut notices) = self.checkpoint_metas()?;
        let mut bad: Vec<u64> = Vec::new();
        for (&newest, meta) in metas.iter().rev() {
            if meta.seq <= past_seq {
                break;
            }
            let Some(chain) = chain_to(&metas, newest) else {
                continue; // a delta whose base or parent is gone
            };
            if chain.iter().any(|n| bad.contains(n)) {
                continue;
            }
            match self.restore_chain(&chain) {
                Ok(engine) => {
                    return Ok((
                        Some(FromCheckpoint {
                            engine,
                            seq: meta.seq,
                            number: newest,
                        }),
                        notices,
                    ))
                }
                Err((number, why)) => {
                    notices.push(format!(
                        "{}: {why}; the chain falls back before it",
                        checkpoint_file::checkpoint_name(number)
                    ));
                    bad.push(number);
                }
            }
        }
        Ok((None, notices))
    }

    /// Restore the chain `numbers` (a full checkpoint first), applying the newest first so
    /// each chunk is decoded once; on failure, the file at fault.
    fn restore_chain(&self, numbers: &[u64]) -> std::result::Result<Engine, (u64, String)> {
        let mut restorer: Option<Restorer> = None;
        let mut newest: Option<(u64, EngineHead, CheckpointMeta)> = None;
        for &number in numbers.iter().rev() {
            let path = self
                .checkpoint_dir()
                .join(checkpoint_file::checkpoint_name(number));
            let file = CheckpointFile::read(&path).map_err(|why| (number, why))?;
            let head = EngineHead::from_bytes(file.head()).map_err(|e| (number, e.to_string()))?;
            let restorer = restorer.get_or_insert_with(|| Restorer::new(head.config));
            if head.config != *restorer.config() {
                return Err((number, "its engine config differs from its chain's".into()));
            }
            for frame in file.frames() {
                let frame = frame.map_err(|why| (number, why))?;
                restorer
                    .apply(frame.table, frame.chunk, frame.elements, frame.payload)
                    .map_err(|e| (number, e.to_string()))?;
            }
            newest.get_or_insert((number, head, file.meta));
        }
        let (number, head, meta) = newest.expect("a chain has a checkpoint");
        let restorer = restorer.expect("a chain has a checkpoint");
        let engine = restorer
            .finish(&head)
            .map_err(|e| (number, e.to_string()))?;
        if engine.hash() != meta.hash || head.hash != meta.hash {
            return Err((
                number,
                "the restored engine's hash disagrees with its header".into(),
            ));
        }
        Ok(engine)
    }

    /// Remove the checkpoints `stale` picks (by header; unreadable ones too), synced.
    pub fn remove_checkpoints(&self, stale: impl Fn(&CheckpointMeta) -> bool) -> Result<u64> {
        let dir = self.checkpoint_dir();
        let listed = checkpoint_file::list(&dir)
            .map_err(|e| ServerError::io(format!("listing {}", dir.display()), e))?;
        let mut removed = 0;
        for (_, path) in listed {
            if checkpoint_file::read_meta(&path).map_or(true, |meta| stale(&meta)) {
                std::fs::remove_file(&path)
                    .map_err(|e| ServerError::io(format!("removing {}", path.display()), e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| ServerError::io(format!("syncing {}", dir.display()), e))?;
        }
        Ok(removed)
    }
}

impl DataDir {
    /// The newest chain whose every file checks whole, for a standby to start from: the
    /// sequence it reaches and its files, full checkpoint first.
    pub fn newest_chain_files(&self) -> Result<Option<Chain>> {
        let (metas, _) = self.checkpoint_metas()?;
        let path = |n: u64| {
            self.checkpoint_dir()
                .join(checkpoint_file::checkpoint_name(n))
        };
        for (&newest, meta) in metas.iter().rev() {
            let Some(chain) = chain_to(&metas, newest) else {
                continue;
            };
            if chain
                .iter()
                .all(|&n| CheckpointFile::read(&path(n)).is_ok())
            {
                let files = chain.iter().map(|&n| (n, path(n))).collect();
                return Ok(Some(Chain {
                    seq: meta.seq,
                    files,
                }));
            }
        }
        Ok(None)
    }

    /// Start over from the checkpoint chain a primary sent (staged as a bundle) reaching
    /// `seq`: unpack it beside the checkpoints and check every file and link, then drop
    /// the checkpoints, the journal and the snapshots (all older, on a standby too far
    /// behind to follow), and move the chain in; synced. A crash part-way leaves an empty
    /// node (it bootstraps again), never a mix. The journal then continues at `seq + 1`.
    pub fn adopt_staged_chain(&self, seq: u64) -> Result<()> {
        let received = self.root().join("checkpoints.received");
        let bad = |why: String| ServerError::Snapshot {
            seq,
            why: format!("the checkpoint chain as received: {why}"),
        };
        let (metas, said) =
            checkpoint_bundle::unpack(&self.staged_snapshot_path(), &received).map_err(bad)?;
        let by_number: BTreeMap<u64, CheckpointMeta> =
            metas.iter().map(|m| (m.number, *m)).collect();
        let newest = metas.last().ok_or_else(|| bad("no checkpoints".into()))?;
        let whole = chain_to(&by_number, newest.number).is_some_and(|c| c.len() == metas.len());
        if said != seq || newest.seq != seq || !whole {
            return Err(bad(format!(
                "it says it reaches {said}, its newest file {}, the stream {seq}; whole: {whole}",
                newest.seq
            )));
        }
        self.remove_checkpoints(|_| true)?;
        self.forget_history(|_| true)?;
        let dir = self.checkpoint_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| ServerError::io(format!("making {}", dir.display()), e))?;
        for meta in &metas {
            let name = checkpoint_file::checkpoint_name(meta.number);
            std::fs::rename(received.join(&name), dir.join(&name))
                .map_err(|e| ServerError::io(format!("moving {name} into place"), e))?;
        }
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ServerError::io(format!("syncing {}", dir.display()), e))?;
        let _ = std::fs::remove_dir_all(&received);
        Ok(())
    }
}

/// The chain that ends at `newest`, full checkpoint first; `None` if a link is missing.
pub fn chain_to(metas: &BTreeMap<u64, CheckpointMeta>, newest: u64) -> Option<Vec<u64>> {
    let mut chain = vec![newest];
    let mut at = metas.get(&newest)?;
    while !at.full {
        at = metas.get(&at.parent)?;
        chain.push(at.number);
    }
    chain.reverse();
    Some(chain)
}

/// The oldest full checkpoint among the newest `keep` (the chains before it may go), if
/// there is a full one.
pub fn oldest_kept(metas: &BTreeMap<u64, CheckpointMeta>, keep: usize) -> Option<u64> {
    metas
        .values()
        .rev()
        .filter(|m| m.full)
        .take(keep)
        .last()
        .map(|m| m.number)
}
