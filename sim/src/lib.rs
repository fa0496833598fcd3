//! surge's simulator: a whole replicated group in one thread, from a seed. Like
//! TigerBeetle's VOPR and FoundationDB's simulator, it runs the real parts (each node's
//! pipeline stages, journal, replication sessions, coordinator and promotion; see
//! `node.rs`) over simulated time, network, storage and etcd, injects faults drawn from the
//! seed (crashes with torn writes, pauses, partitions one-way and both, etcd cut off, stalled
//! or slow, slow links and disks, full disks, clock drift), drives clients that retry with
//! the same request ids, and checks invariants as it goes (`checker.rs`). A seed replays bit
//! for bit: every choice comes from one seeded generator, in an order the event loop fixes.
//!
//! - `world/`: the event loop (`mod.rs`), the faults' effects (`inject.rs`), the end-of-run
//!   checks and the report (`end.rs`).
//! - `node/`: one node, its real parts stepped by hand: its life (start, join, stop,
//!   `mod.rs`), the running process (`running.rs`), what it exchanges (`vocabulary.rs`).
//! - `net.rs`, `etcd.rs`, `clock.rs`: the simulated network, etcd and clocks.
//! - `client.rs`: shop backends with idempotent retries and failover.
//! - `faults.rs`: the fault schedule drawn from the seed.
//! - `checker.rs`: the invariants.
//! - `rng.rs`: the seeded generator.
//!
//! `cargo run --release -p sim -- --seed N` runs one seed; `--seeds A..B` a range.

pub mod checker;
pub mod client;
pub mod clock;
pub mod etcd;
pub mod faults;
pub mod net;
pub mod node;
pub mod rng;
pub mod world;

pub use world::{run_seed, Options, Plant, Report, World};
