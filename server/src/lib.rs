//! surge's server as a library: the LMAX pipeline and the node around it. The binary
//! (`tools`) parses flags and calls `Server::start_node`; tests, benches and the simulator
//! do the same or drive the parts by hand.
//!
//! ```text
//!  clients ─TCP─▶ intake ─▶ sequencer ─publish─▶ [ ring ] ─▶ journal stage (group commit) ─┐
//!                   ▲                                   └──▶ engine stage (apply, answer) ─┴▶ gate
//!                   └──── connections ◀── answers whose sequence is durable (and acked) ───┘
//! ```
//!
//! The route of one PlaceOrder, file by file (all in `pipeline/`):
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
//!    synchronous replication modes, acked by the standbys (the lower of the durable
//!    sequence and the group's replication bound, `group/`).
//! 7. `connections.rs` — encodes the answer into its connection's write buffer (and any
//!    events to the clients they concern); the gateway flushes it.
//!
//! The folders, lowest first; nothing in one imports a folder below it in this list
//! (`tests/layers.rs` checks):
//!
//! - `error.rs`, `telemetry/` — the crate's errors; logs, metrics, crash points.
//! - `config/` — the TOML and what it builds (TLS settings, etcd access).
//! - `group/` — the node in a replicated group as decisions: role, epochs, the ack policy,
//!   the standby side's state, promotion.
//! - `pipeline/` — the gateway, the ring and its stages, the gate.
//! - `feed/` — the event feed's log and port.
//! - `checkpoint/` — the data directory, replay, snapshots while serving.
//! - `drivers/` — the threads that run `group/`'s decisions with sockets and etcd: the
//!   follower, the coordinator, the replicator's hooks.
//! - `ops/` — the HTTP port: `/metrics`, `/health`, admin calls.
//! - `start/` — putting a node together (`Server`), and supervising it.
//!
//! Time comes from a `Clock` and client sockets through `pipeline/net.rs`'s traits, so a
//! driver can step the stages by hand (`pipeline/stage.rs`).

pub mod checkpoint;
pub mod config;
pub mod drivers;
pub mod error;
pub mod feed;
pub mod group;
pub mod ops;
pub mod pipeline;
pub mod start;
pub mod telemetry;

pub use config::ServerConfig;
pub use error::{PromoteError, ServerError};
pub use replicator::clock::{Clock, ManualClock, SystemClock};
pub use start::{Server, Start};
