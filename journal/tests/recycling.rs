//! Recycled segments: retention hands covered segments back to the writer, which overwrites
//! them instead of zero-filling new files. Their stale records must never read as live ones:
//! not after a clean stop, not after a torn commit at any byte, not after appending again.

mod common;

use std::sync::Arc;

use common::{commit_batch, open_writer, read_all};
use journal::retention::{prune, Retention};
use journal::{recover, FaultStorage, Storage};

fn names_ending(storage: &dyn Storage, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = storage
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Write through many small segments, retiring covered ones with `Recycle` as snapshots
/// would, until the open segment is a recycled one holding stale records past its end.
fn journal_on_recycled_segments() -> (Arc<FaultStorage>, journal::JournalWriter) {
    let storage = Arc::new(FaultStorage::new());
    let mut writer = open_writer(storage.clone());
    let mut recycled_seen = false;
    let mut reused = 0;
    for round in 0..400 {
        let before = names_ending(storage.as_ref(), ".recycle").len();
        let durable = commit_batch(&mut writer, 7 + round % 13).unwrap();
        if names_ending(storage.as_ref(), ".recycle").len() < before {
            reused += 1;
        }
        if round % 10 == 9 {
            prune(
                storage.as_ref(),
                std::path::Path::new("unused"),
                durable,
                &Retention::Recycle,
            )
            .unwrap();
        }
        let after = names_ending(storage.as_ref(), ".recycle").len();
        recycled_seen |= after > 0;
        assert!(after <= journal::retention::RECYCLED_MAX);
    }
    assert!(recycled_seen, "retention never recycled a segment");
    assert!(
        reused >= 3,
        "the writer reused only {reused} recycled segments"
    );
    (storage, writer)
}

#[test]
fn stale_records_in_recycled_segments_are_never_read_as_live() {
    let (storage, mut writer) = journal_on_recycled_segments();
    let last = commit_batch(&mut writer, 5).unwrap();
    drop(writer);
    let first_kept = journal::scan::segment_names(storage.as_ref()).unwrap()[0].0;
    let image = storage.crash_image();
    let recovered = recover(&image).unwrap();
    assert!(recovered.cut.is_none(), "a clean stop read as a torn tail");
    assert_eq!(
        read_all(&image).unwrap(),
        (first_kept..=last).collect::<Vec<_>>()
    );
    // And again after appending to the recovered journal.
    let image = Arc::new(image);
    let mut writer = open_writer(image.clone());
    let last = commit_batch(&mut writer, 40).unwrap();
    drop(writer);
    assert_eq!(
        read_all(&image.crash_image()).unwrap(),
        (first_kept..=last).collect::<Vec<_>>()
    );
}

#[test]
fn a_torn_commit_over_stale_bytes_is_cut_at_every_byte() {
    // Whether the last commit lands in a recycled segment (stale bytes under it) or a
    // zero-filled one depends on when the preparer thread ran; only the first is this test.
    for _attempt in 0..20 {
        if torn_commit_over_stale_bytes() {
            return;
        }
    }
    panic!("the last record never landed on stale bytes in 20 attempts");
}

/// False when the last record did not overwrite stale bytes (nothing to test this time).
fn torn_commit_over_stale_bytes() -> bool {
    let (storage, mut writer) = journal_on_recycled_segments();
    let durable = commit_batch(&mut writer, 3).unwrap();
    let before = storage.crash_image();
    let last = commit_batch(&mut writer, 1).unwrap();
    assert_eq!(last, durable + 1);
    drop(writer);
    let first_kept = journal::scan::segment_names(storage.as_ref()).unwrap()[0].0;
    let mut at = None;
    journal::scan(storage.as_ref(), |r, location| {
        if r.seq == last {
            at = Some((
                location.segment.clone(),
                location.offset as usize,
                r.total_len,
            ));
        }
    })
    .unwrap();
    let (segment, offset, len) = at.unwrap();
    let old = before.read(&segment).unwrap()[offset..offset + len + 8].to_vec();
    let new = storage.read(&segment).unwrap()[offset..offset + len].to_vec();
    if old[8..].iter().all(|&b| b == 0) {
        return false;
    }
    // A torn write leaves the old bytes (the previous end marker, then stale records) from
    // some point of the new record on.
    for keep in 0..len + 8 {
        let torn = storage.crash_image();
        torn.corrupt(&segment, |bytes| {
            bytes[offset + keep..offset + len + 8].copy_from_slice(&old[keep..]);
        });
        let recovered = recover(&torn).unwrap_or_else(|e| panic!("keep {keep}: {e}"));
        let survivors = recovered.report.last_seq.unwrap();
        // The record survives only if what the tear kept of the old bytes equals the new.
        let intact = keep >= len || new[keep..] == old[keep..len];
        let expected = if intact { last } else { durable };
        assert_eq!(survivors, expected, "keep {keep}");
        assert_eq!(
            read_all(&torn).unwrap(),
            (first_kept..=survivors).collect::<Vec<_>>(),
            "keep {keep}"
        );
        let torn = Arc::new(torn);
        let mut writer = open_writer(torn.clone());
        assert_eq!(writer.next_seq(), survivors + 1);
        let end = commit_batch(&mut writer, 9).unwrap();
        drop(writer);
        assert_eq!(
            read_all(&torn.crash_image()).unwrap(),
            (first_kept..=end).collect::<Vec<_>>(),
            "keep {keep}, after appending"
        );
    }
    true
}

/// Retention through sequence `s` never takes a record after `s`: from any covered point,
/// the segments left still hold every record from `s + 1` to the end.
#[test]
fn retention_keeps_every_record_after_what_it_was_given() {
    let storage = Arc::new(FaultStorage::new());
    let mut writer = open_writer(storage.clone());
    let mut last = 0;
    for round in 0..120 {
        last = commit_batch(&mut writer, 11 + round % 7).unwrap();
    }
    for through in [1, 7, last / 3, last / 2, last - 1, last] {
        prune(
            storage.as_ref(),
            std::path::Path::new("unused"),
            through,
            &Retention::Recycle,
        )
        .unwrap();
        let image = storage.crash_image();
        let left = read_all(&image).unwrap();
        let after: Vec<u64> = left.iter().copied().filter(|&s| s > through).collect();
        assert_eq!(
            after,
            ((through + 1)..=last).collect::<Vec<_>>(),
            "retention through {through} took a record after it"
        );
        assert!(
            left.first().is_some_and(|&first| first <= through + 1),
            "the journal left starts after {through} + 1"
        );
    }
}
