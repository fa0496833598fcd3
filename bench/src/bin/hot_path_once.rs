//! The PlaceOrder hot path applied once, for instruction counts (this VM has no hardware
//! counters, and its wall clock varies by 2x run to run): `bench::hot_path(N)` replayed on
//! a faulted-in engine, the replay alone timed.
//!
//! ```sh
//! cargo build --release -p bench --bin hot-path-once
//! valgrind --tool=callgrind --toggle-collect='bench::replay*' target/release/hot-path-once 200000
//! ```

use bench::{hot_path, replay};
use engine::{Engine, EngineConfig};

fn main() {
    let orders = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("a number of orders"));
    let config = EngineConfig {
        payment_window_ns: 2_000_000_000,
        ..EngineConfig::default()
    };
    let (setup, stream) = hot_path(orders);
    let mut engine = Engine::new(config);
    replay(&mut engine, &setup);
    engine.fault_in();
    let started = std::time::Instant::now();
    let hash = replay(&mut engine, &stream);
    let ns = started.elapsed().as_nanos() / stream.len() as u128;
    println!("{} orders: {ns} ns each, hash {hash:016x}", stream.len());
}
