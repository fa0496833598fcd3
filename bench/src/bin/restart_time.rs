//! Restart time and replay rate. For each workload — `flash-sale` (a crowd of buyers on one
//! hot SKU: orders, sold-out rejections, waitlist joins, payments, failures, cancels,
//! expiries) and `mixed` (Zipf over 10,000 SKUs: multi-line orders, payments, cancels) —
//! records a run of at least `RECORDS` requests (default 10M), times the engine alone on it
//! (in memory, no decoding), journals it into a fresh data directory in group commits of
//! 4096, then times what a restart does:
//!
//! 1. recover the journal: map every segment, verify every checksum, find the durable end;
//! 2. replay it into a fresh engine: scan again, decode each payload (rkyv, validated), apply.
//!
//! Once with the segments dropped from the page cache (a restart after a reboot reads them
//! from disk), once warm (a process restart). The rebuilt engine's rolling hash must equal
//! the writer's.
//!
//! `cargo run --release -p bench --bin restart-time [-- RECORDS [WORKLOAD]]` (files under
//! `SURGE_BENCH_DIR`, default /var/tmp).

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use engine::{Engine, EngineConfig, Output};
use journal::{FileStorage, IoMode};
use loadgen::{FlashSale, Mixed};
use server::checkpoint::data_dir::DataDir;

const COMMIT_EVERY: usize = 4096;
const MS: u64 = 1_000_000;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let wanted: u64 = args
        .next()
        .map(|a| a.parse().expect("RECORDS is a number"))
        .unwrap_or(10_000_000);
    let workloads: Vec<String> = match args.next() {
        Some(w) => vec![w],
        None => vec!["flash-sale".into(), "mixed".into()],
    };
    let root = std::env::var_os("SURGE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
        .join("surge-restart-time");
    for workload in workloads {
        let _ = std::fs::remove_dir_all(&root);
        run(&root, &workload, wanted)?;
        std::fs::remove_dir_all(&root)?;
    }
    Ok(())
}

fn run(root: &Path, workload: &str, wanted: u64) -> anyhow::Result<()> {
    let config = EngineConfig::default();
    let started = Instant::now();
    // About 1.1 requests per buyer in either workload (most flash-sale buyers find it sold
    // out; most mixed buyers order once and pay once), so one buyer per wanted record.
    let recording = match workload {
        "flash-sale" => {
            let sale = FlashSale {
                stock: 200_000,
                buyers: wanted,
                arrivals_over_ns: 60_000 * MS,
                ..FlashSale::default()
            };
            bench::record(&sale, config, 7)
        }
        "mixed" => bench::record(&Mixed::new(10_000, wanted), config, 7),
        other => anyhow::bail!("unknown workload {other:?} (flash-sale, mixed)"),
    };
    let requests: Vec<_> = recording.setup.iter().chain(&recording.stream).collect();
    println!(
        "{workload}: recorded {} requests in {:.1} s",
        requests.len(),
        started.elapsed().as_secs_f64()
    );

    let mut engine = Engine::new(config);
    let mut out = Output::default();
    let started = Instant::now();
    for (now_ns, request) in &requests {
        engine.apply(*now_ns, request, &mut out);
    }
    let alone_s = started.elapsed().as_secs_f64();
    let expected_hash = engine.hash();
    drop(engine);
    println!(
        "  engine alone (in memory): {:.2}M requests/s",
        requests.len() as f64 / alone_s / 1e6
    );

    let dir = DataDir::new(root);
    let (mut journaler, write_path) = dir.journaler(
        IoMode::Auto,
        &config,
        journal::writer::SEGMENT_LEN_DEFAULT,
        1,
    )?;
    let started = Instant::now();
    for (i, (now_ns, request)) in requests.iter().enumerate() {
        journaler.append(*now_ns, request)?;
        if (i + 1) % COMMIT_EVERY == 0 {
            journaler.commit()?;
        }
    }
    journaler.commit()?;
    let written = journaler.next_seq() - 1;
    println!(
        "  journaled {written} records through {write_path} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(journaler);
    drop(requests);
    drop(recording);

    let files = std::fs::read_dir(dir.journal_dir())?.count();
    for cache in ["cold", "warm"] {
        if cache == "cold" {
            drop_from_page_cache(&dir.journal_dir())?;
        }
        let started = Instant::now();
        let storage = FileStorage::open(&dir.journal_dir(), IoMode::Pwritev2)?;
        let recovered = journal::recover(&storage)?;
        let recover_s = started.elapsed().as_secs_f64();
        let replay_started = Instant::now();
        let replayed = dir.replay()?;
        let replay_s = replay_started.elapsed().as_secs_f64();
        let total_s = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            replayed.engine.hash() == expected_hash,
            "the replayed engine's hash differs from the writer's"
        );
        anyhow::ensure!(recovered.report.records == written);
        if cache == "cold" {
            println!(
                "  journal: {files} segments, {:.1} MiB of records ({:.1} bytes per record)",
                recovered.report.record_bytes as f64 / (1 << 20) as f64,
                recovered.report.record_bytes as f64 / written as f64
            );
        }
        println!(
            "  restart ({cache} cache): {total_s:.2} s = recover {recover_s:.2} s ({:.1}M records/s) \
             + replay {replay_s:.2} s ({:.2}M records/s into the engine); hash matches",
            written as f64 / recover_s / 1e6,
            replayed.records_replayed as f64 / replay_s / 1e6,
        );
    }
    Ok(())
}

/// Ask the kernel to drop the (clean, synced) pages of every file in `dir`.
fn drop_from_page_cache(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let file = std::fs::File::open(entry?.path())?;
        // SAFETY: a plain syscall on an open descriptor.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}
