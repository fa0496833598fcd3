//! The on-disk format, every byte of it (also described in docs/FORMAT.md). Fixed-width
//! little-endian fields only; a size assertion next to each layout.
//!
//! Segment file `<first sequence, 20 digits>.seg`, a fixed size, zero-filled when created:
//!
//! ```text
//! 0      8  magic "SURGEJNL"
//! 8      4  format version (u32)
//! 12     4  CRC32C of bytes 16..64
//! 16     8  first sequence (u64)
//! 24     8  segment length in bytes (u64)
//! 32    32  zero
//! 64..4096  zero; records start at 4096
//! ```
//!
//! Record, at an 8-byte aligned offset:
//!
//! ```text
//! 0   4  total length: header + payload + padding, a multiple of 8 (u32); 0 = no record
//! 4   4  CRC32C of bytes 8..total length
//! 8   8  sequence (u64)
//! 16  8  timestamp, ns since the epoch (u64)
//! 24  8  durable watermark: every record up to this sequence was durable when this one
//!        was written (u64)
//! 32  4  payload length (u32)
//! 36  2  kind (u16), the caller's
//! 38  2  zero
//! 40  …  payload, then zero padding to the total length
//! ```

pub const SEGMENT_MAGIC: [u8; 8] = *b"SURGEJNL";
pub const FORMAT_VERSION: u32 = 1;
/// Records start here: the header block is one page.
pub const SEGMENT_HEADER_LEN: u64 = 4096;
const SEGMENT_HEADER_USED: usize = 64;
pub const RECORD_HEADER_LEN: usize = 40;
pub const RECORD_ALIGN: usize = 8;
/// Largest payload one record carries.
pub const RECORD_PAYLOAD_MAX: usize = 1 << 20;
/// Bytes in one commit at most (a caller appending more gets it committed in pieces). A
/// format limit, not only the writer's: recovery zeroes `COMMITS_IN_FLIGHT_MAX` times this
/// much past the durable end, all that torn commits can have written.
pub const COMMIT_BYTES_MAX: usize = 4 << 20;
/// The zero length the writer puts after each commit's last record (where the segment has
/// room): a reader stops there.
pub const END_MARKER_LEN: usize = 8;

/// Commits written and not yet durable, at most (the writer's pipeline). Also a format
/// limit: after a crash, this many commits can be torn, so recovery zeroes this many
/// commits' bytes past the durable end.
pub const COMMITS_IN_FLIGHT_MAX: usize = 4;

const _: () = assert!(RECORD_HEADER_LEN.is_multiple_of(RECORD_ALIGN));
const _: () = assert!(SEGMENT_HEADER_LEN as usize >= SEGMENT_HEADER_USED);
const _: () = assert!(record_len(RECORD_PAYLOAD_MAX) <= COMMIT_BYTES_MAX);

/// The commit size cap for a segment size: a commit always fits in one empty segment.
pub fn commit_bytes_max(segment_len: u64) -> usize {
    COMMIT_BYTES_MAX.min((segment_len - SEGMENT_HEADER_LEN) as usize)
}

/// Bytes a record with this payload takes on disk.
pub const fn record_len(payload_len: usize) -> usize {
    (RECORD_HEADER_LEN + payload_len).div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_seq: u64,
    pub segment_len: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_USED] {
        let mut b = [0u8; SEGMENT_HEADER_USED];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.segment_len.to_le_bytes());
        let crc = crc32c::crc32c(&b[16..]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if bytes.len() < SEGMENT_HEADER_USED || bytes[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u32_at(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        if crc32c::crc32c(&bytes[16..SEGMENT_HEADER_USED]) != u32_at(bytes, 12) {
            return Err(HeaderError::BadChecksum);
        }
        Ok(SegmentHeader {
            first_seq: u64_at(bytes, 16),
            segment_len: u64_at(bytes, 24),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    BadMagic,
    UnsupportedVersion(u32),
    BadChecksum,
}

/// One record to write.
#[derive(Clone, Copy, Debug)]
pub struct RecordOut<'a> {
    pub seq: u64,
    pub timestamp_ns: u64,
    pub kind: u16,
    pub payload: &'a [u8],
}

/// Append one encoded record (header, payload, zero padding) to `buf`.
pub fn encode_record(record: &RecordOut<'_>, durable_watermark: u64, buf: &mut Vec<u8>) {
    assert!(
        record.payload.len() <= RECORD_PAYLOAD_MAX,
        "payload too large"
    );
    let start = buf.len();
    let total = record_len(record.payload.len());
    buf.resize(start + total, 0);
    let b = &mut buf[start..];
    b[0..4].copy_from_slice(&(total as u32).to_le_bytes());
    b[8..16].copy_from_slice(&record.seq.to_le_bytes());
    b[16..24].copy_from_slice(&record.timestamp_ns.to_le_bytes());
    b[24..32].copy_from_slice(&durable_watermark.to_le_bytes());
    b[32..36].copy_from_slice(&(record.payload.len() as u32).to_le_bytes());
    b[36..38].copy_from_slice(&record.kind.to_le_bytes());
    b[RECORD_HEADER_LEN..RECORD_HEADER_LEN + record.payload.len()].copy_from_slice(record.payload);
    let crc = crc32c::crc32c(&b[8..total]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// A record read back, its checksum verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub seq: u64,
    pub timestamp_ns: u64,
    pub durable_watermark: u64,
    pub kind: u16,
    pub payload: &'a [u8],
    /// Bytes it occupies, padding included.
    pub total_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A zero length: nothing was written here.
    Empty,
    /// Fewer bytes remain than the record claims.
    Truncated,
    /// A length that no record can have.
    BadLength,
    BadChecksum,
    /// Reserved or padding bytes are not zero.
    BadPadding,
}

/// Decode the record at the start of `bytes`. The checksum is verified before any field
/// other than the length is trusted.
pub fn decode_record(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    if bytes.len() < 4 {
        return Err(DecodeError::Truncated);
    }
    let total = u32_at(bytes, 0) as usize;
    if total == 0 {
        return Err(DecodeError::Empty);
    }
    if total < RECORD_HEADER_LEN
        || !total.is_multiple_of(RECORD_ALIGN)
        || total > record_len(RECORD_PAYLOAD_MAX)
    {
        return Err(DecodeError::BadLength);
    }
    if bytes.len() < total {
        return Err(DecodeError::Truncated);
    }
    if crc32c::crc32c(&bytes[8..total]) != u32_at(bytes, 4) {
        return Err(DecodeError::BadChecksum);
    }
    let payload_len = u32_at(bytes, 32) as usize;
    if record_len(payload_len) != total {
        return Err(DecodeError::BadLength);
    }
    let payload_end = RECORD_HEADER_LEN + payload_len;
    if bytes[38..40] != [0, 0] || bytes[payload_end..total].iter().any(|&b| b != 0) {
        return Err(DecodeError::BadPadding);
    }
    Ok(Record {
        seq: u64_at(bytes, 8),
        timestamp_ns: u64_at(bytes, 16),
        durable_watermark: u64_at(bytes, 24),
        kind: u16::from_le_bytes([bytes[36], bytes[37]]),
        payload: &bytes[RECORD_HEADER_LEN..payload_end],
        total_len: total,
    })
}

pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The first sequence a segment file name claims, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The little-endian integers at `at` (the caller checked the length).
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        let record = RecordOut {
            seq: 7,
            timestamp_ns: 99,
            kind: 3,
            payload,
        };
        encode_record(&record, 6, &mut buf);
        buf
    }

    #[test]
    fn records_round_trip_and_are_aligned() {
        for len in [0, 1, 7, 8, 9, 100] {
            let payload: Vec<u8> = (0..len as u8).collect();
            let buf = one(&payload);
            assert_eq!(buf.len() % RECORD_ALIGN, 0);
            let r = decode_record(&buf).unwrap();
            assert_eq!(
                (r.seq, r.timestamp_ns, r.durable_watermark, r.kind),
                (7, 99, 6, 3)
            );
            assert_eq!(r.payload, &payload[..]);
            assert_eq!(r.total_len, buf.len());
        }
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_caught() {
        let buf = one(b"flash sale");
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&bad).is_err(), "bit {bit} went unnoticed");
        }
        for len in 0..buf.len() {
            assert!(decode_record(&buf[..len]).is_err());
        }
        assert_eq!(decode_record(&[0; 64]), Err(DecodeError::Empty));
    }

    #[test]
    fn segment_headers_and_names() {
        let h = SegmentHeader {
            first_seq: 42,
            segment_len: 1 << 20,
        };
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::BadChecksum));
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.seg"), None);
    }
}
