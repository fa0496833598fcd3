//! What a snapshot of a big state costs: `ORDERS` open orders (default 10M, single-line,
//! over 1,000 SKUs, none paid), then each step timed on its own, the way `surge serve`'s
//! snapshotter and a restart do them:
//!
//! - write: the engine archived straight from its tables into the file (one 4 MiB buffer),
//!   synced, header last, renamed, directory synced (`write_engine_snapshot`);
//! - load: read the newest snapshot, check it, restore an engine from it.
//!
//! `cargo run --release -p bench --bin snapshot-cost [-- ORDERS]` (files under
//! `SURGE_BENCH_DIR`, default /var/tmp).

use std::path::PathBuf;
use std::time::Instant;

use engine::Engine;
use journal::{snapshot, FileStorage, IoMode};
use server::checkpoint::data_dir::write_engine_snapshot;

const SKUS: u64 = 1_000;

fn main() -> anyhow::Result<()> {
    let orders: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ORDERS is a number"))
        .unwrap_or(10_000_000);
    let dir = std::env::var_os("SURGE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
        .join("surge-snapshot-cost");
    let _ = std::fs::remove_dir_all(&dir);
    let engine = open_orders(orders);

    let storage = FileStorage::open(&dir, IoMode::Pwritev2)?;
    let started = Instant::now();
    let (_, size) = write_engine_snapshot(&storage, &engine, orders, snapshot::Pace::AT_ONCE)?;
    let write_s = started.elapsed().as_secs_f64();
    let hash = engine.hash();
    drop(engine);

    let started = Instant::now();
    let (newest, _) = snapshot::load_newest(&storage)?;
    let newest = newest.expect("the snapshot just written");
    let restored = Engine::restore_from_bytes(newest.payload())?;
    let load_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(restored.hash() == hash, "the restored engine differs");

    println!("snapshot of {orders} open orders over {SKUS} SKUs");
    println!(
        "  size      {:.1} MiB ({:.1} bytes per open order)",
        size as f64 / (1 << 20) as f64,
        size as f64 / orders as f64
    );
    println!(
        "  write     {:.1} ms  (archived from the tables into the file, synced, renamed)",
        write_s * 1e3
    );
    println!(
        "  load      {:.1} ms  (read, validate, restore)",
        load_s * 1e3
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// An engine holding `orders` open single-line orders.
fn open_orders(orders: u64) -> Engine {
    let mut engine = Engine::new(bench::config_for_open_orders(orders));
    engine.fault_in();
    bench::load_catalog(&mut engine, SKUS, orders);
    bench::place_open_orders(&mut engine, orders, SKUS);
    engine
}
