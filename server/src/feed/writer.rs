//! Writing the feed log. The feed stage (`stage.rs`) appends what the engine stage drafted
//! for each released command; a restart's replay drafts the same bytes for the sequences the
//! log missed (`applied`: the engine is deterministic). The writer appends, rolls files at
//! `segment_bytes`, retires the oldest past `max_bytes`, and publishes how far the log goes.
//!
//! Recovery keeps one rule: the log on disk always reaches the newest checkpoint or snapshot
//! (each waits for the log to be synced through its sequence before it is kept). At a start
//! the replay resumes from that checkpoint or snapshot and the writer skips the sequences
//! already in the log. A log that does not reach it (a standby that restarted from its
//! primary's snapshot, a deleted feed directory, a feed that had stopped) begins again
//! there: consumers asking for older events are told where it now begins.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use engine::feed::FeedEvent;
use engine::feed_items::FeedItems;
use engine::{Engine, Output, Request};

use super::log::{self, LAST, MARK, RECORD_EVENTS_MAX, ROLL};
use super::{FeedShared, Published};
use crate::telemetry::log as oplog;

/// Records are written once this many bytes are waiting.
const PENDING_MAX: usize = 1 << 20;

/// Sizes from `[feed]`.
#[derive(Clone, Copy, Debug)]
pub struct FeedLimits {
    pub segment_bytes: u64,
    pub max_bytes: u64,
}

pub struct FeedWriter {
    dir: PathBuf,
    file: File,
    file_after: u64,
    file_len: u64,
    limits: FeedLimits,
    /// Sequences at or below this are in the log already: not written again.
    through: u64,
    /// The sequence of the last record written (events, mark or roll).
    last_record_seq: u64,
    /// Every sequence at or below this is durable in the log.
    synced: u64,
    /// Records encoded and not yet written.
    pending: Vec<u8>,
    /// A write of `pending` made while applying failed: `processed` reports it.
    failed: Option<io::Error>,
    /// A replay's drafting space.
    drafted: FeedItems,
    scratch: Vec<FeedEvent>,
    shared: Arc<FeedShared>,
}

impl FeedWriter {
    /// Open the log in `dir` for an engine that resumes after `resume_seq` (its newest
    /// checkpoint or snapshot, 0 for none) over a journal that ends at `journal_end`
    /// (`u64::MAX`: not known yet; nothing is cut).
    pub fn open(
        dir: &Path,
        limits: FeedLimits,
        resume_seq: u64,
        journal_end: u64,
        shared: Arc<FeedShared>,
    ) -> io::Result<FeedWriter> {
        std::fs::create_dir_all(dir)?;
        let (file_after, through) = recover(dir, resume_seq, journal_end)?;
        let path = dir.join(log::file_name(file_after));
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let file_len = file.metadata()?.len();
        let mut writer = FeedWriter {
            dir: dir.to_path_buf(),
            file,
            file_after,
            file_len,
            limits,
            through,
            last_record_seq: through,
            // What recovery kept was synced there.
            synced: through,
            pending: Vec::new(),
            failed: None,
            drafted: FeedItems::default(),
            scratch: Vec::new(),
            shared,
        };
        writer.retire_old()?;
        writer.publish();
        Ok(writer)
    }

    /// `request` was just applied by `engine` with `output`, as sequence `seq` at `at_ns`
    /// (a replay: the restart's, filling in what the log missed).
    pub fn applied(
        &mut self,
        seq: u64,
        at_ns: u64,
        request: &Request,
        output: &Output,
        engine: &Engine,
    ) {
        if seq <= self.through {
            return;
        }
        let mut items = std::mem::take(&mut self.drafted);
        items.draft(engine, seq, at_ns, request, output, &mut self.scratch);
        self.append(seq, &items);
        self.drafted = items;
    }

    /// Sequence `seq`'s events, drafted where it was applied (the engine stage). Sequences
    /// already in the log are skipped.
    pub fn append(&mut self, seq: u64, items: &FeedItems) {
        if seq <= self.through || items.is_empty() {
            return;
        }
        // One record, or several of under RECORD_EVENTS_MAX bytes each (whole events).
        let (bytes, ends) = (items.bytes(), items.ends());
        let mut record_start = 0usize;
        let mut count = 0u32;
        for (i, &end) in ends.iter().enumerate() {
            let end = end as usize;
            let last = i + 1 == ends.len();
            count += 1;
            let next_end = ends.get(i + 1).map_or(end, |&e| e as usize);
            if last || (next_end - record_start > RECORD_EVENTS_MAX) {
                let flags = if last { LAST } else { 0 };
                log::encode_record(
                    &mut self.pending,
                    seq,
                    flags,
                    count,
                    &bytes[record_start..end],
                );
                record_start = end;
                count = 0;
            }
        }
        self.last_record_seq = seq;
        if self.pending.len() >= PENDING_MAX && self.failed.is_none() {
            // Written now, published at `processed`: a replay (or a long batch) appends
            // many sequences between two of those, and memory stays this size.
            self.failed = self.write_pending().err();
            // The file rolls inside such a chunk too (every sequence up to `seq` is applied),
            // so that no file grows far past `segment_bytes`: one file past `max_bytes` would
            // leave retention nothing to keep but the new, empty one.
            if self.failed.is_none() && self.file_len >= self.limits.segment_bytes {
                self.through = seq;
                self.failed = self.roll().err();
                // Published now: `processed` at the end of the chunk finds nothing new when
                // the chunk ends at `seq`, and would leave readers at the old file.
                if self.failed.is_none() {
                    self.publish();
                }
            }
        }
        self.shared
            .metrics()
            .events
            .fetch_add(items.count() as u64, Relaxed);
    }

    /// What this writer publishes to.
    pub fn shared(&self) -> &Arc<FeedShared> {
        &self.shared
    }

    /// Every sequence at or below this has its events in the log (written or pending).
    pub fn through(&self) -> u64 {
        self.through.max(self.last_record_seq)
    }

    /// Every sequence up to `through` has been applied: write what they said and publish.
    pub fn processed(&mut self, through: u64) -> io::Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if through <= self.through && self.pending.is_empty() {
            return Ok(());
        }
        self.write_pending()?;
        self.through = self.through.max(through);
        if self.file_len >= self.limits.segment_bytes {
            self.roll()?;
        }
        self.publish();
        Ok(())
    }

    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.pending, self.file_len)?;
        self.file_len += self.pending.len() as u64;
        self.shared
            .metrics()
            .bytes
            .fetch_add(self.pending.len() as u64, Relaxed);
        self.pending.clear();
        Ok(())
    }

    /// Make the log durable as far as it goes, and say how far (before a snapshot that
    /// covers it: recovery then finds the log reaching the snapshot).
    pub fn sync(&mut self) -> io::Result<()> {
        if self.through > self.last_record_seq {
            let mut mark = Vec::new();
            log::encode_record(&mut mark, self.through, MARK, 0, &[]);
            self.pending.extend_from_slice(&mark);
            self.last_record_seq = self.through;
            self.processed(self.through)?;
        }
        self.file.sync_data()?;
        self.synced = self.through;
        self.publish();
        Ok(())
    }

    /// Sync if someone waits for a sequence the log now reaches (`FeedShared::wait_synced`).
    pub fn sync_if_wanted(&mut self) -> io::Result<()> {
        let wanted = self.shared.sync_wanted();
        if wanted > self.synced && self.through >= wanted {
            self.sync()?;
        }
        Ok(())
    }

    /// End this file with a ROLL record naming the next, and start that one.
    fn roll(&mut self) -> io::Result<()> {
        let next = self.through;
        let mut marker = Vec::new();
        log::encode_record(&mut marker, next, ROLL, 0, &[]);
        self.file.write_all_at(&marker, self.file_len)?;
        self.file.sync_data()?;
        let file = create_file(&self.dir, next)?;
        self.shared
            .metrics()
            .bytes
            .fetch_add(marker.len() as u64, Relaxed);
        self.file = file;
        self.file_after = next;
        self.file_len = 0;
        self.last_record_seq = next;
        self.retire_old()
    }

    /// Delete the oldest files while the log is over `max_bytes`. The current file and the
    /// one before it stay: just after a roll the current one is empty, and a consumer can
    /// always resume at least a whole file back.
    fn retire_old(&mut self) -> io::Result<()> {
        let files = log::list(&self.dir)?;
        let mut sizes = Vec::with_capacity(files.len());
        for (_, path) in &files {
            sizes.push(std::fs::metadata(path)?.len());
        }
        let mut total: u64 = sizes.iter().sum();
        let mut first = 0;
        while total > self.limits.max_bytes && first + 2 < files.len() {
            std::fs::remove_file(&files[first].1)?;
            total -= sizes[first];
            first += 1;
        }
        if first > 0 {
            log::sync_dir(&self.dir)?;
            oplog::info(
                "feed_retired",
                &[("files", &first), ("begins_after", &files[first].0)],
            );
        }
        self.shared.metrics().bytes.store(total, Relaxed);
        self.shared
            .metrics()
            .begins_after_seq
            .store(files[first].0, Relaxed);
        Ok(())
    }

    fn publish(&self) {
        self.shared.publish(Published {
            through: self.through,
            file_after: self.file_after,
            file_len: self.file_len,
            begins_after: self.shared.metrics().begins_after_seq.load(Relaxed),
            synced: self.synced,
        });
    }
}

fn create_file(dir: &Path, after: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join(log::file_name(after)))?;
    log::sync_dir(dir)?;
    Ok(file)
}

/// Bring the log in `dir` to a state the writer can append to: a torn tail cut, records past
/// the journal's end cut (a failback cut the journal), a half-written sequence cut, and a
/// log that does not reach `resume_seq` begun again there. Returns the file to append to
/// and how far the log goes.
fn recover(dir: &Path, resume_seq: u64, journal_end: u64) -> io::Result<(u64, u64)> {
    let mut files = log::list(dir)?;
    // Files that begin at or past the journal's end hold nothing the journal still has.
    while files.len() > 1 && files.last().is_some_and(|(after, _)| *after >= journal_end) {
        let (_, path) = files.pop().expect("checked");
        std::fs::remove_file(path)?;
        log::sync_dir(dir)?;
    }
    if let Some((after, path)) = files.last().cloned() {
        let scanned = log::scan_file(&path)?;
        // Keep whole sequences up to the journal's end; a ROLL at the end names a file
        // that was not made (or was removed above): start it again.
        let mut keep_len = 0;
        let mut through = after;
        let mut rolled_to = None;
        for &(at, header) in &scanned.records {
            if header.seq > journal_end {
                break;
            }
            if header.flags & ROLL != 0 {
                rolled_to = Some(header.seq);
                keep_len = at + header.record_len() as u64;
                through = header.seq;
                break;
            }
            if header.flags & (LAST | MARK) != 0 {
                keep_len = at + header.record_len() as u64;
                through = header.seq;
            }
        }
        let file = OpenOptions::new().write(true).open(&path)?;
        file.set_len(keep_len)?;
        file.sync_all()?;
        let (file_after, through) = match rolled_to {
            Some(next) => {
                create_file(dir, next)?;
                (next, next)
            }
            None => (after, through),
        };
        if through >= resume_seq && after <= journal_end {
            return Ok((file_after, through));
        }
        oplog::info(
            "feed_restarted",
            &[
                ("feed_through", &through),
                ("begins_after", &resume_seq),
                (
                    "detail",
                    &"the feed log does not reach the snapshot this node resumes from: it begins again there",
                ),
            ],
        );
    }
    for (_, path) in log::list(dir)? {
        std::fs::remove_file(path)?;
    }
    create_file(dir, resume_seq)?;
    Ok((resume_seq, resume_seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::shared::Shared;
    use engine::{ClientId, Command, EngineConfig, OrderLine, RequestId, SkuId, SkuSpec, UserId};

    /// A snapshotter far behind hands the writer one long chunk: the log still rolls at
    /// about the segment size inside it, every file but the last ends with a ROLL naming the
    /// next, and every sequence's events are there once, in order.
    #[test]
    fn a_long_chunk_rolls_at_the_segment_size() {
        let dir = std::env::temp_dir().join(format!("surge-feed-chunk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let clock = Arc::new(replicator::clock::ManualClock::new(1));
        let shared = Arc::new(Shared::new(clock));
        let segment_bytes = 256 << 10;
        let limits = FeedLimits {
            segment_bytes,
            max_bytes: 1 << 30,
        };
        let feed = FeedShared::new(dir.clone(), shared);
        let mut writer = FeedWriter::open(&dir, limits, 0, 1, feed.clone()).unwrap();
        let mut engine = Engine::new(EngineConfig {
            orders_max: 1 << 17,
            holdings_max: 1 << 17,
            orders_retired_max: 1 << 16,
            waitlist_entries_max: 1 << 16,
            ..EngineConfig::default()
        });
        let mut out = Output::default();
        let request = |n: u64, command| Request {
            client: ClientId(1),
            request: RequestId(n),
            command,
        };
        let sku = SkuSpec {
            sku: SkuId(1),
            price: 100,
            stock: 1 << 20,
            per_user_limit: 0,
            sale_window: None,
        };
        let orders = 40_000u64;
        for seq in 2..orders + 3 {
            let command = match seq {
                2 => Command::UpsertSku(sku.clone()),
                _ => Command::PlaceOrder {
                    user: UserId(seq),
                    lines: vec![OrderLine {
                        sku: SkuId(1),
                        qty: 1,
                    }],
                    join_waitlist: false,
                },
            };
            let request = request(seq, command);
            engine.apply(seq * 1000, &request, &mut out);
            writer.applied(seq, seq * 1000, &request, &out, &engine);
        }
        // Each roll inside the chunk was published: readers move on to the new file even if
        // the chunk's end brings nothing more.
        let newest = log::list(&dir).unwrap().last().unwrap().0;
        let published = feed.published().unwrap();
        assert_eq!((published.file_after, published.through), (newest, newest));
        writer.processed(orders + 2).unwrap();

        let files = log::list(&dir).unwrap();
        assert!(files.len() > 4, "only {} files", files.len());
        let mut last_seq = 0;
        let mut sequences = 0;
        for (i, (after, path)) in files.iter().enumerate() {
            let len = std::fs::metadata(path).unwrap().len();
            let bound = segment_bytes + (PENDING_MAX + RECORD_EVENTS_MAX) as u64;
            assert!(len <= bound, "{} is {len} bytes", path.display());
            let records = log::scan_file(path).unwrap().records;
            for (_, header) in &records {
                assert!(
                    header.seq > *after,
                    "{} holds seq {}",
                    path.display(),
                    header.seq
                );
                if header.flags & ROLL != 0 {
                    assert_eq!(Some(&header.seq), files.get(i + 1).map(|(a, _)| a));
                } else if header.flags & LAST != 0 {
                    assert!(header.seq > last_seq, "seq {} after {last_seq}", header.seq);
                    last_seq = header.seq;
                    sequences += 1;
                }
            }
            let ends_rolled = records.last().is_some_and(|(_, h)| h.flags & ROLL != 0);
            assert_eq!(ends_rolled, i + 1 < files.len(), "{}", path.display());
        }
        assert_eq!(sequences, orders + 1, "each sequence's events once");
        assert_eq!(last_seq, orders + 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
