//! `surge serve` over real TCP: one integration-test binary, one module per concern.

mod checkpoints;
mod crash;
mod durability;
mod e2e;
mod harness;
mod hostile;
mod ops;
#[path = "../common/scratch.rs"]
mod scratch;
mod snapshots;
