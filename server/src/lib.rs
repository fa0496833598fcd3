//! surge's server as a library: the LMAX pipeline and the node around it. The binary
//! (`tools`) parses flags and calls `Server::start_node`; tests and benches do the same.
//!
//! ```text
//!  clients ─TCP─▶ intake ─▶ sequencer ─publish─▶ [ ring ] ─▶ journal stage (group commit) ─┐
//!                   ▲                                   └──▶ engine stage (apply, answer) ─┴▶ gate
//!                   └──── connections ◀── answers whose sequence is durable (and acked) ───┘
//! ```
//!
//! The route of one PlaceOrder, file by file:
//!
//! 1. `gateway.rs` — the gateway thread's turn polls; the socket is readable.
//! 2. `intake.rs` — reads the bytes into the `connection.rs` buffer, splits off the REQUESTS
//!    frame, decodes it, applies backpressure (`admit`) and the role's write refusals.
//! 3. `sequencer.rs` — claims a ring slot (`slot.rs`), stamps the journal sequence and the
//!    time once, publishes.
//! 4. `journal_stage.rs` — appends the record through `journaler.rs` (asserting its writer
//!    gives the slot's sequence), writes the group commit and releases the slot; the commit's
//!    sync runs on the journal's sync workers while the next commit is written, and the
//!    durable sequence they publish is what the gate waits for.
//! 5. `engine_stage.rs` — side by side with 4: checks the sequence, applies the order to the
//!    engine, writes the outcome into the slot.
//! 6. `gate.rs` — after both: releases the slot once its sequence is durable and, in the
//!    synchronous replication modes, acked by the standby (`gateway.rs` takes the lower of
//!    the durable sequence and `node.rs`'s replication bound).
//! 7. `connections.rs` — encodes the answer into its connection's write buffer (and any
//!    events to the clients they concern); the gateway flushes it.
//!
//! Around the pipeline: `start.rs` puts a node together (recovery by `replay.rs` from
//! `data_dir.rs`, the ring, the threads, `cores.rs`); `snapshotter.rs` takes snapshots while
//! serving; `node.rs`, `role.rs`, `promotion.rs`
//! and `follow.rs` are the node in a replicated pair; `shared.rs` is what every thread
//! shares; `ops/` is HTTP, metrics, health, logs and supervision; `config.rs` the TOML;
//! `error.rs` the errors at the crate's seams. Time comes from a `Clock` and client sockets
//! through `net.rs`'s traits, so a driver can step the stages by hand (`stage.rs`).

pub mod allocator;
pub mod config;
pub mod connection;
pub mod connections;
pub mod coordination;
pub mod cores;
pub mod crash_point;
pub mod data_dir;
pub mod engine_stage;
pub mod error;
pub mod feed;
pub mod follow;
pub mod gate;
pub mod gateway;
pub mod intake;
pub mod journal_io;
pub mod journal_stage;
pub mod journaler;
pub mod net;
pub mod net_tls;
pub mod node;
pub mod ops;
pub mod promotion;
pub mod replay;
pub mod role;
pub mod sequencer;
pub mod shared;
pub mod slot;
pub mod snapshotter;
pub mod stage;
pub mod start;

pub use config::ServerConfig;
pub use error::{PromoteError, ServerError};
pub use replicator::clock::{Clock, ManualClock, SystemClock};
pub use start::{Server, Start};
