//! The crash test: a child process appends under load to a real journal (real files, the
//! default I/O path) and reports each durable sequence on stdout; the parent kills it with
//! SIGKILL at a random moment, recovers, and checks that every record the child had been told
//! was durable is there, in order, with its payload, and that nothing unreadable is served.
//! Many rounds on one journal, so each child also recovers what the previous one left. The
//! child also retires covered segments with `Retention::Recycle` every so often, as snapshots
//! would, so its appends overwrite recycled segments' stale records. Commits are pipelined
//! (1 to 4 in flight, changing from round to round), and every fifth round writes with
//! `O_DIRECT` (`IoMode::Direct`, one commit at a time): the child reports what the writer's
//! durable hook publishes, so a kill usually lands with commits written and not yet synced.
//!
//! The child is this test binary re-run with `SURGE_KILL_CHILD_DIR` set (the `child` test is
//! ignored, so a normal run skips it).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{append_batch, open_writer, read_all};
use journal::retention::{prune, Retention};
use journal::scan::segment_names;
use journal::{recover, DurableHook, FileStorage, IoMode};

const ROUNDS: u64 = 25;
const CHILD_ENV: &str = "SURGE_KILL_CHILD_DIR";
const IN_FLIGHT_ENV: &str = "SURGE_KILL_COMMITS_IN_FLIGHT";
const IO_ENV: &str = "SURGE_KILL_IO";
/// A child that has not been killed by then is a bug, not a slow machine.
const CHILD_RUN_MAX: Duration = Duration::from_secs(60);

#[test]
#[ignore = "run by kill_9_at_random_moments_loses_nothing_acknowledged as its child"]
fn child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let in_flight: usize = std::env::var(IN_FLIGHT_ENV).unwrap().parse().unwrap();
    let io: IoMode = std::env::var(IO_ENV).unwrap().parse().unwrap();
    let storage = Arc::new(FileStorage::open(dir.as_ref(), io).unwrap());
    let mut writer = open_writer(storage.clone());
    // What the writer publishes as durable is what the parent may count on.
    let hook: DurableHook = Arc::new(|synced| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", synced.expect("no sync fails here").through_seq).unwrap();
        out.flush().unwrap();
    });
    writer.set_pipeline(in_flight, Some(hook));
    let started = Instant::now();
    let mut round = 0u64;
    while started.elapsed() < CHILD_RUN_MAX {
        round += 1;
        append_batch(&mut writer, 1 + round * 7 % 200).unwrap();
        writer.submit().unwrap();
        if round.is_multiple_of(50) {
            let durable = writer.durable_seq();
            prune(storage.as_ref(), dir.as_ref(), durable, &Retention::Recycle).unwrap();
        }
    }
}

#[test]
fn kill_9_at_random_moments_loses_nothing_acknowledged() {
    let dir = std::env::temp_dir().join(format!("surge-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut acknowledged = 0u64;
    let mut x = 0x9e37_79b9u64;
    for round in 0..ROUNDS {
        let (io, in_flight) = match round % 5 {
            4 => ("direct", 1),
            k => ("auto", 1 + k),
        };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .env(IN_FLIGHT_ENV, in_flight.to_string())
            .env(IO_ENV, io)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines() {
                if let Ok(seq) = line.unwrap_or_default().trim().parse::<u64>() {
                    last = Some(seq);
                }
            }
            last
        });
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_millis(20 + x % 120));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Some(seq) = reader.join().unwrap() {
            assert!(seq >= acknowledged, "round {round}: durable went backwards");
            acknowledged = seq;
        }
        let storage = FileStorage::open(&dir, IoMode::Pwritev2).unwrap();
        let recovered = recover(&storage).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let seqs = read_all(&storage).unwrap();
        let last = recovered.report.last_seq.unwrap_or(0);
        let first = segment_names(&storage).unwrap().first().map_or(1, |s| s.0);
        assert!(
            last >= acknowledged,
            "round {round}: {last} < acknowledged {acknowledged}"
        );
        assert_eq!(
            seqs,
            (first..=last).collect::<Vec<_>>(),
            "round {round}: not in order"
        );
    }
    assert!(acknowledged > 0, "no child ever acknowledged anything");
    let recycled = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("recycle".as_ref()))
        .count();
    eprintln!(
        "{ROUNDS} kills, {acknowledged} records acknowledged, none lost; {recycled} recycled \
         segments waiting"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
