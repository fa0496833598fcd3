//! Cutting a journal after a sequence: how a primary that lost its role rejoins as a standby
//! (failback). Every record after `seq` was written by a primary that had been replaced, so
//! no client was told of it in the synchronous modes; the new primary's records take their
//! place. The rest of the segment holding `seq + 1` is zeroed (a stale record left behind
//! could vouch for a gap and read as corruption), later segments are removed, and the
//! directory is synced.

use crate::error::{JournalError, Result};
use crate::format::SEGMENT_HEADER_LEN;
use crate::scan::{scan, segment_names};
use crate::storage::Storage;

/// Zeros are written in pieces this large.
const ZEROS: usize = 1 << 20;

/// Remove every record after `seq`; how many were cut.
pub fn truncate_after(storage: &dyn Storage, seq: u64) -> Result<u64> {
    let mut cut_at: Option<(String, u64)> = None;
    let mut cut = 0u64;
    scan(storage, |record, at| {
        if record.seq > seq {
            if cut_at.is_none() {
                cut_at = Some((at.segment.clone(), at.offset));
            }
            cut += 1;
        }
    })?;
    let names = segment_names(storage)?;
    let (segment, offset) = match cut_at {
        Some(at) => at,
        None => {
            // No record after `seq`; segments that begin after it hold nothing either.
            for (first, name) in &names {
                if *first > seq + 1 {
                    storage
                        .remove(name)
                        .map_err(|e| JournalError::io(format!("removing {name}"), e))?;
                }
            }
            storage
                .sync_dir()
                .map_err(|e| JournalError::io("syncing the journal directory", e))?;
            return Ok(0);
        }
    };
    let len = storage
        .read(&segment)
        .map_err(|e| JournalError::io(format!("reading {segment}"), e))?
        .len() as u64;
    let zeros = vec![0u8; ZEROS];
    let mut at = offset.max(SEGMENT_HEADER_LEN);
    while at < len {
        let n = ZEROS.min((len - at) as usize);
        storage
            .write_all_and_sync(&segment, at, &zeros[..n])
            .map_err(|e| JournalError::io(format!("zeroing {segment}"), e))?;
        at += n as u64;
    }
    let mut after = false;
    for (_, name) in &names {
        if after {
            storage
                .remove(name)
                .map_err(|e| JournalError::io(format!("removing {name}"), e))?;
        }
        after |= *name == segment;
    }
    storage
        .sync_dir()
        .map_err(|e| JournalError::io("syncing the journal directory", e))?;
    Ok(cut)
}
