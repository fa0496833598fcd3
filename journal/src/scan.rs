//! Reading the journal back: every segment in order, every record's checksum verified before
//! it is trusted, sequences checked to follow one another. `scan` is shared by recovery, the
//! `surge journal` tools and replay.
//!
//! Telling a torn tail from corruption. Each record carries the writer's *durable watermark*
//! when it was written: every record up to that sequence was already durable. Only the
//! commits in flight (written, not yet synced: at most `COMMITS_IN_FLIGHT_MAX`) can be torn
//! by a crash, and none of their records vouches for another's (the durable sequence moves
//! only when a sync returns, in commit order).
//! When the scan meets a record it cannot read (bad checksum, bad length, or a zero length
//! where data should continue), it looks at everything after it: if any readable record there
//! vouches (watermark ≥ the unreadable one's sequence) that the unreadable one had been
//! durable, the journal is corrupt — an acknowledged record was damaged. Otherwise it is the
//! torn tail of the commits in flight, and recovery cuts it off. (So damage inside them reads
//! as a torn tail: no later record can vouch for it. The standby has it.)
//!
//! Recycled segments hold their earlier life's records past the live ones. Every commit is
//! followed by a zero length (the end marker), and any intact record whose sequence is below
//! its segment's first is stale: both end the segment cleanly. Stale records cannot vouch for
//! anything: their watermarks are below the segment's first sequence.

use crate::error::{ErrorCode, JournalError, Location, Result};
use crate::format::{self, DecodeError, HeaderError, Record, SegmentHeader};
use crate::storage::{FileBytes, Storage};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub name: String,
    pub first_seq: u64,
    pub segment_len: u64,
    pub records: u64,
    /// Offset just past the last readable record.
    pub end_offset: u64,
}

/// A torn record at the tail: where it starts and the sequence it should have had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub location: Location,
    pub why: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub segments: Vec<SegmentSummary>,
    pub records: u64,
    pub record_bytes: u64,
    /// First and last sequence readable; `None` for an empty journal.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub torn_tail: Option<TornTail>,
}

impl ScanReport {
    /// The sequence the next record must have: after the last record; where the last
    /// segment starts if no segment holds a record (retention may have removed the ones that
    /// did); `start_seq` for a journal without segments.
    pub fn next_seq(&self, start_seq: u64) -> u64 {
        match (self.last_seq, self.segments.last()) {
            (Some(last), _) => last + 1,
            (None, Some(segment)) => segment.first_seq,
            (None, None) => start_seq,
        }
    }
}

/// Segment files, sorted by first sequence.
pub fn segment_names(storage: &dyn Storage) -> Result<Vec<(u64, String)>> {
    let mut names: Vec<(u64, String)> = storage
        .list()
        .map_err(|e| JournalError::io("listing the journal directory", e))?
        .into_iter()
        .filter_map(|n| format::parse_segment_name(&n).map(|s| (s, n)))
        .collect();
    names.sort();
    Ok(names)
}

/// Read every segment; call `visit` for each readable record, in sequence order, until the
/// end or a torn tail. Corruption before the tail is an error naming where.
pub fn scan(
    storage: &dyn Storage,
    visit: impl FnMut(&Record<'_>, &Location),
) -> Result<ScanReport> {
    scan_from(storage, 0, visit)
}

/// `scan`, from the segment that holds `from_seq` on (the segments before it are not read:
/// a restart from a checkpoint or snapshot at `from_seq - 1` needs none of their records).
/// The report covers the segments read.
pub fn scan_from(
    storage: &dyn Storage,
    from_seq: u64,
    mut visit: impl FnMut(&Record<'_>, &Location),
) -> Result<ScanReport> {
    let mut names = segment_names(storage)?;
    // The last segment that starts at or before `from_seq` holds it (or the journal begins
    // after it, and every segment is read).
    let first = names
        .iter()
        .rposition(|(seq, _)| *seq <= from_seq)
        .unwrap_or(0);
    names.drain(..first);
    let mut maps: Vec<(String, FileBytes)> = Vec::with_capacity(names.len());
    for (_, name) in &names {
        let bytes = storage
            .read(name)
            .map_err(|e| JournalError::io(format!("reading {name}"), e))?;
        maps.push((name.clone(), bytes));
    }
    let mut report = ScanReport::default();
    let mut expected: Option<u64> = None;
    for (index, (name, bytes)) in maps.iter().enumerate() {
        let header = read_header(name, bytes, names[index].0)?;
        let at = |offset: u64, sequence: u64| Location {
            segment: name.clone(),
            offset,
            sequence,
        };
        if let Some(e) = expected {
            if header.first_seq != e {
                let code = if header.first_seq > e {
                    ErrorCode::MissingSegment
                } else {
                    ErrorCode::SequenceGap
                };
                return Err(JournalError::new(
                    code,
                    format!(
                        "segment starts at {} but {} comes next",
                        header.first_seq, e
                    ),
                )
                .at(at(0, header.first_seq)));
            }
        }
        let mut next = header.first_seq;
        let mut offset = format::SEGMENT_HEADER_LEN;
        let limit = header.segment_len.min(bytes.len() as u64);
        let mut summary = SegmentSummary {
            name: name.clone(),
            first_seq: header.first_seq,
            segment_len: header.segment_len,
            records: 0,
            end_offset: offset,
        };
        let stop: Option<(DecodeError, u64)> = loop {
            if offset >= limit {
                break None;
            }
            match format::decode_record(&bytes[offset as usize..limit as usize]) {
                // A record from a recycled segment's earlier life: the end of this one's.
                Ok(record) if record.seq < header.first_seq => {
                    break Some((DecodeError::Empty, offset))
                }
                Ok(record) => {
                    if record.seq != next {
                        return Err(JournalError::new(
                            ErrorCode::SequenceGap,
                            format!("record {} where {} should be", record.seq, next),
                        )
                        .at(at(offset, record.seq)));
                    }
                    let location = at(offset, record.seq);
                    visit(&record, &location);
                    report.records += 1;
                    report.record_bytes += record.total_len as u64;
                    report.first_seq.get_or_insert(record.seq);
                    report.last_seq = Some(record.seq);
                    summary.records += 1;
                    offset += record.total_len as u64;
                    summary.end_offset = offset;
                    next += 1;
                }
                Err(e) => break Some((e, offset)),
            }
        };
        expected = Some(next);
        let (clean_end, unreadable) = match stop {
            None => (true, limit),
            Some((DecodeError::Empty, offset)) => (true, offset),
            Some((_, offset)) => (false, offset),
        };
        // After a clean end only this segment can hide data (the next one is checked to
        // start where this one ends); after an unreadable record, everything later counts.
        let scope = if clean_end { index + 1 } else { maps.len() };
        if let Some(vouched) = vouched_after(&maps[..scope], index, unreadable, next) {
            let why = match stop {
                Some((e, _)) => format!("{e:?}"),
                None => "segment ends early".to_string(),
            };
            return Err(JournalError::new(
                ErrorCode::CorruptRecord,
                format!(
                    "record {next} cannot be read ({why}), but record {vouched}, written \
                     later, says it was durable"
                ),
            )
            .at(at(unreadable, next)));
        }
        report.segments.push(summary);
        if let (false, Some((e, _))) = (clean_end, stop) {
            report.torn_tail = Some(TornTail {
                location: at(unreadable, next),
                why: format!("{e:?}"),
            });
            // Anything in later segments belongs to the torn commit too.
            break;
        }
    }
    Ok(report)
}

fn read_header(name: &str, bytes: &[u8], named_seq: u64) -> Result<SegmentHeader> {
    let location = Location {
        segment: name.to_string(),
        offset: 0,
        sequence: named_seq,
    };
    match SegmentHeader::decode(bytes) {
        Ok(h) if h.first_seq == named_seq && h.segment_len >= format::SEGMENT_HEADER_LEN => Ok(h),
        Ok(h) => Err(JournalError::new(
            ErrorCode::BadSegmentHeader,
            format!(
                "header says first sequence {}, the name {named_seq}",
                h.first_seq
            ),
        )
        .at(location)),
        Err(HeaderError::UnsupportedVersion(v)) => Err(JournalError::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "segment format version {v}, this build reads {}",
                format::FORMAT_VERSION
            ),
        )
        .at(location)),
        Err(e) => {
            Err(JournalError::new(ErrorCode::BadSegmentHeader, format!("{e:?}")).at(location))
        }
    }
}

/// The first sequence of a readable record after `from` in segment `index` (at any aligned
/// offset) or in any later segment whose watermark vouches for `seq` having been durable.
fn vouched_after(maps: &[(String, FileBytes)], index: usize, from: u64, seq: u64) -> Option<u64> {
    let vouches = |r: &Record<'_>| r.durable_watermark >= seq;
    for (i, (_, bytes)) in maps.iter().enumerate().skip(index) {
        let start = if i == index {
            from + format::RECORD_ALIGN as u64
        } else {
            format::SEGMENT_HEADER_LEN
        };
        // Past the last non-zero byte nothing can be read; zero pages skip fast this way.
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let mut offset = start as usize;
        while offset < end {
            match format::decode_record(&bytes[offset..]) {
                Ok(record) if vouches(&record) => return Some(record.seq),
                // An intact record (stale, from a recycled segment's earlier life) cannot
                // hide a later one inside its bytes: those would have broken its checksum.
                Ok(record) => offset += record.total_len,
                Err(_) => offset += format::RECORD_ALIGN,
            }
        }
    }
    None
}
