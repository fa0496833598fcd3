//! Opening a journal after a start or a crash: scan it (corruption before the tail is an
//! error), cut off a torn tail, and make sure the bytes after the last durable record are
//! zero so that later appends can never leave a stale record behind them.

use crate::error::{ErrorCode, JournalError, Location, Result};
use crate::format::{commit_bytes_max, COMMITS_IN_FLIGHT_MAX, SEGMENT_HEADER_LEN};
use crate::scan::{scan, segment_names, ScanReport, TornTail};
use crate::segment_files::PREPARED_SEGMENT_NAME;
use crate::storage::Storage;

#[derive(Clone, Debug)]
pub struct Recovered {
    pub report: ScanReport,
    /// Where appending continues: the last segment and the offset past its last record;
    /// `None` for an empty journal.
    pub tail: Option<(String, u64)>,
    /// The torn record cut off, if there was one (code `JOURNAL_TAIL_TRUNCATED`).
    pub cut: Option<TornTail>,
    /// Segments after the torn one that held nothing durable, removed.
    pub removed_segments: Vec<String>,
}

impl Recovered {
    pub fn next_seq(&self, start_seq: u64) -> u64 {
        self.report.next_seq(start_seq)
    }

    /// The notice to log when a tail was cut, with its code.
    pub fn cut_notice(&self) -> Option<String> {
        self.cut.as_ref().map(|t| {
            format!(
                "{}: cut a torn record at the tail ({}; segment {}, offset {}, sequence {})",
                ErrorCode::TailTruncated,
                t.why,
                t.location.segment,
                t.location.offset,
                t.location.sequence
            )
        })
    }
}

/// Scan and repair the tail; refuse (with the error's code and location) on corruption.
pub fn recover(storage: &dyn Storage) -> Result<Recovered> {
    if storage
        .list()
        .map_err(|e| JournalError::io("listing the journal", e))?
        .iter()
        .any(|n| n == PREPARED_SEGMENT_NAME)
    {
        storage
            .remove(PREPARED_SEGMENT_NAME)
            .map_err(|e| JournalError::io("removing a half-prepared segment", e))?;
    }
    let report = scan(storage, |_, _| {})?;
    let names = segment_names(storage)?;
    let Some(last) = report.segments.last().cloned() else {
        // No segment has a readable header+records: only empty segments can be left over.
        for (_, name) in &names {
            storage
                .remove(name)
                .map_err(|e| JournalError::io(format!("removing {name}"), e))?;
        }
        return Ok(Recovered {
            report,
            tail: None,
            cut: None,
            removed_segments: names.into_iter().map(|(_, n)| n).collect(),
        });
    };
    // Segments past the one the scan stopped in hold only what a torn commit left.
    let mut removed_segments = Vec::new();
    for (_, name) in names.iter().filter(|(seq, _)| *seq > last.first_seq) {
        storage
            .remove(name)
            .map_err(|e| JournalError::io(format!("removing {name}"), e))?;
        removed_segments.push(name.clone());
    }
    if !removed_segments.is_empty() {
        storage
            .sync_dir()
            .map_err(|e| JournalError::io("syncing the journal directory", e))?;
    }
    // Zero whatever the last commits (up to COMMITS_IN_FLIGHT_MAX were in flight) may have
    // written past the durable end; only up to the last non-zero byte there.
    let end = last.end_offset;
    let reach = (COMMITS_IN_FLIGHT_MAX * commit_bytes_max(last.segment_len)) as u64;
    let zero_to = last_nonzero_end(
        storage,
        &last.name,
        end,
        (end + reach).min(last.segment_len),
    )?;
    if zero_to > end {
        let zeros = vec![0u8; (zero_to - end) as usize];
        storage
            .write_all_and_sync(&last.name, end, &zeros)
            .map_err(|e| {
                JournalError::io("zeroing the tail", e).at(Location {
                    segment: last.name.clone(),
                    offset: end,
                    sequence: report.next_seq(last.first_seq),
                })
            })?;
    }
    debug_assert!(end >= SEGMENT_HEADER_LEN);
    Ok(Recovered {
        tail: Some((last.name.clone(), end)),
        cut: report.torn_tail.clone(),
        report,
        removed_segments,
    })
}

/// Just past the last non-zero byte of `name` in `from..to` (`from` when they are all zero).
fn last_nonzero_end(storage: &dyn Storage, name: &str, from: u64, to: u64) -> Result<u64> {
    let bytes = storage
        .read(name)
        .map_err(|e| JournalError::io(format!("reading {name}"), e))?;
    let to = to.min(bytes.len() as u64);
    if to <= from {
        return Ok(from);
    }
    let window = &bytes[from as usize..to as usize];
    Ok(window
        .iter()
        .rposition(|&b| b != 0)
        .map_or(from, |i| from + i as u64 + 1))
}
