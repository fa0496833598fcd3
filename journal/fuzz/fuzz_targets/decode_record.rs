//! The record decoder over arbitrary bytes: it never panics, never claims more bytes than it
//! was given, and whatever it accepts re-encodes to exactly the bytes it read (so no field,
//! padding byte or checksum goes unchecked).
#![no_main]

use journal::format::{decode_record, encode_record, RecordOut};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = decode_record(data) else {
        return;
    };
    assert!(record.total_len <= data.len());
    let mut again = Vec::new();
    let out = RecordOut {
        seq: record.seq,
        timestamp_ns: record.timestamp_ns,
        kind: record.kind,
        payload: record.payload,
    };
    encode_record(&out, record.durable_watermark, &mut again);
    assert_eq!(&again[..], &data[..record.total_len]);
});
