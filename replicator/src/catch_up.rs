//! Reading the primary's journal files for a standby that is behind what the backlog holds:
//! records `from..=to`, as they lie on disk (checksums verified on the way), in chunks.

use journal::format::{self, SegmentHeader, SEGMENT_HEADER_LEN};
use journal::scan::segment_names;
use journal::Storage;

/// Records read from the files.
pub struct Read {
    pub first_seq: u64,
    pub last_seq: u64,
    pub bytes: Vec<u8>,
}

/// Up to `max_bytes` of records starting at `from` and ending at `to` at the latest.
/// `Ok(None)`: the files no longer hold `from` (retention removed it).
pub fn read(
    storage: &dyn Storage,
    from: u64,
    to: u64,
    max_bytes: usize,
) -> Result<Option<Read>, String> {
    let names = segment_names(storage).map_err(|e| e.to_string())?;
    let Some(start) = names.iter().rposition(|(first, _)| *first <= from) else {
        return Ok(None);
    };
    let mut out = Read {
        first_seq: from,
        last_seq: from - 1,
        bytes: Vec::new(),
    };
    for (first, name) in &names[start..] {
        if out.last_seq >= to || out.bytes.len() >= max_bytes {
            break;
        }
        if *first > out.last_seq + 1 {
            break;
        }
        let bytes = storage
            .read(name)
            .map_err(|e| format!("reading {name}: {e}"))?;
        let header = SegmentHeader::decode(&bytes).map_err(|e| format!("{name}: {e:?}"))?;
        let mut offset = SEGMENT_HEADER_LEN as usize;
        let end = (header.segment_len as usize).min(bytes.len());
        while offset < end && out.last_seq < to && out.bytes.len() < max_bytes {
            let Ok(record) = format::decode_record(&bytes[offset..end]) else {
                break;
            };
            if record.seq < header.first_seq {
                break; // a recycled segment's stale record: the live ones ended
            }
            if record.seq > out.last_seq + 1 {
                return Err(format!(
                    "{name}: sequence {} follows {}",
                    record.seq, out.last_seq
                ));
            }
            if record.seq == out.last_seq + 1 {
                out.bytes
                    .extend_from_slice(&bytes[offset..offset + record.total_len]);
                out.last_seq = record.seq;
            }
            offset += record.total_len;
        }
    }
    if out.last_seq < from {
        return Ok(None);
    }
    Ok(Some(out))
}

/// The bytes of `chunk` from the record with sequence `seq` on (records are back to back).
pub fn from_seq(chunk: &[u8], first_seq: u64, seq: u64) -> &[u8] {
    let mut offset = 0;
    let mut at = first_seq;
    while at < seq && offset < chunk.len() {
        match format::decode_record(&chunk[offset..]) {
            Ok(record) => offset += record.total_len,
            Err(_) => return &chunk[chunk.len()..],
        }
        at += 1;
    }
    &chunk[offset..]
}
