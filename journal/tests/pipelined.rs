//! Pipelined group commit: commits written while earlier ones sync. Syncs are held at the
//! storage so a test decides when they return: overlapping syncs publish in order, a failed
//! sync with the next commit in flight acknowledges nothing from it on, and a crash with
//! commits in flight recovers a prefix at least as long as what was acknowledged.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{append_batch, read_all, SEGMENT_LEN};
use journal::storage::FileBytes;
use journal::{
    recover, DurableHook, ErrorCode, FaultStorage, Faults, JournalWriter, RecordOut, Storage,
};

/// `FaultStorage` whose syncs wait while held.
#[derive(Default)]
struct HeldSyncs {
    inner: FaultStorage,
    held: Mutex<bool>,
    released: Condvar,
    waiting: AtomicUsize,
}

impl HeldSyncs {
    fn hold(&self) {
        *self.held.lock().unwrap() = true;
    }

    fn release(&self) {
        *self.held.lock().unwrap() = false;
        self.released.notify_all();
    }

    /// Until `n` syncs are waiting at once (they overlap).
    fn wait_for_waiting(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.waiting.load(SeqCst) < n {
            assert!(Instant::now() < deadline, "{n} syncs never waited at once");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Storage for HeldSyncs {
    fn list(&self) -> std::io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create_zeroed(&self, name: &str, len: u64) -> std::io::Result<()> {
        self.inner.create_zeroed(name, len)
    }
    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> std::io::Result<usize> {
        self.inner.write_at(name, offset, data)
    }
    fn sync(&self, name: &str) -> std::io::Result<()> {
        self.waiting.fetch_add(1, SeqCst);
        let mut held = self.held.lock().unwrap();
        while *held {
            held = self.released.wait(held).unwrap();
        }
        drop(held);
        self.waiting.fetch_sub(1, SeqCst);
        self.inner.sync(name)
    }
    fn read(&self, name: &str) -> std::io::Result<FileBytes> {
        self.inner.read(name)
    }
    fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> std::io::Result<()> {
        self.inner.remove(name)
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        self.inner.sync_dir()
    }
    fn describe(&self) -> String {
        "held syncs".to_string()
    }
}

/// What the hook heard: each durable sequence published, and whether a failure came.
#[derive(Default)]
struct Heard {
    published: Mutex<Vec<u64>>,
    failures: AtomicUsize,
}

fn pipelined_writer(storage: Arc<HeldSyncs>, in_flight: usize) -> (JournalWriter, Arc<Heard>) {
    let recovered = recover(storage.as_ref()).unwrap();
    let mut writer = JournalWriter::open(storage, &recovered, SEGMENT_LEN, 1).unwrap();
    let heard = Arc::new(Heard::default());
    let hook: DurableHook = {
        let heard = heard.clone();
        Arc::new(move |synced| match synced {
            Ok(s) => heard.published.lock().unwrap().push(s.through_seq),
            Err(_) => {
                heard.failures.fetch_add(1, SeqCst);
            }
        })
    };
    writer.set_pipeline(in_flight, Some(hook));
    (writer, heard)
}

/// Append `count` records; returns the last sequence.
fn append(writer: &mut JournalWriter, count: u64) -> u64 {
    append_batch(writer, count).unwrap();
    writer.next_seq() - 1
}

#[test]
fn overlapping_syncs_publish_in_order() {
    let storage = Arc::new(HeldSyncs::default());
    let (mut writer, heard) = pipelined_writer(storage.clone(), 2);
    // The first commit opens the segment (its header is synced on this thread).
    append(&mut writer, 1);
    assert_eq!(writer.commit().unwrap(), 1);

    storage.hold();
    let a = append(&mut writer, 10);
    assert_eq!(writer.submit().unwrap(), a);
    let b = append(&mut writer, 10);
    assert_eq!(writer.submit().unwrap(), b, "room for a second commit");
    storage.wait_for_waiting(2);
    assert_eq!(writer.commits_in_flight(), 2);
    assert_eq!(writer.durable_seq(), 1, "nothing published while both sync");

    storage.release();
    assert_eq!(writer.commit().unwrap(), b);
    assert_eq!(writer.commits_in_flight(), 0);
    let published = heard.published.lock().unwrap().clone();
    assert!(
        published.windows(2).all(|w| w[0] < w[1]),
        "in order: {published:?}"
    );
    assert_eq!(published.last(), Some(&b));
    assert_eq!(
        read_all(storage.as_ref()).unwrap(),
        (1..=b).collect::<Vec<_>>()
    );
}

#[test]
fn a_full_pipeline_waits_for_the_oldest_commit() {
    let storage = Arc::new(HeldSyncs::default());
    let (mut writer, _) = pipelined_writer(storage.clone(), 2);
    append(&mut writer, 1);
    writer.commit().unwrap();
    storage.hold();
    append(&mut writer, 3);
    writer.submit().unwrap();
    append(&mut writer, 3);
    writer.submit().unwrap();
    storage.wait_for_waiting(2);
    let releaser = {
        let storage = storage.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            storage.release();
        })
    };
    // The third commit can only be written once the first is durable.
    append(&mut writer, 3);
    writer.submit().unwrap();
    assert!(writer.durable_seq() >= 4, "waited for the oldest commit");
    releaser.join().unwrap();
    assert_eq!(writer.commit().unwrap(), 10);
}

#[test]
fn a_failed_sync_with_the_next_commit_in_flight_acknowledges_nothing_from_it_on() {
    // Which of the two overlapping syncs reaches the storage first is up to the scheduler:
    // both orders must hold the rule.
    for round in 0..20 {
        let storage = Arc::new(HeldSyncs::default());
        let (mut writer, heard) = pipelined_writer(storage.clone(), 2);
        append(&mut writer, 1);
        writer.commit().unwrap();
        storage.inner.set_faults(Faults {
            fail_sync: Some(1),
            ..Faults::default()
        });
        storage.hold();
        let a = append(&mut writer, 5);
        writer.submit().unwrap();
        let b = append(&mut writer, 5);
        writer.submit().unwrap();
        storage.wait_for_waiting(2);
        storage.release();

        let error = writer.commit().expect_err("a sync failed");
        assert_eq!(
            error.code,
            ErrorCode::WriterPoisoned,
            "round {round}: {error}"
        );
        let durable = writer.durable_seq();
        assert!(
            durable == 1 || durable == a,
            "round {round}: durable {durable}: only a whole commit before the failed one"
        );
        assert!(
            durable < b,
            "round {round}: the failed commit was published"
        );
        assert_eq!(heard.failures.load(SeqCst), 1, "round {round}");
        assert!(heard.published.lock().unwrap().iter().all(|&s| s <= a));
        // Nothing more is taken.
        assert!(writer
            .append(RecordOut {
                seq: b + 1,
                timestamp_ns: 0,
                kind: 0,
                payload: b"",
            })
            .is_err());
        // A power cut now: at least what was acknowledged, as a prefix.
        let image = storage.inner.crash_image();
        recover(&image).unwrap();
        let seqs = read_all(&image).unwrap();
        assert!(seqs.len() as u64 >= durable, "round {round}");
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }
}

#[test]
fn crash_images_with_two_commits_in_flight_recover_a_prefix() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    for round in 0..200 {
        let storage = Arc::new(HeldSyncs::default());
        let (mut writer, _) = pipelined_writer(storage.clone(), 2);
        // Some commits made durable first. All of it fits in the first segment: a roll-over
        // waits for the commits in flight, which wait for the held syncs.
        let mut acknowledged = 0;
        for _ in 0..1 + random(4) {
            append(&mut writer, 1 + random(50) as u64);
            acknowledged = writer.commit().unwrap();
        }
        storage.hold();
        append(&mut writer, 1 + random(60) as u64);
        writer.submit().unwrap();
        append(&mut writer, 1 + random(60) as u64);
        writer.submit().unwrap();
        // Each unsynced write reaches the disk in part: nothing, some bytes, or all.
        let image = storage
            .inner
            .crash_image_tearing(|_, bytes| match random(3) {
                0 => 0,
                1 => random(bytes.len() + 1),
                _ => bytes.len(),
            });
        storage.release();
        writer.commit().unwrap();

        let recovered = recover(&image)
            .unwrap_or_else(|e| panic!("round {round}: a torn pipeline read as {e}"));
        let last = recovered.report.last_seq.unwrap_or(0);
        assert!(
            last >= acknowledged,
            "round {round}: {last} < {acknowledged}"
        );
        assert_eq!(
            read_all(&image).unwrap(),
            (1..=last).collect::<Vec<_>>(),
            "round {round}"
        );
        // And the recovered journal takes appends where it ends.
        let image = Arc::new(image);
        let mut again = common::open_writer(image.clone());
        assert_eq!(again.next_seq(), last + 1);
        common::commit_batch(&mut again, 3).unwrap();
        assert_eq!(read_all(image.as_ref()).unwrap().len() as u64, last + 3);
    }
}

#[test]
fn commits_in_flight_cross_roll_overs_in_order() {
    let storage = Arc::new(HeldSyncs::default());
    let (mut writer, heard) = pipelined_writer(storage.clone(), 3);
    let mut sizes = (1..400u64).cycle();
    while writer.next_seq() <= 5_000 {
        append(&mut writer, sizes.next().unwrap() % 97 + 1);
        writer.submit().unwrap();
    }
    let last = writer.commit().unwrap();
    assert_eq!(last, writer.next_seq() - 1);
    assert!(
        storage.list().unwrap().len() > 3,
        "rolled over several segments"
    );
    assert_eq!(
        read_all(storage.as_ref()).unwrap(),
        (1..=last).collect::<Vec<_>>()
    );
    let published = heard.published.lock().unwrap().clone();
    assert!(published.windows(2).all(|w| w[0] < w[1]));
}
