//! Snapshot files: an opaque state image (the engine's rkyv bytes) taken at a sequence, with
//! a checksummed header. Written to a temporary name, synced, renamed, and the directory
//! synced, so a snapshot file either is complete or does not exist. Loading takes the newest
//! one that validates and skips damaged ones (code `SNAPSHOT_CORRUPT`, a warning).
//!
//! `<sequence, 20 digits>.snap`:
//!
//! ```text
//! 0   8  magic "SURGESNP"
//! 8   4  format version (u32)
//! 12  4  CRC32C of bytes 16..64
//! 16  8  sequence: the state includes every record up to this one (u64)
//! 24  8  the caller's check value (surge: the engine's rolling hash) (u64)
//! 32  8  payload length (u64)
//! 40  4  CRC32C of the payload (u32)
//! 44 20  zero
//! 64  …  payload
//! ```

use crate::error::{ErrorCode, JournalError, Result};
use crate::storage::Storage;

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SURGESNP";
pub const SNAPSHOT_VERSION: u32 = 1;
pub const SNAPSHOT_HEADER_LEN: usize = 64;

pub fn snapshot_name(seq: u64) -> String {
    format!("{seq:020}.snap")
}

fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".snap")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A snapshot file read back and checked: its sequence, check value and payload, the
/// payload left where it lies (mapped from the file: a big state is not copied to be read).
pub struct Snapshot {
    pub seq: u64,
    pub check: u64,
    bytes: crate::storage::FileBytes,
}

impl Snapshot {
    pub fn payload(&self) -> &[u8] {
        &self.bytes[SNAPSHOT_HEADER_LEN..]
    }
}

/// The header for a payload of `len` bytes whose CRC32C is `crc`.
pub fn snapshot_header_for(seq: u64, check: u64, len: u64, crc: u32) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut bytes = [0u8; SNAPSHOT_HEADER_LEN];
    bytes[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    bytes[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    bytes[16..24].copy_from_slice(&seq.to_le_bytes());
    bytes[24..32].copy_from_slice(&check.to_le_bytes());
    bytes[32..40].copy_from_slice(&len.to_le_bytes());
    bytes[40..44].copy_from_slice(&crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&bytes[16..SNAPSHOT_HEADER_LEN]);
    bytes[12..16].copy_from_slice(&header_crc.to_le_bytes());
    bytes
}

/// How a snapshot is written: in pieces of `piece_bytes`, each synced before the next, with
/// `pause` between them. A big snapshot written and synced in one go queues hundreds of
/// megabytes in front of the journal's next `fdatasync` (its commits then wait seconds);
/// in pieces, a commit waits for one piece at most.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub piece_bytes: usize,
    pub pause: std::time::Duration,
}

impl Pace {
    /// One write and one sync: for tools, where nothing else writes.
    pub const AT_ONCE: Pace = Pace {
        piece_bytes: usize::MAX,
        pause: std::time::Duration::ZERO,
    };
}

/// Check a snapshot file's header and payload checksums; its sequence and check value.
pub fn check_snapshot(bytes: &[u8]) -> std::result::Result<(u64, u64), String> {
    if bytes.len() < SNAPSHOT_HEADER_LEN || bytes[0..8] != SNAPSHOT_MAGIC {
        return Err("not a snapshot (bad magic)".into());
    }
    let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != SNAPSHOT_VERSION {
        return Err(format!(
            "snapshot format version {version} is not supported"
        ));
    }
    let header_crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[16..SNAPSHOT_HEADER_LEN]) != header_crc {
        return Err("header checksum mismatch".into());
    }
    let len = field(32) as usize;
    if bytes.len() != SNAPSHOT_HEADER_LEN + len {
        return Err(format!(
            "{} payload bytes, header says {len}",
            bytes.len() - 64
        ));
    }
    let payload = &bytes[SNAPSHOT_HEADER_LEN..];
    let payload_crc = u32::from_le_bytes(bytes[40..44].try_into().expect("4 bytes"));
    if crc32c::crc32c(payload) != payload_crc {
        return Err("payload checksum mismatch".into());
    }
    Ok((field(16), field(24)))
}

/// The newest valid snapshot, and a warning (with its code) for each damaged one skipped.
pub fn load_newest(storage: &dyn Storage) -> Result<(Option<Snapshot>, Vec<String>)> {
    let mut names: Vec<(u64, String)> = storage
        .list()
        .map_err(|e| JournalError::io("listing snapshots", e))?
        .into_iter()
        .filter_map(|n| parse_snapshot_name(&n).map(|s| (s, n)))
        .collect();
    names.sort();
    let mut warnings = Vec::new();
    for (seq, name) in names.into_iter().rev() {
        let bytes = storage
            .read(&name)
            .map_err(|e| JournalError::io(format!("reading {name}"), e))?;
        match check_snapshot(&bytes) {
            Ok((said, check)) if said == seq => {
                let snapshot = Snapshot { seq, check, bytes };
                return Ok((Some(snapshot), warnings));
            }
            Ok((said, _)) => warnings.push(format!(
                "{}: {name} says sequence {said}; skipped",
                ErrorCode::SnapshotCorrupt,
            )),
            Err(why) => warnings.push(format!(
                "{}: {name}: {why}; skipped",
                ErrorCode::SnapshotCorrupt
            )),
        }
    }
    Ok((None, warnings))
}

/// Snapshot sequences present, oldest first.
pub fn snapshot_seqs(storage: &dyn Storage) -> Result<Vec<u64>> {
    let mut seqs: Vec<u64> = storage
        .list()
        .map_err(|e| JournalError::io("listing snapshots", e))?
        .iter()
        .filter_map(|n| parse_snapshot_name(n))
        .collect();
    seqs.sort();
    Ok(seqs)
}
