//! Recovery through the fault-injecting storage: torn tails cut at every byte, bit flips
//! before the tail refused with the right code, failed syncs never reported durable, short
//! writes, segment roll-over, and appending again after recovery.

mod common;

use std::sync::Arc;

use common::{commit_batch, open_writer, read_all, SEGMENT_LEN};
use journal::format::SEGMENT_HEADER_LEN;
use journal::{recover, ErrorCode, FaultStorage, Faults, Storage};

/// A journal of several commits in one segment; returns it and the offset and length of its
/// last record (alone in the last commit).
fn journal_with_tail() -> (FaultStorage, String, u64, usize, u64) {
    let storage = Arc::new(FaultStorage::new());
    let mut writer = open_writer(storage.clone());
    for count in [3, 5, 4] {
        commit_batch(&mut writer, count).unwrap();
    }
    let last = commit_batch(&mut writer, 1).unwrap();
    drop(writer);
    let mut location = None;
    journal::scan(storage.as_ref(), |r, at| {
        if r.seq == last {
            location = Some((at.segment.clone(), at.offset, r.total_len));
        }
    })
    .unwrap();
    let (segment, offset, len) = location.unwrap();
    (storage.crash_image(), segment, offset, len, last)
}

#[test]
fn a_torn_last_record_is_cut_at_every_byte() {
    let (image, segment, offset, len, last) = journal_with_tail();
    let record = image.read(&segment).unwrap()[offset as usize..][..len].to_vec();
    for keep in 0..len {
        let torn = image.crash_image();
        torn.corrupt(&segment, |bytes| {
            bytes[offset as usize + keep..offset as usize + len].fill(0);
        });
        // Losing only the zero padding loses nothing.
        let intact = record[keep..].iter().all(|&b| b == 0);
        let survivors = if intact { last } else { last - 1 };
        let recovered = recover(&torn).unwrap_or_else(|e| panic!("keep {keep}: {e}"));
        assert_eq!(recovered.report.last_seq, Some(survivors), "keep {keep}");
        assert_eq!(recovered.cut.is_some(), keep > 0 && !intact, "keep {keep}");
        assert_eq!(
            read_all(&torn).unwrap(),
            (1..=survivors).collect::<Vec<_>>()
        );
        // Appending resumes right after the durable records.
        let writer = open_writer(Arc::new(torn.crash_image()));
        assert_eq!(writer.next_seq(), survivors + 1);
    }
}

#[test]
fn a_flipped_bit_before_the_tail_is_corruption_with_its_code() {
    let (image, segment, last_offset, _, _) = journal_with_tail();
    let mut checked = 0;
    // Every bit of the segment header and of every record but the last commit's.
    let bits = (0..64 * 8).chain(SEGMENT_HEADER_LEN * 8..last_offset * 8);
    for bit in bits {
        let damaged = image.crash_image();
        damaged.corrupt(&segment, |bytes| bytes[bit as usize / 8] ^= 1 << (bit % 8));
        let error = recover(&damaged).expect_err(&format!("bit {bit} went unnoticed"));
        let expected = if bit < 64 * 8 {
            [ErrorCode::BadSegmentHeader, ErrorCode::UnsupportedVersion]
        } else {
            [ErrorCode::CorruptRecord, ErrorCode::SequenceGap]
        };
        assert!(expected.contains(&error.code), "bit {bit}: {error}");
        assert!(
            error.location.is_some(),
            "bit {bit}: {error} names no place"
        );
        checked += 1;
    }
    assert!(checked > 1000);
}

#[test]
fn a_failed_sync_is_never_reported_durable() {
    for failing_sync in 1..=4 {
        let storage = Arc::new(FaultStorage::new());
        let mut writer = open_writer(storage.clone());
        storage.set_faults(Faults {
            fail_sync: Some(failing_sync),
            ..Faults::default()
        });
        let mut acknowledged = 0;
        let mut failed = false;
        for _ in 0..6 {
            match commit_batch(&mut writer, 10) {
                Ok(durable) => {
                    assert!(!failed, "a commit succeeded after a failure");
                    acknowledged = durable;
                }
                Err(e) => {
                    failed = true;
                    assert!(
                        matches!(e.code, ErrorCode::Io | ErrorCode::WriterPoisoned),
                        "{e}"
                    );
                    assert_eq!(
                        writer.durable_seq(),
                        acknowledged,
                        "durable moved on a failure"
                    );
                }
            }
        }
        assert!(failed);
        let image = storage.crash_image();
        let recovered = recover(&image).unwrap();
        assert_eq!(
            recovered.report.last_seq.unwrap_or(0),
            acknowledged,
            "sync {failing_sync}"
        );
    }
}

#[test]
fn a_failed_write_poisons_the_writer() {
    let storage = Arc::new(FaultStorage::new());
    let mut writer = open_writer(storage.clone());
    commit_batch(&mut writer, 5).unwrap();
    storage.set_faults(Faults {
        fail_write: Some(2),
        ..Faults::default()
    });
    assert_eq!(commit_batch(&mut writer, 5).unwrap(), 10);
    let error = commit_batch(&mut writer, 5).unwrap_err();
    assert_eq!(error.code, ErrorCode::Io);
    storage.set_faults(Faults::default());
    assert_eq!(
        commit_batch(&mut writer, 1).unwrap_err().code,
        ErrorCode::WriterPoisoned
    );
    assert_eq!(writer.durable_seq(), 10);
}

#[test]
fn short_writes_and_roll_over_lose_nothing() {
    let storage = Arc::new(FaultStorage::new());
    storage.set_faults(Faults {
        short_write_max: Some(100),
        ..Faults::default()
    });
    let mut writer = open_writer(storage.clone());
    let mut durable = 0;
    for i in 0..200 {
        durable = commit_batch(&mut writer, 1 + i % 40).unwrap();
    }
    drop(writer);
    let image = storage.crash_image();
    let segments = journal::scan::segment_names(&image).unwrap();
    assert!(
        segments.len() > 3,
        "expected roll-overs, got {}",
        segments.len()
    );
    assert_eq!(read_all(&image).unwrap(), (1..=durable).collect::<Vec<_>>());
}

#[test]
fn unsynced_commits_tear_anywhere_and_recover_to_a_prefix() {
    // A commit in flight when the power goes: any prefix of its bytes may land.
    let storage = Arc::new(FaultStorage::new());
    let mut writer = open_writer(storage.clone());
    let durable = commit_batch(&mut writer, 20).unwrap();
    storage.set_faults(Faults {
        fail_sync: Some(1),
        sticky: true,
        ..Faults::default()
    });
    assert!(commit_batch(&mut writer, 30).is_err());
    drop(writer);
    let mut landed_more = false;
    for keep in (0..4000).step_by(37) {
        let image = storage.crash_image_tearing(|_, write| keep.min(write.len()));
        let recovered = recover(&image).unwrap_or_else(|e| panic!("keep {keep}: {e}"));
        let last = recovered.report.last_seq.unwrap();
        assert!(last >= durable, "keep {keep}: lost acknowledged records");
        landed_more |= last > durable;
        let seqs = read_all(&image).unwrap();
        assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    }
    assert!(
        landed_more,
        "some torn images should hold whole unacknowledged records"
    );
}

#[test]
fn recovery_continues_across_restarts_and_roll_overs() {
    let storage = Arc::new(FaultStorage::new());
    let mut expected = 0;
    for round in 0..8 {
        let image = Arc::new(storage.crash_image());
        let mut writer = open_writer(image.clone());
        assert_eq!(writer.next_seq(), expected + 1, "round {round}");
        for _ in 0..20 {
            expected = commit_batch(&mut writer, 17).unwrap();
        }
        drop(writer);
        assert_eq!(read_all(image.as_ref()).unwrap().len() as u64, expected);
        // Carry the durable state into the next round.
        for name in image.list().unwrap() {
            let bytes = image.read(&name).unwrap().to_vec();
            let _ = storage.remove(&name);
            storage.create_zeroed(&name, bytes.len() as u64).unwrap();
            storage.write_all_and_sync(&name, 0, &bytes).unwrap();
        }
    }
    assert!(expected > 1000);
    let segments = journal::scan::segment_names(storage.as_ref()).unwrap();
    assert!(
        segments.len() as u64 > expected * 100 / SEGMENT_LEN,
        "rolled over"
    );
}

/// Found by the recovery fuzz target: a journal whose remaining segment holds no record (its
/// predecessors retired, its first commit torn) continues at that segment's first sequence,
/// not at 1.
#[test]
fn an_empty_last_segment_sets_the_next_sequence() {
    let storage = Arc::new(FaultStorage::new());
    let name = journal::format::segment_name(1001);
    storage.create_zeroed(&name, SEGMENT_LEN).unwrap();
    let header = journal::format::SegmentHeader {
        first_seq: 1001,
        segment_len: SEGMENT_LEN,
    }
    .encode();
    storage.corrupt(&name, |bytes| {
        bytes[..header.len()].copy_from_slice(&header)
    });
    let mut writer = open_writer(storage.clone());
    assert_eq!(writer.next_seq(), 1001);
    assert_eq!(commit_batch(&mut writer, 3).unwrap(), 1003);
    drop(writer);
    let image = storage.crash_image();
    recover(&image).unwrap();
    assert_eq!(read_all(&image).unwrap(), vec![1001, 1002, 1003]);
}

#[test]
fn a_scan_from_a_sequence_reads_from_the_segment_that_holds_it() {
    let storage = Arc::new(FaultStorage::new());
    let mut writer = open_writer(storage.clone());
    let mut last = 0;
    for _ in 0..40 {
        last = commit_batch(&mut writer, 100).unwrap();
    }
    drop(writer);
    let starts: Vec<u64> = journal::scan::segment_names(storage.as_ref())
        .unwrap()
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert!(starts.len() > 3, "{starts:?}");
    let from = starts[2] + 5;
    let mut seen = Vec::new();
    let report = journal::scan_from(storage.as_ref(), from, |r, _| seen.push(r.seq)).unwrap();
    assert_eq!(
        seen.first(),
        Some(&starts[2]),
        "from the start of its segment"
    );
    assert_eq!(seen.last(), Some(&last));
    assert_eq!(report.last_seq, Some(last));
    assert_eq!(report.segments.len(), starts.len() - 2);
    // Before the first segment (and from 0): everything.
    let mut all = 0;
    journal::scan_from(storage.as_ref(), 0, |_, _| all += 1).unwrap();
    assert_eq!(all, last);
}
