//! Engine apply rate on one core: the PlaceOrder hot path, a flash-sale mix (one hot SKU,
//! waitlist on) and a broad mix (Zipf over 1M SKUs: orders, payments, cancels, expiries).
//! Each replays a recorded stream on a fresh engine that already has the catalog loaded and
//! its memory preallocated for the stream (`Engine::fault_in`, as the server does at
//! start-up), prefetching one request ahead as the engine stage does.
//!
//! The hot path runs twice: with clients that have just connected (their idempotency tables
//! still growing, as right after a restart) and with clients whose tables are full size (the
//! steady state of a running server; warmed up untimed by one window of requests each).
//!
//! `cargo bench -p bench --bench engine`

use bench::{hot_path, record, replay, replay_checkpointing, warm_sessions};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use engine::{Engine, EngineConfig};
use loadgen::{FlashSale, Mixed};

const HOT_PATH_ORDERS: u64 = 1_000_000;
/// Idempotency window for the warm-session run: small enough to warm up quickly.
const WARM_WINDOW: u32 = 4096;

fn config() -> EngineConfig {
    EngineConfig {
        payment_window_ns: 2_000_000_000,
        ..EngineConfig::default()
    }
}

fn bench_stream(
    c: &mut Criterion,
    name: &str,
    config: EngineConfig,
    setup: &[(u64, engine::Request)],
    stream: &[(u64, engine::Request)],
) {
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    group.throughput(Throughput::Elements(stream.len() as u64));
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                let mut engine = Engine::new(config);
                replay(&mut engine, setup);
                engine.fault_in();
                engine
            },
            |mut engine| {
                let hash = replay(&mut engine, stream);
                (engine, hash)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn engine_benches(c: &mut Criterion) {
    let (setup, stream) = hot_path(HOT_PATH_ORDERS);
    bench_stream(c, "place_order_hot_path", config(), &setup, &stream);
    let warm = EngineConfig {
        idempotency_window: WARM_WINDOW,
        ..config()
    };
    let setup = [setup, warm_sessions(WARM_WINDOW)].concat();
    bench_stream(
        c,
        "place_order_hot_path_warm_sessions",
        warm,
        &setup,
        &stream,
    );

    let sale = FlashSale {
        buyers: 200_000,
        stock: 20_000,
        arrivals_over_ns: 20_000_000_000,
        ..FlashSale::default()
    };
    let recording = record(&sale, config(), 7);
    bench_stream(
        c,
        "flash_sale_mix",
        config(),
        &recording.setup,
        &recording.stream,
    );

    let mixed = Mixed::new(1_000_000, 500_000);
    let recording = record(&mixed, config(), 7);
    bench_stream(
        c,
        "broad_mix_1m_skus",
        config(),
        &recording.setup,
        &recording.stream,
    );
    // The same while the engine checkpoints itself: a delta every 100k requests, 64 KiB
    // copied after each request (copy-on-update and the copier, encoding included).
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    group.throughput(Throughput::Elements(recording.stream.len() as u64));
    group.bench_function("broad_mix_1m_skus_checkpointing", |b| {
        b.iter_batched(
            || {
                let mut engine = Engine::new(config());
                replay(&mut engine, &recording.setup);
                engine.fault_in();
                engine
            },
            |mut engine| {
                let done = replay_checkpointing(&mut engine, &recording.stream, 100_000, 64 << 10);
                (engine, done)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, engine_benches);
criterion_main!(benches);
