//! A standby journals the records it receives as they arrived: after a run, its journal holds
//! the primary's records byte for byte (sequence, timestamp, kind, payload), only its own
//! first record (the configuration) and each record's durable watermark being its own.

use std::path::Path;
use std::time::Duration;

use journal::{FileStorage, IoMode};

use crate::harness::*;

/// Every record after the configuration record: (seq, timestamp, kind, payload).
fn records(data_dir: &Path) -> Vec<(u64, u64, u16, Vec<u8>)> {
    let storage = FileStorage::open(&data_dir.join("journal"), IoMode::Pwritev2).unwrap();
    let mut out = Vec::new();
    journal::scan(&storage, |record, _| {
        if record.seq > 1 {
            out.push((
                record.seq,
                record.timestamp_ns,
                record.kind,
                record.payload.to_vec(),
            ));
        }
    })
    .unwrap();
    out
}

#[test]
fn a_standby_journals_the_primarys_records_as_they_arrived() {
    let dir = temp_dir("journals");
    let sets = pair_sets("durable", "degrade", &[]);
    let mut a = primary(&dir.join("a"), &sets);
    let mut b = standby(&dir.join("b"), &a, &sets);
    wait_streaming(&a);
    add_sku(&a, 1, 55);
    place_orders(&a, 2, 55, 5_000);
    assert_converged(&a, &b);
    b.terminate(Duration::from_secs(30)).unwrap();
    a.terminate(Duration::from_secs(30)).unwrap();

    let primary = records(&dir.join("a"));
    let standby = records(&dir.join("b"));
    // The primary may journal a Tick after the standby stopped: the standby's journal is a
    // prefix of the primary's, and holds every acknowledged write (the SKU and the orders).
    assert!(standby.len() > 5_000, "{} records", standby.len());
    assert!(
        standby.len() <= primary.len(),
        "{} > {}",
        standby.len(),
        primary.len()
    );
    for (p, s) in primary.iter().zip(&standby) {
        assert_eq!(p, s, "record {} differs", p.0);
    }
}
