//! Following a live journal from the files: records from a given sequence on, up to a
//! sequence the caller knows is durable, read from the mapped segments while the writer goes
//! on appending. The snapshotter replays the journal this way into an engine of its own.
//!
//! Within a segment the records lie back to back from the header; after the last record a
//! commit wrote comes a zero length (or, in a recycled segment, a stale record of an older
//! sequence), so a record that does not follow means "the rest is in the next segment",
//! which starts exactly at the sequence wanted. Only sequences at or below `upto` are read,
//! and those are durable, so a gap there is corruption, never a race.

use std::sync::Arc;

use crate::error::{ErrorCode, JournalError, Result};
use crate::format::{self, Record, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::scan::segment_names;
use crate::storage::{FileBytes, Storage};

struct Open {
    name: String,
    bytes: FileBytes,
    /// Where the next record starts.
    offset: usize,
    end: usize,
}

pub struct Tail {
    storage: Arc<dyn Storage>,
    /// The sequence of the next record to hand over.
    next_seq: u64,
    open: Option<Open>,
}

impl Tail {
    /// Follow `storage` from sequence `next_seq` on.
    pub fn new(storage: Arc<dyn Storage>, next_seq: u64) -> Tail {
        assert!(next_seq >= 1, "sequences start at 1");
        Tail {
            storage,
            next_seq,
            open: None,
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Hand every record from `next_seq()` up to `upto` (inclusive) to `f`, in order; how
    /// many. `upto` must be durable: a record missing at or below it is an error.
    pub fn read(&mut self, upto: u64, mut f: impl FnMut(&Record<'_>)) -> Result<u64> {
        let mut handed = 0;
        // Whether the open segment was mapped afresh since its last record was read (a map
        // taken earlier may not show what the writer appended since, on every storage).
        let mut fresh = false;
        while self.next_seq <= upto {
            if self.open.is_none() {
                self.open = Some(self.open_segment_with(self.next_seq)?);
                fresh = true;
            }
            let open = self.open.as_mut().expect("opened above");
            let record = format::decode_record(&open.bytes[open.offset..open.end]);
            match record {
                Ok(record) if record.seq == self.next_seq => {
                    f(&record);
                    open.offset += record.total_len;
                    self.next_seq += 1;
                    handed += 1;
                    fresh = false;
                }
                _ if !fresh => {
                    let offset = open.offset;
                    let name = open.name.clone();
                    fresh = true;
                    // Gone: retention took it (everything in it was read); go on to the next.
                    if let Some(mut again) = self.map_if_there(&name)? {
                        again.offset = offset;
                        self.open = Some(again);
                    }
                }
                // A zero length, a stale record, or the segment's end: the next segment.
                _ => {
                    let name = open.name.clone();
                    let next = self.open_segment_starting(self.next_seq)?;
                    match next {
                        Some(next) => {
                            self.open = Some(next);
                            fresh = true;
                        }
                        None => {
                            return Err(JournalError::new(
                                ErrorCode::MissingSegment,
                                format!(
                                    "record {} is durable but neither in {name} nor in a \
                                     segment starting there",
                                    self.next_seq
                                ),
                            ))
                        }
                    }
                }
            }
        }
        Ok(handed)
    }

    /// The segment holding `seq`, positioned at it.
    fn open_segment_with(&self, seq: u64) -> Result<Open> {
        let names = segment_names(self.storage.as_ref())?;
        let Some(at) = names.iter().rposition(|(first, _)| *first <= seq) else {
            return Err(JournalError::new(
                ErrorCode::MissingSegment,
                format!("no segment holds sequence {seq} (retention removed it?)"),
            ));
        };
        let mut open = self.map(&names[at].1)?;
        let mut at_seq = names[at].0;
        while at_seq < seq {
            match format::decode_record(&open.bytes[open.offset..open.end]) {
                Ok(record) if record.seq == at_seq => {
                    open.offset += record.total_len;
                    at_seq += 1;
                }
                _ => {
                    return Err(JournalError::new(
                        ErrorCode::MissingSegment,
                        format!("segment {} ends before sequence {seq}", open.name),
                    ))
                }
            }
        }
        Ok(open)
    }

    /// The segment whose first record is `seq`, if it exists yet.
    fn open_segment_starting(&self, seq: u64) -> Result<Option<Open>> {
        self.map_if_there(&format::segment_name(seq))
    }

    /// `map(name)`, or `None` if there is no such file.
    fn map_if_there(&self, name: &str) -> Result<Option<Open>> {
        match self.map(name) {
            Ok(open) => Ok(Some(open)),
            Err(e)
                if e.source.as_ref().map(std::io::Error::kind)
                    == Some(std::io::ErrorKind::NotFound) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn map(&self, name: &str) -> Result<Open> {
        let bytes = self
            .storage
            .read(name)
            .map_err(|e| JournalError::io(format!("reading {name}"), e))?;
        let header = SegmentHeader::decode(&bytes).map_err(|e| {
            JournalError::new(ErrorCode::BadSegmentHeader, format!("{name}: {e:?}"))
        })?;
        let end = (header.segment_len as usize).min(bytes.len());
        Ok(Open {
            name: name.to_string(),
            bytes,
            offset: SEGMENT_HEADER_LEN as usize,
            end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultStorage;
    use crate::format::RecordOut;
    use crate::writer::{JournalWriter, SEGMENT_LEN_MIN};

    fn append(writer: &mut JournalWriter, n: u64) {
        for _ in 0..n {
            let seq = writer.next_seq();
            let payload = seq.to_le_bytes();
            writer
                .append(RecordOut {
                    seq,
                    timestamp_ns: seq * 10,
                    kind: 1,
                    payload: &payload,
                })
                .unwrap();
        }
        writer.commit().unwrap();
    }

    #[test]
    fn follows_the_writer_across_segments_up_to_what_is_durable() {
        let storage: Arc<dyn Storage> = Arc::new(FaultStorage::new());
        let recovered = crate::recovery::recover(storage.as_ref()).unwrap();
        let mut writer =
            JournalWriter::open(storage.clone(), &recovered, SEGMENT_LEN_MIN, 1).unwrap();
        let mut tail = Tail::new(storage.clone(), 1);
        let mut seen = Vec::new();
        append(&mut writer, 10);
        assert_eq!(tail.read(7, |r| seen.push(r.seq)).unwrap(), 7);
        assert_eq!(tail.read(7, |r| seen.push(r.seq)).unwrap(), 0);
        // Enough records to roll over several 64 KiB segments.
        for _ in 0..40 {
            append(&mut writer, 100);
        }
        let durable = writer.durable_seq();
        assert_eq!(durable, 4010);
        assert!(segment_names(storage.as_ref()).unwrap().len() > 1);
        tail.read(durable, |r| {
            assert_eq!(r.payload, r.seq.to_le_bytes());
            seen.push(r.seq)
        })
        .unwrap();
        assert_eq!(seen, (1..=durable).collect::<Vec<_>>());
        // A tail started in the middle finds its place.
        let mut late = Tail::new(storage.clone(), 3000);
        let mut first = None;
        late.read(3005, |r| {
            first.get_or_insert(r.seq);
        })
        .unwrap();
        assert_eq!((first, late.next_seq()), (Some(3000), 3006));
        // Asking past what exists is an error, not a wait.
        assert!(Tail::new(storage.clone(), 4011).read(4011, |_| {}).is_err());
        // Retention may take the segment it read last from under it: it goes on to the next.
        let names = segment_names(storage.as_ref()).unwrap();
        let (second_first, _) = names[1];
        let mut tail = Tail::new(storage.clone(), 1);
        tail.read(second_first - 1, |_| {}).unwrap();
        storage.rename(&names[0].1, "gone.recycle").unwrap();
        append(&mut writer, 10);
        let mut next = Vec::new();
        tail.read(second_first + 1, |r| next.push(r.seq)).unwrap();
        assert_eq!(next, vec![second_first, second_first + 1]);
    }
}
