//! Checkpoints of the serving engine, on a real `surge serve` under load: a SIGKILL, and a
//! crash at each step of writing one (`SURGE_CRASH_AT`), restart from the newest whole
//! chain plus the journal after it with every acknowledged order kept; a damaged
//! checkpoint is skipped with a notice; without snapshots the checkpoints retire the
//! journal's segments. After each restart the state equals a replay of the journal alone,
//! byte for byte (`surge replay --export` with the checkpoints and without them).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use server::checkpoint::saver::CHECKPOINT_STEPS;
use server::telemetry::crash_point::CRASH_AT_ENV;
use tools::serve_process::{log_field, ServeProcess};

use super::crash::load;
use super::harness::*;

const SETS: &[&str] = &[
    "checkpoint.every_records=3000",
    "checkpoint.full_every=3",
    "checkpoint.keep_chains=2",
    "checkpoint.step_kib=16",
    "snapshot.every_records=0",
    "snapshot.every_secs=0",
    "engine.orders_max=2097152",
];

/// Load the server at `dir` until it has written `checkpoints` (then SIGKILL it) or until
/// it dies at the armed crash point; every (request, order) acknowledged.
fn load_until(dir: &Path, crash_at: Option<&str>, checkpoints: usize) -> Vec<(u64, u64)> {
    let mut command = Command::new(SURGE);
    command.arg("serve");
    if let Some(step) = crash_at {
        command.env(CRASH_AT_ENV, step);
    }
    let process = ServeProcess::launch(command, dir, "127.0.0.1:0", "127.0.0.1:0", SETS).unwrap();
    let mut server = ServerProcess::from(process);
    upsert(&mut server.client(1), 1, 10, 100_000_000, 0);
    let (tx, rx) = mpsc::channel();
    let addr = server.addr;
    let loader = std::thread::spawn(move || load(addr, 1, tx));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let written = server
            .logs()
            .iter()
            .filter(|l| l.contains("event=checkpoint "))
            .count();
        if crash_at.is_none() && written >= checkpoints {
            server.kill9();
            break;
        }
        if crash_at.is_some() && server.logged("crash_point") {
            server.wait_exit(Duration::from_secs(10));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{crash_at:?}: {:#?}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    loader.join().unwrap();
    let acked: HashMap<u64, u64> = rx.try_iter().collect();
    // A crash point may be reached before every answer of the first 3,000 records is read.
    assert!(
        acked.len() > 1000,
        "only {} orders acknowledged",
        acked.len()
    );
    acked.into_iter().collect()
}

/// `surge replay --export` of `dir`, as it is and with its checkpoints set aside.
fn export_with_and_without_checkpoints(dir: &Path) -> (String, String) {
    let export = |name: &str| replay_export(dir, &dir.join(name)).1;
    let with = export("with.jsonl");
    let (checkpoints, aside) = (dir.join("checkpoints"), dir.join("checkpoints.aside"));
    std::fs::rename(&checkpoints, &aside).unwrap();
    let without = export("without.jsonl");
    std::fs::rename(&aside, &checkpoints).unwrap();
    (with, without)
}

/// Restart on `dir`: every acknowledged order is there; then stop it, and the state equals
/// a replay of the journal alone. The `recovered` line.
fn restart_and_check(dir: &Path, acked: &[(u64, u64)]) -> String {
    let mut server = ServerProcess::start(dir, SETS);
    let recovered = server.log_line("recovered").unwrap();
    assert_acknowledged_kept(&server, acked);
    server.kill9();
    let (with, without) = export_with_and_without_checkpoints(dir);
    assert!(with.lines().count() > 1000);
    assert!(
        with == without,
        "the state restored from checkpoints differs from a replay"
    );
    recovered
}

fn checkpoint_restored(recovered: &str) -> u64 {
    log_field(recovered, "checkpoint").unwrap().parse().unwrap()
}

#[test]
fn a_sigkill_restarts_from_the_newest_chain_and_equals_a_replay() {
    let dir = temp_dir("checkpoint-kill");
    let acked = load_until(&dir, None, 5);
    let recovered = restart_and_check(&dir, &acked);
    assert!(checkpoint_restored(&recovered) >= 5, "{recovered}");
}

#[test]
fn a_crash_at_each_step_of_a_checkpoint_restarts_with_everything_acknowledged() {
    for step in CHECKPOINT_STEPS {
        let dir = temp_dir(&format!("checkpoint-crash-{step}"));
        let acked = load_until(&dir, Some(step), 0);
        let recovered = restart_and_check(&dir, &acked);
        let restored = checkpoint_restored(&recovered);
        // Before the rename the crashed checkpoint is not there; after it, it is.
        match step {
            "checkpoint.mid_frames" | "checkpoint.before_rename" => {
                assert_eq!(restored, 0, "{step}: {recovered}")
            }
            _ => assert!(restored >= 1, "{step}: {recovered}"),
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("checkpoints"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{step}: {leftovers:?}");
    }
}

#[test]
fn a_damaged_checkpoint_is_skipped_with_a_notice_and_nothing_is_lost() {
    let dir = temp_dir("checkpoint-damaged");
    let acked = load_until(&dir, None, 4);
    let newest = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ckpt")) // not a .tmp the kill left
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&newest, bytes).unwrap();
    let mut server = ServerProcess::start(&dir, SETS);
    let notice = server.log_line("recovery_notice").unwrap();
    let name = newest.file_name().unwrap().to_string_lossy().into_owned();
    assert!(notice.contains(&name), "{notice}");
    let recovered = server.log_line("recovered").unwrap();
    let number: u64 = name[11..21].parse().unwrap();
    assert!(checkpoint_restored(&recovered) < number, "{recovered}");
    assert_acknowledged_kept(&server, &acked);
    server.kill9();
}

#[test]
fn without_snapshots_the_checkpoints_retire_journal_segments() {
    let dir = temp_dir("checkpoint-retention");
    let sets = [SETS, &["journal.segment_mib=1"]].concat();
    let mut server = ServerProcess::start(&dir, &sets);
    upsert(&mut server.client(1), 1, 10, 100_000_000, 0);
    let (tx, rx) = mpsc::channel();
    let addr = server.addr;
    let loader = std::thread::spawn(move || load(addr, 1, tx));
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&server, "surge_journal_segments_retired_total") < 2 {
        assert!(Instant::now() < deadline, "{:#?}", server.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();
    loader.join().unwrap();
    let acked: Vec<(u64, u64)> = rx.try_iter().collect();
    let server = ServerProcess::start(&dir, &sets);
    assert!(checkpoint_restored(&server.log_line("recovered").unwrap()) > 0);
    assert_acknowledged_kept(&server, &acked);
}

fn metric(server: &ServerProcess, name: &str) -> u64 {
    let (_, body) = server.http_get("/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A full disk under the checkpoints (a 96 KiB tmpfs: mounting needs root; without it the
/// test says so and passes, unless `SURGE_REQUIRE_MOUNT=1`): each checkpoint fails and is
/// logged, the node goes on answering, nothing half-written stays, and a restart without a
/// checkpoint keeps every acknowledged order.
#[test]
fn a_full_disk_fails_checkpoints_without_stopping_the_node() {
    let dir = temp_dir("checkpoint-disk-full");
    let checkpoints = dir.join("checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96k", "tmpfs"])
        .arg(&checkpoints)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var("SURGE_REQUIRE_MOUNT").as_deref() != Ok("1"),
            "mounting tmpfs needs root (SURGE_REQUIRE_MOUNT=1 is set)"
        );
        eprintln!("skipped: mounting tmpfs needs root");
        return;
    }
    let outcome = std::panic::catch_unwind(|| {
        let mut server = ServerProcess::start(&dir, SETS);
        upsert(&mut server.client(1), 1, 10, 100_000_000, 0);
        let (tx, rx) = mpsc::channel();
        let addr = server.addr;
        let loader = std::thread::spawn(move || load(addr, 1, tx));
        let mut acked: Vec<(u64, u64)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while metric(&server, "surge_checkpoint_failures_total") < 2 {
            acked.extend(rx.try_iter());
            assert!(Instant::now() < deadline, "{:#?}", server.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(server.logged("checkpoint_failed"), "{:#?}", server.logs());
        // Still answering after the failures.
        let before = acked.len();
        while acked.len() < before + 2000 {
            acked.push(rx.recv_timeout(Duration::from_secs(10)).unwrap());
        }
        assert_eq!(metric(&server, "surge_checkpoints_total"), 0);
        server.kill9();
        loader.join().unwrap();
        acked.extend(rx.try_iter());
        let mut server = ServerProcess::start(&dir, SETS);
        assert_eq!(
            checkpoint_restored(&server.log_line("recovered").unwrap()),
            0
        );
        // A failed one was removed; one the kill caught half-written, at the start.
        let leftovers = std::fs::read_dir(&checkpoints).unwrap().count();
        assert_eq!(leftovers, 0, "a failed checkpoint left a file behind");
        assert_acknowledged_kept(&server, &acked);
        server.kill9();
    });
    let unmounted = Command::new("umount").arg(&checkpoints).status().unwrap();
    outcome.unwrap();
    assert!(unmounted.success());
}

/// A full disk under the feed log (a 512 KiB tmpfs; root as above): the feed, having written
/// what fitted, stops (logged, `surge_feed_enabled` 0) and nothing else does. Checkpoints, which wait for the feed log to
/// reach them, go on without it; the node keeps answering; a restart, whose replay cannot
/// write the log either, still serves with every acknowledged order.
#[test]
fn a_full_disk_under_the_feed_stops_the_feed_and_nothing_else() {
    let dir = temp_dir("feed-disk-full");
    let feed = dir.join("feed");
    std::fs::create_dir_all(&feed).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&feed)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var("SURGE_REQUIRE_MOUNT").as_deref() != Ok("1"),
            "mounting tmpfs needs root (SURGE_REQUIRE_MOUNT=1 is set)"
        );
        eprintln!("skipped: mounting tmpfs needs root");
        return;
    }
    let mut sets = SETS.to_vec();
    sets.push("feed.listen=\"127.0.0.1:0\"");
    let outcome = std::panic::catch_unwind(|| {
        let mut server = ServerProcess::start(&dir, &sets);
        upsert(&mut server.client(1), 1, 10, 100_000_000, 0);
        let (tx, rx) = mpsc::channel();
        let addr = server.addr;
        let loader = std::thread::spawn(move || load(addr, 1, tx));
        let mut acked: Vec<(u64, u64)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while metric(&server, "surge_feed_enabled") != 0 {
            acked.extend(rx.try_iter());
            assert!(Instant::now() < deadline, "{:#?}", server.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(server.logged("feed_stopped"), "{:#?}", server.logs());
        // It wrote what fitted first.
        assert!(metric(&server, "surge_feed_through_seq") > 1000);
        let stopped_at = metric(&server, "surge_checkpoints_total");
        while metric(&server, "surge_checkpoints_total") < stopped_at + 2 {
            acked.extend(rx.try_iter());
            assert!(
                Instant::now() < deadline,
                "checkpoints stopped with the feed: {:#?}",
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server.kill9();
        loader.join().unwrap();
        acked.extend(rx.try_iter());
        assert!(acked.len() > 3000, "only {} acknowledged", acked.len());
        let mut server = ServerProcess::start(&dir, &sets);
        assert!(checkpoint_restored(&server.log_line("recovered").unwrap()) > 0);
        assert_acknowledged_kept(&server, &acked);
        server.kill9();
    });
    let unmounted = Command::new("umount").arg(&feed).status().unwrap();
    outcome.unwrap();
    assert!(unmounted.success());
}
