//! surge's engine: the deterministic order state machine, the types that go in and out of it,
//! and the LMAX-style ring buffer that sequences work between pinned threads.
//!
//! Nothing here does I/O, reads a clock, spawns a thread (the ring's tests do) or uses
//! randomness: time arrives with each command, so replaying the same commands gives the same
//! outcomes and the same rolling hash on any machine.

pub mod checkpoint;
pub mod code;
pub mod codec;
pub mod command;
pub mod config;
mod counted;
pub mod feed;
pub mod feed_items;
pub mod holdings;
pub mod id_table;
pub mod idempotency;
pub mod ids;
pub mod memory;
pub mod order;
pub mod outcome;
pub mod release_history;
pub mod retired;
pub mod ring;
pub mod rolling_hash;
pub mod sku;
pub mod snapshot;
pub mod snapshot_archive;
pub mod state_machine;
pub mod tracked;
pub mod waitlist;
pub mod wire;

pub use code::Code;
pub use command::{Command, OrderLine, Query, Request, SaleWindow, SkuSpec};
pub use command::{StatementEntry, StatementStatus};
pub use config::EngineConfig;
pub use ids::{ClientId, Money, OrderId, RequestId, SkuId, TimestampNs, Units, UserId};
pub use order::OrderState;
pub use outcome::{Answer, Discrepancy, DiscrepancyKind, Event, Outcome, Output};
pub use retired::RetiredOrder;
pub use snapshot::{EngineSnapshot, SnapshotError};
pub use state_machine::{Engine, LimitUse};
