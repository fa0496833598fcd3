//! Reading the feed log for one consumer: from the file that holds the sequence after its
//! `after`, record by record, following ROLL records from file to file, never past what the
//! writer published. Memory is one read buffer, whatever the consumer's lag: a slow
//! consumer is a position in the files, not a queue on the server.

use std::fs::File;
use std::io;
use std::path::Path;

use super::log::{self, Header, LAST, MARK, RECORD_HEADER_LEN, ROLL};
use super::Published;

/// Bytes read from the file at a time.
const READ_CHUNK: usize = 256 << 10;

#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The events asked for are gone: the feed now begins after this sequence.
    Truncated {
        begins_after: u64,
    },
    Io(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e.to_string())
    }
}

/// What one `read` added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Events appended.
    pub count: u32,
    /// Every event with a sequence at or below this has been handed out (in this batch or
    /// before).
    pub through: u64,
}

pub struct FeedReader {
    dir: std::path::PathBuf,
    file: File,
    file_after: u64,
    /// Offset of the next record in `file`.
    pos: u64,
    /// Sequences at or below this are skipped (the consumer has them).
    skip_through: u64,
    /// How far this consumer has been handed everything.
    through: u64,
    chunk: Vec<u8>,
    /// File offset of `chunk[0]`.
    chunk_at: u64,
}

impl FeedReader {
    /// A reader positioned after `after`, or where the feed begins if that is later than
    /// what the consumer asked for.
    pub fn open(dir: &Path, after: u64) -> Result<FeedReader, ReadError> {
        let files = log::list(dir)?;
        let Some(&(begins_after, _)) = files.first() else {
            return Err(ReadError::Io("the feed log has no files".into()));
        };
        if after < begins_after {
            return Err(ReadError::Truncated { begins_after });
        }
        let (file_after, path) = files
            .iter()
            .rev()
            .find(|(file_after, _)| *file_after <= after)
            .cloned()
            .expect("the first file begins at or before `after`");
        Ok(FeedReader {
            dir: dir.to_path_buf(),
            file: File::open(path)?,
            file_after,
            pos: 0,
            skip_through: after,
            through: after,
            chunk: Vec::with_capacity(READ_CHUNK),
            chunk_at: 0,
        })
    }

    pub fn through(&self) -> u64 {
        self.through
    }

    /// Append the events after `through()` and at or below `bound` to `out`, stopping
    /// before `out` would pass `max_bytes` (at least one record goes in, whatever its size).
    /// `published` is the writer's last word on how far the log goes.
    pub fn read(
        &mut self,
        published: &Published,
        bound: u64,
        out: &mut Vec<u8>,
        max_bytes: usize,
    ) -> Result<Batch, ReadError> {
        let mut count = 0u32;
        let start_len = out.len();
        loop {
            let limit = match self.file_after.cmp(&published.file_after) {
                std::cmp::Ordering::Equal => published.file_len,
                // A rolled file: whole, and ended by its ROLL record.
                std::cmp::Ordering::Less => u64::MAX,
                // Made by a roll not yet published: nothing in it may be read yet.
                std::cmp::Ordering::Greater => 0,
            };
            let Some(header) = self.header_at(limit)? else {
                if self.file_after < published.file_after {
                    // A rolled file with no ROLL record read yet cannot end here.
                    return Err(ReadError::Io(format!(
                        "feed file {} ends without a ROLL record",
                        log::file_name(self.file_after)
                    )));
                }
                // Everything published has been handed out.
                self.through = self.through.max(published.through.min(bound));
                return Ok(Batch {
                    count,
                    through: self.through,
                });
            };
            if header.flags & ROLL != 0 {
                self.next_file(header.seq)?;
                // Nothing of this file is left, but `through` still waits for the bound: a
                // failover may fill the sequences above it with other events.
                self.through = self.through.max(header.seq.min(bound));
                continue;
            }
            if header.seq > bound {
                self.through = self.through.max(bound);
                return Ok(Batch {
                    count,
                    through: self.through,
                });
            }
            if header.flags & MARK != 0 || header.seq <= self.skip_through {
                self.pos += header.record_len() as u64;
                if header.flags & LAST != 0 || header.flags & MARK != 0 {
                    self.through = self.through.max(header.seq);
                }
                continue;
            }
            if count > 0 && out.len() - start_len + header.events_len > max_bytes {
                // Everything before this record's sequence has been handed out.
                self.through = self.through.max(header.seq - 1);
                return Ok(Batch {
                    count,
                    through: self.through,
                });
            }
            let events = self.bytes_at(self.pos + RECORD_HEADER_LEN as u64, header.events_len)?;
            out.extend_from_slice(events);
            count += header.count;
            self.pos += header.record_len() as u64;
            self.through = match header.flags & LAST != 0 {
                true => header.seq,
                false => self.through.max(header.seq - 1),
            };
        }
    }

    /// The header of the record at `pos`, if a whole, checked one lies before `limit`.
    fn header_at(&mut self, limit: u64) -> Result<Option<Header>, ReadError> {
        let available = limit.saturating_sub(self.pos);
        if available < RECORD_HEADER_LEN as u64 {
            return Ok(None);
        }
        let head = self.bytes_at(self.pos, RECORD_HEADER_LEN)?;
        let len = u32::from_le_bytes(head[..4].try_into().expect("4")) as usize + 8;
        if (len as u64) > available || len < RECORD_HEADER_LEN {
            return Ok(None);
        }
        let whole = self.bytes_at(self.pos, len)?;
        match log::decode_record(whole) {
            Some((header, _)) => Ok(Some(header)),
            None => Err(ReadError::Io(format!(
                "a damaged record in {} at offset {}",
                log::file_name(self.file_after),
                self.pos
            ))),
        }
    }

    /// `len` bytes at `offset` of the current file, through the chunk buffer.
    fn bytes_at(&mut self, offset: u64, len: usize) -> Result<&[u8], ReadError> {
        let cached = offset >= self.chunk_at
            && offset + len as u64 <= self.chunk_at + self.chunk.len() as u64;
        if !cached {
            self.chunk.clear();
            self.chunk.resize(len.max(READ_CHUNK), 0);
            let got = log::read_at(&self.file, &mut self.chunk, offset)?;
            self.chunk.truncate(got);
            self.chunk_at = offset;
            if got < len {
                return Err(ReadError::Io(format!(
                    "feed file {} is shorter than its records say",
                    log::file_name(self.file_after)
                )));
            }
        }
        let from = (offset - self.chunk_at) as usize;
        Ok(&self.chunk[from..from + len])
    }

    fn next_file(&mut self, after: u64) -> Result<(), ReadError> {
        let path = self.dir.join(log::file_name(after));
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Retired while this consumer was behind it.
                let begins_after = log::list(&self.dir)?.first().map_or(after, |f| f.0);
                return Err(ReadError::Truncated { begins_after });
            }
            Err(e) => return Err(e.into()),
        };
        self.file = file;
        self.file_after = after;
        self.pos = 0;
        self.chunk.clear();
        self.chunk_at = 0;
        Ok(())
    }
}
