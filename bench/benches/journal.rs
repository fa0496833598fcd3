//! Durable append: records of 96 bytes (40-byte header + 56-byte payload, the size of a
//! journaled single-line PlaceOrder) committed in groups of 1, 16, 256 and 4096, each commit
//! one write and one fdatasync (or one durable direct write). Four paths on the same disk in the
//! same run:
//!
//! - `uring`: the journal writer on io_uring (writes in flight, linked to an fdatasync);
//! - `pwritev2`: the journal writer on its fallback path;
//! - `pipelined`: the journal writer with two commits in flight (the server's default): the
//!   next commit is encoded and written while the last one syncs, so time per commit is its
//!   share of the throughput, not its latency (the last ones are waited for in the timing);
//! - `direct`: the journal writer with `O_DIRECT` writes carrying `RWF_DSYNC` (one commit at a
//!   time, each durable when its write completes, no `fdatasync`);
//! - `raw`: a plain loop of `pwrite` + `fdatasync` of the same bytes into a pre-zeroed file,
//!   the disk's own rate and the ceiling the journal is measured against;
//!
//! and `encode`, the records encoded into a commit buffer with no I/O (the CPU share of a
//! commit, which the raw loop, writing pre-encoded bytes, does not pay).
//!
//! Time per iteration is the latency of one commit; the throughput line is durable records
//! per second. The journal also rolls over to new 64 MiB segments, which a helper thread
//! prepares in the background; the raw loop cycles over one pre-zeroed file. Between samples,
//! untimed, covered segments are retired as a snapshot would retire them, with
//! `Retention::Recycle` (the writer reuses them instead of zero-filling new files) unless
//! `SURGE_BENCH_RETENTION=delete` (every segment a fresh zero-filled file).
//!
//! `cargo bench -p bench --bench journal` (files under `SURGE_BENCH_DIR`, default the
//! target's tmp dir; put it on the disk you want measured).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use journal::format::{encode_record, RecordOut};
use journal::retention::{prune, Retention};
use journal::writer::SEGMENT_LEN_DEFAULT;
use journal::{FileStorage, IoMode, JournalWriter, Storage};

const BATCHES: [u64; 4] = [1, 16, 256, 4096];
const PAYLOAD: [u8; 56] = [0x5a; 56];
const KIND: u16 = 4;

fn bench_dir(name: &str) -> PathBuf {
    let root = std::env::var_os("SURGE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("journal-bench"));
    let dir = root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the bench directory");
    dir
}

/// A fresh journal in its own directory.
fn open_journal(name: &str, mode: IoMode) -> (JournalWriter, Arc<FileStorage>, PathBuf) {
    let dir = bench_dir(name);
    let storage = Arc::new(FileStorage::open(&dir, mode).expect("opening the journal dir"));
    let recovered = journal::recover(storage.as_ref()).expect("recovering an empty journal");
    let writer = JournalWriter::open(storage.clone(), &recovered, SEGMENT_LEN_DEFAULT, 1)
        .expect("opening the writer");
    (writer, storage, dir)
}

fn retention() -> Retention {
    match std::env::var("SURGE_BENCH_RETENTION").as_deref() {
        Ok("delete") => Retention::Delete,
        _ => Retention::Recycle,
    }
}

fn bench_writer(c: &mut Criterion, label: &str, mode: IoMode, commits_in_flight: usize) {
    let (mut writer, storage, dir) = open_journal(label, mode);
    writer.set_pipeline(commits_in_flight, None);
    let retention = retention();
    eprintln!("journal/{label}: {}; {retention:?}", storage.describe());
    let mut group = c.benchmark_group(format!("journal/{label}"));
    configure(&mut group);
    for batch in BATCHES {
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    for _ in 0..batch {
                        let seq = writer.next_seq();
                        writer
                            .append(RecordOut {
                                seq,
                                timestamp_ns: seq,
                                kind: KIND,
                                payload: &PAYLOAD,
                            })
                            .expect("append");
                    }
                    writer.submit().expect("submit");
                }
                writer.commit().expect("the commits in flight");
                let elapsed = start.elapsed();
                prune(storage.as_ref(), &dir, writer.durable_seq(), &retention)
                    .expect("pruning covered segments");
                elapsed
            })
        });
    }
    group.finish();
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Encode what a journal commit of `batch` records writes into `bytes`.
fn encode_batch(batch: u64, bytes: &mut Vec<u8>) {
    for seq in 1..=batch {
        let record = RecordOut {
            seq,
            timestamp_ns: seq,
            kind: KIND,
            payload: &PAYLOAD,
        };
        encode_record(&record, 0, bytes);
    }
}

fn bench_raw(c: &mut Criterion) {
    let dir = bench_dir("raw");
    let path = dir.join("raw.dat");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("creating the raw file");
    zero_fill(&file, SEGMENT_LEN_DEFAULT);
    let mut group = c.benchmark_group("journal/raw");
    configure(&mut group);
    for batch in BATCHES {
        let mut bytes = Vec::new();
        encode_batch(batch, &mut bytes);
        let mut offset = 0u64;
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter(|| {
                if offset + bytes.len() as u64 > SEGMENT_LEN_DEFAULT {
                    offset = 0;
                }
                file.write_all_at(&bytes, offset).expect("pwrite");
                file.sync_data().expect("fdatasync");
                offset += bytes.len() as u64;
            })
        });
    }
    group.finish();
    drop(file);
    let _ = std::fs::remove_dir_all(&dir);
}

fn zero_fill(file: &File, len: u64) {
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        file.write_all_at(&zeros, at).expect("zero-filling");
        at += zeros.len() as u64;
    }
    file.sync_all().expect("syncing the zeroed file");
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
}

/// Encoding alone (header, checksum, padding into the commit buffer): the CPU part of a
/// commit, which the raw loop does not pay.
fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal/encode");
    let mut buffer = Vec::with_capacity(1 << 20);
    for batch in BATCHES {
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter(|| {
                buffer.clear();
                encode_batch(batch, &mut buffer);
                buffer.len()
            })
        });
    }
    group.finish();
}

fn append_benches(c: &mut Criterion) {
    bench_encode(c);
    bench_raw(c);
    bench_writer(c, "uring", IoMode::Uring, 1);
    bench_writer(c, "pwritev2", IoMode::Pwritev2, 1);
    bench_writer(c, "pipelined", IoMode::Pwritev2, 2);
    bench_writer(c, "direct", IoMode::Direct, 1);
}

criterion_group!(benches, append_benches);
criterion_main!(benches);
