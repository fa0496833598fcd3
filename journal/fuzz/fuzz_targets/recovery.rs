//! Recovery over arbitrary bytes, two ways (the first input byte picks):
//!
//! - raw: up to three segment files whose bodies (and, for some, headers) are the input's
//!   bytes. Recovery may refuse with a code, but never panics; when it accepts, a second scan
//!   agrees with it, and the recovered journal takes new records and reads back whole.
//! - written: a real journal written by the writer in commits the input sizes, then a power
//!   cut that lands an input-chosen prefix of every unsynced write, then damage at
//!   input-chosen places. With no damage, recovery must succeed and return every acknowledged
//!   record; with damage it may refuse, but what it returns is always a gap-free run of
//!   records with the payloads that were written.
#![no_main]

use std::sync::Arc;

use journal::format::{segment_name, SegmentHeader, SEGMENT_HEADER_LEN};
use journal::{recover, FaultStorage, JournalWriter, RecordOut, Storage};
use libfuzzer_sys::fuzz_target;

const SEGMENT_LEN: u64 = 64 << 10;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }
}

fn payload(seq: u64) -> Vec<u8> {
    (0..(seq % 50) as usize).map(|i| (seq as usize * 7 + i) as u8).collect()
}

fn open_writer(storage: Arc<dyn Storage>) -> Option<JournalWriter> {
    let recovered = recover(storage.as_ref()).ok()?;
    JournalWriter::open(storage, &recovered, SEGMENT_LEN, 1).ok()
}

/// Append `count` records and commit them; the durable sequence.
fn append(writer: &mut JournalWriter, count: u64) -> u64 {
    append_uncommitted(writer, count);
    writer.commit().expect("commit")
}

fn append_uncommitted(writer: &mut JournalWriter, count: u64) {
    for _ in 0..count {
        let seq = writer.next_seq();
        let payload = payload(seq);
        let record = RecordOut {
            seq,
            timestamp_ns: seq,
            kind: 1,
            payload: &payload,
        };
        writer.append(record).expect("append");
    }
}

/// Every record, in order and gap-free, with the payload it was written with (raw mode's
/// records are the input's own, so only their order is checked there).
fn read_back(storage: &dyn Storage, check_payloads: bool) -> Vec<u64> {
    let mut seqs: Vec<u64> = Vec::new();
    journal::scan(storage, |record, _| {
        if let Some(last) = seqs.last() {
            assert_eq!(record.seq, last + 1, "a gap in what recovery returned");
        }
        if check_payloads {
            assert_eq!(record.payload, &payload(record.seq)[..]);
        }
        seqs.push(record.seq);
    })
    .expect("a recovered journal scans clean");
    seqs
}

fn raw(mut input: Input<'_>) {
    let storage = Arc::new(FaultStorage::new());
    let mut first_seq = 1 + u64::from(input.byte() % 4);
    for _ in 0..1 + input.byte() % 3 {
        let name = segment_name(first_seq);
        storage.create_zeroed(&name, SEGMENT_LEN).unwrap();
        let with_header = !input.byte().is_multiple_of(8);
        let body_len = usize::from(input.u16());
        let body = input.take(body_len).to_vec();
        storage.corrupt(&name, |bytes| {
            let start = if with_header {
                let header = SegmentHeader {
                    first_seq,
                    segment_len: SEGMENT_LEN,
                }
                .encode();
                bytes[..header.len()].copy_from_slice(&header);
                SEGMENT_HEADER_LEN as usize
            } else {
                0
            };
            let end = (start + body.len()).min(bytes.len());
            bytes[start..end].copy_from_slice(&body[..end - start]);
        });
        first_seq += 1 + u64::from(input.u16());
    }
    let Ok(recovered) = recover(storage.as_ref()) else {
        return;
    };
    let seqs = read_back(storage.as_ref(), false);
    assert_eq!(seqs.len() as u64, recovered.report.records);
    let Some(mut writer) = open_writer(storage.clone()) else {
        return;
    };
    let durable = append(&mut writer, 3);
    drop(writer);
    let image = storage.crash_image();
    recover(&image).expect("a recovered journal recovers again");
    assert_eq!(read_back(&image, false).last(), Some(&durable));
}

fn written(mut input: Input<'_>) {
    let storage = Arc::new(FaultStorage::new());
    let mut writer = open_writer(storage.clone()).expect("an empty journal opens");
    let mut acknowledged = 0;
    for _ in 0..input.byte() % 16 {
        acknowledged = append(&mut writer, 1 + u64::from(input.u16() % 700));
    }
    // The last commit is appended but its sync never returns.
    let mut torn = input.u16();
    append_uncommitted(&mut writer, u64::from(input.byte() % 200));
    let image = storage.crash_image_tearing(|_, bytes| {
        torn = torn.rotate_left(3);
        usize::from(torn) % (bytes.len() + 1)
    });
    drop(writer);
    let damages = input.byte() % 4;
    let names = image.list().unwrap();
    for _ in 0..damages {
        if names.is_empty() {
            break;
        }
        let name = &names[usize::from(input.byte()) % names.len()];
        let at = usize::from(input.u16()) * 4;
        let flip = input.byte() | 1;
        image.corrupt(name, |bytes| {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] ^= flip;
            }
        });
    }
    match recover(&image) {
        Ok(_) => {
            let seqs = read_back(&image, true);
            if damages == 0 {
                assert!(seqs.last().copied().unwrap_or(0) >= acknowledged);
                assert_eq!(seqs.first().copied().unwrap_or(1), 1);
            }
        }
        Err(e) => assert!(damages > 0, "an undamaged journal was refused: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    if input.byte() % 2 == 0 {
        raw(input);
    } else {
        written(input);
    }
});
