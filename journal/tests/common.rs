//! Helpers shared by the journal's integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use journal::{recover, JournalWriter, RecordOut, Storage};

/// Small segments, so tests roll over often.
pub const SEGMENT_LEN: u64 = 64 << 10;

/// The payload record `seq` carries: 24–87 bytes derived from the sequence, so a reader can
/// check every record it gets back.
pub fn payload(seq: u64) -> Vec<u8> {
    let len = 24 + (seq % 64) as usize;
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

pub fn open_writer(storage: Arc<dyn Storage>) -> JournalWriter {
    let recovered = recover(storage.as_ref()).expect("recovery");
    JournalWriter::open(storage, &recovered, SEGMENT_LEN, 1).expect("writer")
}

/// Append `count` records and commit; returns the durable sequence.
pub fn commit_batch(writer: &mut JournalWriter, count: u64) -> journal::error::Result<u64> {
    append_batch(writer, count)?;
    writer.commit()
}

/// Append `count` records (each with `payload(seq)`) without committing.
pub fn append_batch(writer: &mut JournalWriter, count: u64) -> journal::error::Result<()> {
    for _ in 0..count {
        let seq = writer.next_seq();
        let payload = payload(seq);
        writer.append(RecordOut {
            seq,
            timestamp_ns: seq * 1000,
            kind: (seq % 7) as u16,
            payload: &payload,
        })?;
    }
    Ok(())
}

/// Every record the journal holds, checked against `payload`; returns the sequences.
pub fn read_all(storage: &dyn Storage) -> journal::error::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    journal::scan(storage, |record, _| {
        assert_eq!(
            record.payload,
            &payload(record.seq)[..],
            "record {}",
            record.seq
        );
        assert_eq!(record.timestamp_ns, record.seq * 1000);
        seqs.push(record.seq);
    })?;
    Ok(seqs)
}
