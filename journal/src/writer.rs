//! The journal writer: group commit. Callers `append` records (they are encoded into one
//! buffer) and `submit` when they have taken everything that is waiting; a commit is one
//! write of the whole buffer and one `fdatasync`, so the batch size follows the load by
//! itself. Only after the sync returns is the durable sequence published.
//!
//! Commits are pipelined: with `commits_in_flight` = k ≥ 2, commit N is written and handed to
//! a sync worker (`syncer.rs`), and commit N+1 is encoded and written while N syncs; at most
//! k commits are written and not yet durable. The durable sequence still advances strictly in
//! order. With k = 1 a commit is written and synced on the caller's thread (through io_uring,
//! writes linked to the sync, where the kernel allows). A failed write or sync poisons the
//! writer: the file's state is unknown (the kernel may have dropped the dirty pages), so
//! nothing more is acknowledged until a restart recovers what is really on disk.
//!
//! Segments are prepared ahead of need by a helper thread, so rolling over costs a header
//! write, a rename and a directory sync, not 64 MiB of zeros on the hot path. The helper
//! takes a recycled segment when retention left one (its blocks are written already, so
//! overwriting them flushes only data), else zero-fills a new file. Each commit writes a
//! zero length after its last record (the end marker), so a recycled segment's stale
//! records never read as the continuation of the live ones. A roll-over waits until every
//! commit in flight is durable, so commits in flight are always in one segment.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::durable::DurableSeq;
use crate::error::{ErrorCode, JournalError, Location, Result};
use crate::format::{self, commit_bytes_max, RecordOut, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::recovery::Recovered;
use crate::segment_files::{take_recycled, PREPARED_SEGMENT_NAME};
use crate::storage::Storage;
use crate::syncer::{DurableHook, Synced, Syncer};

/// Default segment size.
pub const SEGMENT_LEN_DEFAULT: u64 = 64 << 20;
/// Smallest segment size accepted (tests use small ones to roll over often).
pub const SEGMENT_LEN_MIN: u64 = 64 << 10;

/// The zero length written after each commit's last record (when the segment has room).
const END_MARKER: [u8; format::END_MARKER_LEN] = [0; format::END_MARKER_LEN];

/// How long one wait for a sync sleeps at most (a publish or a failure wakes it sooner).
const SYNC_WAIT_SLICE: Duration = Duration::from_secs(1);

pub struct JournalWriter {
    storage: Arc<dyn Storage>,
    /// Size of new segments.
    segment_len: u64,
    /// The segment being appended to (recovery may hand over one of another size), and where.
    segment: Option<String>,
    current_len: u64,
    write_offset: u64,
    next_seq: u64,
    buffer: Vec<u8>,
    buffered: u64,
    durable: Arc<DurableSeq>,
    poisoned: Option<String>,
    preparing: Option<JoinHandle<std::io::Result<()>>>,
    commits: u64,
    tap: Option<Tap>,
    /// Commits written and not yet durable, at most this many (`format::COMMITS_IN_FLIGHT_MAX`).
    commits_in_flight_max: usize,
    /// The last sequence of each commit in flight, oldest first.
    in_flight: VecDeque<u64>,
    /// With more than one commit in flight: the sync workers.
    syncer: Option<Syncer>,
    hook: Option<DurableHook>,
}

/// Sees each commit's encoded records `(first_seq, last_seq, bytes)` just before they are
/// written and synced (the replicator sends them to the standby while this node syncs).
pub type Tap = Box<dyn FnMut(u64, u64, &[u8]) + Send>;

impl JournalWriter {
    /// Continue the journal `recovered` describes. `start_seq` is the first sequence of an
    /// empty journal.
    pub fn open(
        storage: Arc<dyn Storage>,
        recovered: &Recovered,
        segment_len: u64,
        start_seq: u64,
    ) -> Result<JournalWriter> {
        assert!(
            segment_len >= SEGMENT_LEN_MIN,
            "segment length below {SEGMENT_LEN_MIN}"
        );
        assert!(segment_len.is_multiple_of(format::RECORD_ALIGN as u64));
        let next_seq = recovered.next_seq(start_seq);
        let (segment, write_offset) = match &recovered.tail {
            Some((name, offset)) => (Some(name.clone()), *offset),
            None => (None, 0),
        };
        let current_len = recovered
            .report
            .segments
            .last()
            .map_or(0, |last| last.segment_len);
        let mut writer = JournalWriter {
            storage,
            segment_len,
            segment,
            current_len,
            write_offset,
            next_seq,
            buffer: Vec::with_capacity(commit_bytes_max(segment_len) + END_MARKER.len()),
            buffered: 0,
            durable: Arc::new(DurableSeq::new(next_seq - 1)),
            poisoned: None,
            preparing: None,
            commits: 0,
            tap: None,
            commits_in_flight_max: 1,
            in_flight: VecDeque::new(),
            syncer: None,
            hook: None,
        };
        writer.prepare_next_segment();
        Ok(writer)
    }

    /// The sequence the next appended record must carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn durable(&self) -> Arc<DurableSeq> {
        self.durable.clone()
    }

    pub fn durable_seq(&self) -> u64 {
        self.durable.get()
    }

    /// Records appended but not committed.
    pub fn buffered_records(&self) -> u64 {
        self.buffered
    }

    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Hand every later commit's records to `tap` before they are written.
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap = Some(tap);
    }

    /// Let up to `commits_in_flight` commits be written and not yet durable (1: each commit
    /// syncs before `submit` returns), and tell `hook` of every durable sequence published and
    /// of a failure. Before the first commit.
    pub fn set_pipeline(&mut self, commits_in_flight: usize, hook: Option<DurableHook>) {
        assert!(
            (1..=format::COMMITS_IN_FLIGHT_MAX).contains(&commits_in_flight),
            "commits in flight must be 1..={}",
            format::COMMITS_IN_FLIGHT_MAX
        );
        assert!(self.in_flight.is_empty() && self.syncer.is_none());
        self.commits_in_flight_max = commits_in_flight;
        self.hook = hook.clone();
        if commits_in_flight > 1 {
            self.syncer = Some(Syncer::start(
                self.storage.clone(),
                self.durable.clone(),
                hook,
                commits_in_flight,
            ));
        }
    }

    /// How commits go to disk, for the start-up log: the pipeline, and the storage's path
    /// when a commit is written and synced on the caller's thread.
    pub fn describe(&self) -> String {
        match self.commits_in_flight_max {
            1 => format!("one commit at a time: {}", self.storage.describe()),
            k => format!(
                "{k} commits in flight: pwritev2 writes, fdatasync on {k} sync workers (io_uring \
                 links a write to its sync only with one commit at a time)"
            ),
        }
    }

    /// Commits written and not yet durable.
    pub fn commits_in_flight(&mut self) -> usize {
        let durable = self.durable.get();
        while self.in_flight.front().is_some_and(|&last| last <= durable) {
            self.in_flight.pop_front();
        }
        self.in_flight.len()
    }

    /// Encode one record into the pending commit. Its sequence must be `next_seq()`. If the
    /// pending commit would grow past its cap, it is committed first.
    pub fn append(&mut self, record: RecordOut<'_>) -> Result<()> {
        self.check_poisoned()?;
        assert_eq!(
            record.seq, self.next_seq,
            "journal sequences must be consecutive"
        );
        let len = format::record_len(record.payload.len());
        if record.payload.len() > format::RECORD_PAYLOAD_MAX
            || len > commit_bytes_max(self.segment_len)
        {
            return Err(JournalError::new(
                ErrorCode::RecordTooLarge,
                format!(
                    "record {} has {} payload bytes",
                    record.seq,
                    record.payload.len()
                ),
            ));
        }
        if self.buffer.len() + len > commit_bytes_max(self.segment_len) {
            self.submit()?;
        }
        format::encode_record(&record, self.durable.get(), &mut self.buffer);
        self.buffered += 1;
        self.next_seq += 1;
        Ok(())
    }

    /// Write and sync everything appended, and wait for every commit in flight; returns the
    /// durable sequence. Only `Ok` means durable.
    pub fn commit(&mut self) -> Result<u64> {
        self.submit()?;
        self.wait_durable(self.next_seq - 1)?;
        Ok(self.durable.get())
    }

    /// Write everything appended as one commit and start its sync; returns its last
    /// sequence. With one commit in flight at most, it is durable on return; otherwise this
    /// waits only while the pipeline is full. The durable sequence (and the hook) tell when
    /// it is durable.
    pub fn submit(&mut self) -> Result<u64> {
        self.check_poisoned()?;
        if self.buffer.is_empty() {
            return Ok(self.next_seq - 1);
        }
        if self.syncer.is_none() {
            self.commit_here()?;
            return Ok(self.next_seq - 1);
        }
        self.wait_for_room()?;
        let first_seq = self.next_seq - self.buffered;
        let last_seq = self.next_seq - 1;
        let (segment, offset) = self.write_pending(first_seq)?;
        self.syncer
            .as_mut()
            .expect("a syncer with commits in flight")
            .hand_off(segment, first_seq, last_seq, offset);
        self.in_flight.push_back(last_seq);
        Ok(last_seq)
    }

    /// Wait until another commit may be submitted without waiting.
    pub fn wait_for_room(&mut self) -> Result<()> {
        if self.commits_in_flight() < self.commits_in_flight_max {
            return Ok(());
        }
        let oldest = *self.in_flight.front().expect("the pipeline is full");
        self.wait_durable(oldest)?;
        self.commits_in_flight();
        Ok(())
    }

    /// Wait until everything through `seq` is durable, or a sync failed.
    fn wait_durable(&mut self, seq: u64) -> Result<()> {
        loop {
            if self.durable.get() >= seq {
                return Ok(());
            }
            if self.durable.failed() {
                let why = self.syncer.as_ref().and_then(Syncer::failure);
                self.poisoned = Some(why.unwrap_or_else(|| "a sync failed".into()));
                return self.check_poisoned();
            }
            self.durable.wait_for(seq, SYNC_WAIT_SLICE);
        }
    }

    /// One commit on this thread: write and sync (linked on io_uring), then publish.
    fn commit_here(&mut self) -> Result<()> {
        let started = Instant::now();
        let first_seq = self.next_seq - self.buffered;
        self.write_commit(first_seq, true)?;
        if let Some(hook) = &self.hook {
            hook(Ok(Synced {
                through_seq: self.next_seq - 1,
                waited_ns: started.elapsed().as_nanos() as u64,
            }));
        }
        self.durable.publish(self.next_seq - 1);
        Ok(())
    }

    /// Write the pending commit (no sync); returns its segment and offset.
    fn write_pending(&mut self, first_seq: u64) -> Result<(String, u64)> {
        if self.needs_roll_over() {
            // Commits in flight stay in one segment: the old one's are durable first.
            self.wait_durable(first_seq - 1)?;
            self.in_flight.clear();
        }
        self.write_commit(first_seq, false)
    }

    /// Write the pending commit whose first record is `first_seq` (rolling over first if it
    /// does not fit), and sync it if `sync`; returns its segment and offset. A failure
    /// poisons the writer.
    fn write_commit(&mut self, first_seq: u64, sync: bool) -> Result<(String, u64)> {
        self.roll_over_if_full(first_seq)?;
        let segment = self.segment.clone().expect("a segment is open");
        let offset = self.write_offset;
        let records_len = self.buffer.len();
        self.tap_and_mark_end();
        let result = if sync {
            self.storage
                .write_all_and_sync(&segment, offset, &self.buffer)
        } else {
            self.storage.write_all(&segment, offset, &self.buffer)
        };
        self.buffer.truncate(records_len);
        if let Err(e) = result {
            let what = if sync {
                "group commit failed; nothing in it is durable"
            } else {
                "group commit write failed; nothing in it is durable"
            };
            return Err(self.poison(JournalError::io(what, e), &segment, first_seq));
        }
        self.written();
        Ok((segment, offset))
    }

    fn needs_roll_over(&self) -> bool {
        self.segment.is_none() || self.write_offset + self.buffer.len() as u64 > self.current_len
    }

    fn roll_over_if_full(&mut self, first_seq: u64) -> Result<()> {
        if self.needs_roll_over() {
            self.roll_over(first_seq)?;
        }
        Ok(())
    }

    /// Show the commit to the tap, then add the end marker (where the segment has room).
    fn tap_and_mark_end(&mut self) {
        if let Some(tap) = self.tap.as_mut() {
            tap(
                self.next_seq - self.buffered,
                self.next_seq - 1,
                &self.buffer,
            );
        }
        let room = self.current_len - self.write_offset - self.buffer.len() as u64;
        let marker = &END_MARKER[..END_MARKER.len().min(room as usize)];
        self.buffer.extend_from_slice(marker);
    }

    /// The pending commit's records are written: the next one starts where they end (on the
    /// end marker, which it overwrites).
    fn written(&mut self) {
        self.write_offset += self.buffer.len() as u64;
        self.buffer.clear();
        self.buffered = 0;
        self.commits += 1;
    }

    fn poison(&mut self, error: JournalError, segment: &str, first_seq: u64) -> JournalError {
        let error = error.at(Location {
            segment: segment.to_string(),
            offset: self.write_offset,
            sequence: first_seq,
        });
        self.poisoned = Some(error.to_string());
        if let Some(hook) = &self.hook {
            hook(Err(&error));
        }
        error
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            None => Ok(()),
            Some(why) => Err(JournalError::new(
                ErrorCode::WriterPoisoned,
                format!("an earlier write or sync failed: {why}"),
            )),
        }
    }

    fn prepare_next_segment(&mut self) {
        let storage = self.storage.clone();
        let len = self.segment_len;
        // Named, so per-thread tools (top -H, perf) show the zero-filling as what it is.
        let preparer = std::thread::Builder::new()
            .name("journal-prepare".into())
            .spawn(move || {
                if take_recycled(storage.as_ref(), len)? {
                    return Ok(());
                }
                storage.create_zeroed(PREPARED_SEGMENT_NAME, len)
            })
            .expect("spawning the segment preparer");
        self.preparing = Some(preparer);
    }

    /// Start a new segment whose first record is `first_seq`: take the prepared file, write
    /// its header durably, give it its name, sync the directory.
    fn roll_over(&mut self, first_seq: u64) -> Result<()> {
        let name = format::segment_name(first_seq);
        let fail = |what: &str, e: std::io::Error| {
            JournalError::io(format!("{what} for segment {name}"), e)
        };
        let prepared = self
            .preparing
            .take()
            .expect("a segment is always being prepared")
            .join()
            .expect("segment preparer panicked");
        let result = prepared
            .map_err(|e| fail("zero-filling", e))
            .and_then(|()| {
                let header = SegmentHeader {
                    first_seq,
                    segment_len: self.segment_len,
                }
                .encode();
                self.storage
                    .write_all_and_sync(PREPARED_SEGMENT_NAME, 0, &header)
                    .map_err(|e| fail("writing the header", e))?;
                self.storage
                    .rename(PREPARED_SEGMENT_NAME, &name)
                    .map_err(|e| fail("naming", e))?;
                self.storage
                    .sync_dir()
                    .map_err(|e| fail("syncing the directory", e))
            });
        if let Err(e) = result {
            self.poisoned = Some(e.to_string());
            return Err(e);
        }
        self.segment = Some(name);
        self.current_len = self.segment_len;
        self.write_offset = SEGMENT_HEADER_LEN;
        self.prepare_next_segment();
        Ok(())
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        // Let the preparer finish so its file is complete (or removed at the next recovery).
        if let Some(handle) = self.preparing.take() {
            let _ = handle.join();
        }
    }
}
