//! The feed log's files and records (docs/FEED.md). A node's feed is a directory of files
//! `feed-{after:020}.log`, each holding the events of the sequences above `after` up to
//! where the next file begins. A record is
//!
//! ```text
//! len u32 (bytes after crc) | crc32c u32 (of those bytes) | seq u64 | flags u16 | reserved u16
//! | count u32 | count events, as the wire carries them (engine::wire::feed)
//! ```
//!
//! A sequence's events go in one record, or in several (each under `RECORD_EVENTS_MAX`
//! bytes) of which the last has `LAST`. A file ends with a `ROLL` record whose `seq` names
//! the next file, so a reader never guesses which file follows and notices one retired
//! under it. A `MARK` record says the log reaches its `seq` (sequences without events
//! leave no record of their own).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const RECORD_HEADER_LEN: usize = 24;
/// Bytes of events one record holds at most (a mass expiry is split over several).
pub const RECORD_EVENTS_MAX: usize = 512 << 10;
/// The record holds the last of its sequence's events.
pub const LAST: u16 = 1;
/// No events: this file ends here, and the next one is `file_name(seq)`.
pub const ROLL: u16 = 2;
/// No events: every sequence up to `seq` is in the log (written before each snapshot, so
/// the log is known to reach it even when the last events are older).
pub const MARK: u16 = 4;

pub fn file_name(after: u64) -> String {
    format!("feed-{after:020}.log")
}

/// The feed files in `dir`, oldest first: `(after, path)`.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let after = name
            .strip_prefix("feed-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(after) = after {
            files.push((after, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// A record's header, read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub flags: u16,
    pub count: u32,
    /// Bytes of events after the header.
    pub events_len: usize,
}

impl Header {
    pub fn record_len(&self) -> usize {
        RECORD_HEADER_LEN + self.events_len
    }
}

/// Append one record to `out`.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, flags: u16, count: u32, events: &[u8]) {
    let start = out.len();
    let len = (RECORD_HEADER_LEN - 8 + events.len()) as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(events);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The record at the start of `bytes`: `None` if it is incomplete or its checksum fails
/// (a torn tail; never a record a reader may use).
pub fn decode_record(bytes: &[u8]) -> Option<(Header, &[u8])> {
    if bytes.len() < RECORD_HEADER_LEN {
        return None;
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
    let len = u32_at(0) as usize;
    if len < RECORD_HEADER_LEN - 8 || bytes.len() < 8 + len {
        return None;
    }
    if crc32c::crc32c(&bytes[8..8 + len]) != u32_at(4) {
        return None;
    }
    let header = Header {
        seq: u64::from_le_bytes(bytes[8..16].try_into().expect("8")),
        flags: u16::from_le_bytes(bytes[16..18].try_into().expect("2")),
        count: u32_at(20),
        events_len: len + 8 - RECORD_HEADER_LEN,
    };
    Some((header, &bytes[RECORD_HEADER_LEN..8 + len]))
}

/// What a whole file holds, read at recovery.
pub struct Scanned {
    /// Bytes of whole, checked records (a torn tail after them).
    pub valid_len: u64,
    /// Each whole record: where it starts and its header.
    pub records: Vec<(u64, Header)>,
}

pub fn scan_file(path: &Path) -> io::Result<Scanned> {
    let bytes = std::fs::read(path)?;
    let mut at = 0usize;
    let mut records = Vec::new();
    while let Some((header, _)) = decode_record(&bytes[at..]) {
        records.push((at as u64, header));
        at += header.record_len();
    }
    Ok(Scanned {
        valid_len: at as u64,
        records,
    })
}

/// Read exactly `buf.len()` bytes at `offset`, or fewer at the end of the file.
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_a_torn_one_is_not_read() {
        let mut out = Vec::new();
        encode_record(&mut out, 42, LAST, 2, b"abcdef");
        let (header, events) = decode_record(&out).unwrap();
        assert_eq!(
            header,
            Header {
                seq: 42,
                flags: LAST,
                count: 2,
                events_len: 6
            }
        );
        assert_eq!(events, b"abcdef");
        assert_eq!(header.record_len(), out.len());
        for cut in 0..out.len() {
            assert!(decode_record(&out[..cut]).is_none(), "cut at {cut}");
        }
        out[RECORD_HEADER_LEN] ^= 1;
        assert!(decode_record(&out).is_none(), "a flipped bit");
    }
}
