//! Shared pieces of surge's benchmarks: recorded workloads ready to replay on a fresh engine.
//! The benches themselves are in `benches/` (criterion) and `src/bin/` (measurements that
//! are not timings, such as memory per order).

use engine::{
    ClientId, Command, Engine, EngineConfig, OrderLine, Output, Request, RequestId, SkuId, SkuSpec,
    TimestampNs, UserId,
};
use loadgen::{Recording, Scenario, Simulation};

/// Requests as the sequencer stamped them.
pub type Stream = Vec<(TimestampNs, Request)>;

/// Record a whole simulated run of `scenario`.
pub fn record(scenario: &impl Scenario, config: EngineConfig, seed: u64) -> Recording {
    let mut engine = Engine::new(config);
    let (_, recording) = Simulation::new(scenario, &mut engine, seed).record().run();
    recording.expect("recording was asked for")
}

/// Apply `requests` to `engine` as the engine stage does, prefetching for the next request
/// while applying this one; returns the engine's hash so the work cannot be optimised away.
pub fn replay(engine: &mut Engine, requests: &[(TimestampNs, Request)]) -> u64 {
    let mut out = Output::default();
    for (i, (now_ns, request)) in requests.iter().enumerate() {
        if let Some((_, next)) = requests.get(i + PREFETCH_DISTANCE) {
            engine.prefetch(next);
        }
        engine.apply(*now_ns, request, &mut out);
    }
    engine.hash()
}

/// `replay` while the engine checkpoints itself as the engine stage has it do: a delta
/// begun every `every` requests (the first full), `budget` bytes copied after each request
/// until it is whole. The frames are counted and dropped. Returns the hash and the frames'
/// payload bytes.
pub fn replay_checkpointing(
    engine: &mut Engine,
    requests: &[(TimestampNs, Request)],
    every: usize,
    budget: usize,
) -> (u64, u64) {
    let mut out = Output::default();
    let (mut frames, mut bytes, mut begun) = (Vec::new(), 0u64, 0u32);
    for (i, (now_ns, request)) in requests.iter().enumerate() {
        if let Some((_, next)) = requests.get(i + PREFETCH_DISTANCE) {
            engine.prefetch(next);
        }
        engine.apply(*now_ns, request, &mut out);
        if i % every == 0 && !engine.checkpoint_under_way() {
            engine.begin_checkpoint(begun == 0);
            begun += 1;
        }
        if engine.checkpoint_under_way() {
            engine.checkpoint_step(budget, &mut frames);
            bytes += frames
                .drain(..)
                .map(|c: engine::checkpoint::Copied| c.encode().payload.len() as u64)
                .sum::<u64>();
        }
    }
    (engine.hash(), bytes)
}

/// How far ahead `replay` prefetches: far enough for a DRAM miss (~100 ns) to land before the
/// request is applied, near enough that the line is still in cache.
pub const PREFETCH_DISTANCE: usize = 2;

/// Clients of the hot path.
pub const HOT_PATH_CLIENTS: u64 = 64;

/// Bring every hot-path client's idempotency table to full size (`window` requests each,
/// cancels of an order that does not exist: rejected, remembered, no other effect). The hot
/// path's own request ids then continue above these.
pub fn warm_sessions(window: u32) -> Stream {
    (0..u64::from(window) * HOT_PATH_CLIENTS)
        .map(|i| {
            let request = Request {
                client: ClientId(1 + i % HOT_PATH_CLIENTS),
                request: RequestId(1 + i / HOT_PATH_CLIENTS),
                command: Command::CancelOrder {
                    order: engine::OrderId(u64::MAX),
                },
            };
            (0, request)
        })
        .collect()
}

/// The PlaceOrder hot path: one SKU with stock for everyone, `orders` buyers each placing one
/// single-unit order, 1 ns apart.
pub fn hot_path(orders: u64) -> (Stream, Stream) {
    let sku = SkuId(1);
    let setup = vec![(
        0,
        Request {
            client: ClientId(1),
            request: RequestId(0),
            command: Command::UpsertSku(SkuSpec {
                sku,
                price: 19_900,
                stock: orders,
                per_user_limit: 4,
                sale_window: None,
            }),
        },
    )];
    let stream = (1..=orders)
        .map(|i| {
            let request = Request {
                // Shop-backend clients, each numbering its own requests upwards, past any
                // warm-up requests.
                client: ClientId(1 + i % HOT_PATH_CLIENTS),
                request: RequestId((1 << 32) | (i / HOT_PATH_CLIENTS)),
                command: Command::PlaceOrder {
                    user: UserId(i),
                    lines: vec![OrderLine { sku, qty: 1 }],
                    join_waitlist: true,
                },
            };
            (i, request)
        })
        .collect();
    (setup, stream)
}

/// Load SKUs 1..=`skus`, each with `stock` units at 10.00 and a limit of 5 per buyer.
pub fn load_catalog(engine: &mut Engine, skus: u64, stock: u64) {
    let mut out = Output::default();
    for sku in 1..=skus {
        let spec = SkuSpec {
            sku: SkuId(sku),
            price: 1_000,
            stock,
            per_user_limit: 5,
            sale_window: None,
        };
        let request = Request {
            client: ClientId(1),
            request: RequestId(sku),
            command: Command::UpsertSku(spec),
        };
        engine.apply(0, &request, &mut out);
    }
}

/// An engine configuration with room for `orders` open orders and their buyers' holdings
/// (the defaults hold 4M of each: the benches go to 10M).
pub fn config_for_open_orders(orders: u64) -> EngineConfig {
    let defaults = EngineConfig::default();
    EngineConfig {
        orders_max: defaults.orders_max.max(orders),
        holdings_max: defaults
            .holdings_max
            .max(u32::try_from(orders.next_power_of_two()).expect("at most 2^31 orders")),
        ..defaults
    }
}

/// Place `orders` single-line, single-unit orders from distinct buyers over SKUs 1..=`skus`
/// (loaded with stock enough), none paid: the state of a sale at its busiest.
pub fn place_open_orders(engine: &mut Engine, orders: u64, skus: u64) {
    let mut out = Output::default();
    let mut request = Request {
        client: ClientId(2),
        request: RequestId(0),
        command: Command::Tick,
    };
    for i in 1..=orders {
        request.request = RequestId(i);
        request.command = Command::PlaceOrder {
            user: UserId(i),
            lines: vec![OrderLine {
                sku: SkuId(1 + i % skus),
                qty: 1,
            }],
            join_waitlist: false,
        };
        engine.apply(1, &request, &mut out);
        assert!(matches!(out.outcome, engine::Outcome::OrderPlaced { .. }));
    }
}
