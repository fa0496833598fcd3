//! surge's replication: the primary streams its journal to a hot standby, which journals and
//! applies it and acks what it received and synced. Epochs (a small synced file) say which
//! primary's history a node holds, fence a primary that has been replaced, and tell a node
//! rejoining as a standby what to cut. The handshake is a challenge–response over the shared
//! secret (`auth.rs`): the secret never crosses the link. Bytes and sequences only: what a record means is the
//! server's business (`Sink`, `Hooks`). The stream is in docs/REPLICATION.md.

pub mod auth;
pub mod backlog;
pub mod catch_up;
pub mod checkpoints;
pub mod clock;
pub mod code;
pub mod epoch;
pub mod follower;
pub mod net;
pub mod primary;
pub mod standbys;
pub mod tls;
pub mod wire;

use std::time::Duration;

pub use backlog::Backlog;
pub use code::ReplicationCode;
pub use epoch::Epochs;
pub use standbys::{AckMode, Standbys};

#[derive(Clone, Debug)]
pub struct Settings {
    /// The shared secret both sides have in their config.
    pub secret: Vec<u8>,
    /// A heartbeat (or ack) at least this often on an idle stream.
    pub heartbeat: Duration,
    /// Silence this long means the other side is gone.
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// What the primary side needs from the server it runs in.
pub trait Hooks: Send + Sync + 'static {
    /// One structured log line: `fields` is already logfmt.
    fn log(&self, level: Level, event: &str, code: Option<ReplicationCode>, fields: &str);
    /// The standby's acks moved (or it attached): the release gate may have work.
    fn acked(&self);
    /// The standby is gone.
    fn standby_lost(&self);
    /// Another node is at `epoch`; if that is newer, this node stops taking writes.
    fn fenced_by(&self, epoch: u64, why: &str);
    fn is_primary(&self) -> bool;
    fn epochs(&self) -> Epochs;
    fn durable_seq(&self) -> u64;
}
