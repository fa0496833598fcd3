//! Journal retention: segments wholly covered by a snapshot (every record in them is at or
//! below its sequence) are no longer needed to rebuild the state. They are deleted or moved
//! to an archive folder or kept for the writer to reuse; the last segment never is.

use std::path::Path;

use crate::error::{JournalError, Result};
use crate::scan::segment_names;
use crate::segment_files::{recycled_name, recycled_names};
use crate::storage::Storage;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retention {
    Keep,
    Delete,
    /// Move to this directory (same file system).
    Archive(std::path::PathBuf),
    /// Keep up to `RECYCLED_MAX` as `<first sequence>.recycle` for the writer to reuse
    /// instead of zero-filling a new file; delete the rest.
    Recycle,
}

/// Recycled segments kept at most: enough for the writer to never zero-fill while it keeps
/// up with snapshots.
pub const RECYCLED_MAX: usize = 8;
/// Segments all of whose records are `<= snapshot_seq`: those followed by a segment that
/// starts at or below `snapshot_seq + 1`.
pub fn covered_segments(storage: &dyn Storage, snapshot_seq: u64) -> Result<Vec<String>> {
    let names = segment_names(storage)?;
    Ok(names
        .windows(2)
        .filter(|pair| pair[1].0 <= snapshot_seq + 1)
        .map(|pair| pair[0].1.clone())
        .collect())
}

/// Apply `retention` to the segments `snapshot_seq` covers in `journal_dir`; returns them.
pub fn prune(
    storage: &dyn Storage,
    journal_dir: &Path,
    snapshot_seq: u64,
    retention: &Retention,
) -> Result<Vec<String>> {
    if *retention == Retention::Keep {
        return Ok(Vec::new());
    }
    let covered = covered_segments(storage, snapshot_seq)?;
    let mut recycled = recycled_names(storage)
        .map_err(|e| JournalError::io("listing recycled segments", e))?
        .len();
    for name in &covered {
        match retention {
            Retention::Keep => unreachable!(),
            Retention::Delete => storage.remove(name),
            Retention::Recycle if recycled < RECYCLED_MAX => {
                recycled += 1;
                storage.rename(name, &recycled_name(name))
            }
            Retention::Recycle => storage.remove(name),
            Retention::Archive(dir) => std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::rename(journal_dir.join(name), dir.join(name))),
        }
        .map_err(|e| JournalError::io(format!("retiring segment {name}"), e))?;
    }
    storage
        .sync_dir()
        .map_err(|e| JournalError::io("syncing the journal directory", e))?;
    Ok(covered)
}
