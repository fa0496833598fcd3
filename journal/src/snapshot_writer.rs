//! A snapshot file written as its payload is produced (`io::Write`), through one buffer of
//! at most `BUFFER_MAX` bytes, paced (`Pace`): a state of gigabytes is never held whole in
//! memory to be written. The payload goes to a temporary name first; the header, which
//! carries the payload's length and checksum, is written last, then the file is synced,
//! renamed and the directory synced. A crash at any point leaves at most a `.tmp` file,
//! which loading ignores and the next snapshot replaces.

use std::io;
use std::time::Duration;

use crate::error::{JournalError, Result};
use crate::snapshot::{snapshot_header_for, snapshot_name, Pace, SNAPSHOT_HEADER_LEN};
use crate::storage::Storage;

/// The most payload held before it is written out.
pub const BUFFER_MAX: usize = 4 << 20;

pub struct SnapshotWriter<'a> {
    storage: &'a dyn Storage,
    name: String,
    temp: String,
    seq: u64,
    pace: Pace,
    buffer: Vec<u8>,
    /// Payload bytes handed to the file so far, and those of them not yet synced.
    written: u64,
    unsynced: usize,
    crc: u32,
    /// The first write that failed: `finish` reports it (the caller of `io::Write` may
    /// only see a wrapped copy).
    failed: Option<io::Error>,
}

impl<'a> SnapshotWriter<'a> {
    /// Start the snapshot of the state at `seq` (a stale temporary of it is replaced).
    pub fn create(storage: &'a dyn Storage, seq: u64, pace: Pace) -> Result<SnapshotWriter<'a>> {
        let name = snapshot_name(seq);
        let temp = format!("{name}.tmp");
        let fail = |what: &str, e| JournalError::io(format!("{what} snapshot {name}"), e);
        if storage
            .list()
            .map_err(|e| fail("listing for", e))?
            .contains(&temp)
        {
            storage
                .remove(&temp)
                .map_err(|e| fail("removing a stale temp of", e))?;
        }
        // Created empty: zero-filling ahead pays only for journal segments, which are
        // overwritten in small synced pieces; a snapshot is written once.
        storage
            .create_zeroed(&temp, 0)
            .map_err(|e| fail("creating", e))?;
        Ok(SnapshotWriter {
            storage,
            temp,
            seq,
            pace,
            buffer: Vec::with_capacity(pace.piece_bytes.clamp(1, BUFFER_MAX)),
            written: 0,
            unsynced: 0,
            crc: 0,
            failed: None,
            name,
        })
    }

    /// Write out what is buffered; sync when a piece is complete (then pause, so the
    /// journal's syncs never queue behind more than one piece).
    fn drain(&mut self) -> io::Result<()> {
        let offset = SNAPSHOT_HEADER_LEN as u64 + self.written;
        self.storage.write_all(&self.temp, offset, &self.buffer)?;
        self.crc = crc32c::crc32c_append(self.crc, &self.buffer);
        self.written += self.buffer.len() as u64;
        self.unsynced += self.buffer.len();
        self.buffer.clear();
        if self.unsynced >= self.pace.piece_bytes {
            self.storage.sync(&self.temp)?;
            self.unsynced = 0;
            if self.pace.pause > Duration::ZERO {
                std::thread::sleep(self.pace.pause);
            }
        }
        Ok(())
    }

    fn keep_error(&mut self, e: io::Error) -> io::Error {
        let copy = io::Error::new(e.kind(), e.to_string());
        self.failed.get_or_insert(e);
        copy
    }

    /// Payload bytes taken so far.
    pub fn payload_len(&self) -> u64 {
        self.written + self.buffer.len() as u64
    }

    /// Complete the file: the rest of the payload, the header with `check` (surge: the
    /// engine's rolling hash), sync, rename, directory sync. The file's name.
    pub fn finish(mut self, check: u64) -> Result<String> {
        let fail =
            |what: &str, name: &str, e| JournalError::io(format!("{what} snapshot {name}"), e);
        if let Some(e) = self.failed.take() {
            return Err(fail("writing", &self.name, e));
        }
        if let Err(e) = self.drain() {
            return Err(fail("writing", &self.name, e));
        }
        let header = snapshot_header_for(self.seq, check, self.written, self.crc);
        self.storage
            .write_all_and_sync(&self.temp, 0, &header)
            .map_err(|e| fail("writing", &self.name, e))?;
        self.storage
            .rename(&self.temp, &self.name)
            .map_err(|e| fail("naming", &self.name, e))?;
        self.storage
            .sync_dir()
            .map_err(|e| fail("syncing the directory of", &self.name, e))?;
        Ok(self.name)
    }

    /// Give up (the payload could not be produced): the temporary is removed; the error
    /// a write met, if one did, with what the caller says it was doing.
    pub fn abandon(self, doing: &str, cause: io::Error) -> JournalError {
        let _ = self.storage.remove(&self.temp);
        let source = self.failed.unwrap_or(cause);
        JournalError::io(format!("{doing} (snapshot {})", self.name), source)
    }
}

impl io::Write for SnapshotWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::other("an earlier write to the snapshot failed"));
        }
        let room = self.buffer.capacity() - self.buffer.len();
        let n = bytes.len().min(room);
        self.buffer.extend_from_slice(&bytes[..n]);
        if self.buffer.len() == self.buffer.capacity() {
            if let Err(e) = self.drain() {
                return Err(self.keep_error(e));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // `finish` writes and syncs the rest
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::snapshot::load_newest;
    use crate::{FaultStorage, Faults};

    fn payload() -> Vec<u8> {
        (0..3 * BUFFER_MAX + 12345)
            .map(|i| (i % 251) as u8)
            .collect()
    }

    #[test]
    fn a_payload_written_in_pieces_and_short_writes_reads_back_whole() {
        let storage = FaultStorage::new();
        storage.set_faults(Faults {
            short_write_max: Some(100_000),
            ..Faults::default()
        });
        let payload = payload();
        let pace = Pace {
            piece_bytes: 1 << 20,
            pause: Duration::ZERO,
        };
        let mut w = SnapshotWriter::create(&storage, 42, pace).unwrap();
        // Odd-sized writes, as a serializer makes them.
        for chunk in payload.chunks(7919) {
            w.write_all(chunk).unwrap();
        }
        assert_eq!(w.payload_len(), payload.len() as u64);
        assert_eq!(w.finish(0xC0FFEE).unwrap(), snapshot_name(42));
        // What a power cut right after keeps: all of it.
        let (snapshot, warnings) = load_newest(&storage.crash_image()).unwrap();
        let snapshot = snapshot.expect("written");
        assert!(warnings.is_empty());
        assert_eq!((snapshot.seq, snapshot.check), (42, 0xC0FFEE));
        assert_eq!(snapshot.payload(), &payload[..]);
    }

    #[test]
    fn a_crash_before_finish_leaves_no_snapshot_and_the_next_try_replaces_it() {
        let storage = FaultStorage::new();
        let mut w = SnapshotWriter::create(&storage, 7, Pace::AT_ONCE).unwrap();
        w.write_all(&payload()).unwrap();
        let (snapshot, _) = load_newest(&storage.crash_image()).unwrap();
        assert!(snapshot.is_none(), "only a temporary exists");
        drop(w);
        let mut w = SnapshotWriter::create(&storage, 7, Pace::AT_ONCE).unwrap();
        w.write_all(b"state").unwrap();
        w.finish(1).unwrap();
        let (snapshot, _) = load_newest(&storage).unwrap();
        assert_eq!(snapshot.unwrap().payload(), b"state");
    }

    #[test]
    fn a_failed_write_is_reported_by_finish_and_leaves_no_snapshot() {
        let storage = FaultStorage::new();
        let mut w = SnapshotWriter::create(&storage, 9, Pace::AT_ONCE).unwrap();
        storage.set_faults(Faults {
            fail_write: Some(2),
            ..Faults::default()
        });
        let written = w.write_all(&payload());
        assert!(written.is_err());
        let e = w.finish(1).unwrap_err();
        assert!(e.to_string().contains("snapshot"), "{e}");
        let (snapshot, _) = load_newest(&storage).unwrap();
        assert!(snapshot.is_none());
    }
}
