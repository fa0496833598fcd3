//! Snapshots while serving: one is taken under load, then the server is SIGKILLed while it
//! writes the next (its pieces paced out so the test can catch it half-written). The restart
//! uses the older snapshot plus the journal after it, and every acknowledged order is there.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::crash::load;
use super::harness::*;
use tools::serve_process::log_field;

const SETS: &[&str] = &[
    "snapshot.every_records=2000",
    "snapshot.every_secs=0",
    "snapshot.keep=2",
    "snapshot.write_piece_kib=64",
    "snapshot.write_pause_ms=20",
    // Orders are never paid here: room for all a minute of load can place.
    "engine.orders_max=2097152",
];

fn half_written(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir.join("snapshots"))
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".snap.tmp"))
        })
        .unwrap_or(false)
}

#[test]
fn a_kill_mid_snapshot_restarts_from_the_one_before_and_loses_nothing() {
    let dir = temp_dir("snapshot-kill");
    let mut server = ServerProcess::start(&dir, SETS);
    upsert(&mut server.client(1), 1, 10, 100_000_000, 0);
    let (tx, rx) = mpsc::channel();
    let addr = server.addr;
    let loader = std::thread::spawn(move || load(addr, 1, tx));
    let mut acked: HashMap<u64, u64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // The first snapshot, whole.
    let first = loop {
        acked.extend(rx.try_iter());
        if let Some(line) = server.log_line("snapshot") {
            break log_field(&line, "seq").unwrap().parse::<u64>().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot: {:#?}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    // The next one, caught half-written.
    while !half_written(&dir) {
        acked.extend(rx.try_iter());
        assert!(
            Instant::now() < deadline,
            "no second snapshot: {:#?}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    server.kill9();
    loader.join().unwrap();
    acked.extend(rx.try_iter());
    assert!(
        acked.len() > 2000,
        "only {} orders acknowledged",
        acked.len()
    );

    let server = ServerProcess::start(&dir, SETS);
    let recovered = server.log_line("recovered").unwrap();
    assert_eq!(
        log_field(&recovered, "snapshot_seq").unwrap(),
        first.to_string(),
        "{recovered}"
    );
    let replayed: u64 = log_field(&recovered, "records_replayed")
        .unwrap()
        .parse()
        .unwrap();
    assert!(replayed > 0, "{recovered}");
    let acked: Vec<(u64, u64)> = acked.into_iter().collect();
    assert_acknowledged_kept(&server, &acked);
}
