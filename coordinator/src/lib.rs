//! Leadership through etcd. Who is primary is decided by a key in etcd held under a lease,
//! not by a timer in surge: the node that holds `{prefix}/leader` is the primary, and the
//! epoch it leads is a counter in `{prefix}/epoch` that only a successful campaign moves
//! (compare-and-swap in the same transaction that takes the key), so the epoch is the fencing
//! token etcd hands out.
//!
//! - `http.rs`: a blocking HTTP/1.1 POST (TLS where configured), enough for etcd's gateway.
//! - `access.rs`: TLS and a user's credentials for a secured etcd.
//! - `call.rs`: those calls as values (`Call`, `Answer`), for the coordinator's state machine
//!   and the simulator's etcd.
//! - `etcd.rs`: the calls surge needs (lease grant, keep-alive, revoke; range; put;
//!   the campaign transaction) over etcd's v3 JSON gateway.
//! - `local_etcd.rs`: a throwaway etcd on loopback for tests and drills.
//! - `lease.rs`: the lease deadline (when a primary must stop acknowledging) and the leader
//!   record.
//! - `candidacy.rs`: which standby may campaign (the sync record, standbys' positions).
//!
//! Why not the `etcd-client` crate: it builds its gRPC code with `protoc` at compile time,
//! which a fresh machine does not have (the README's one command would fail), and brings a
//! tokio runtime into a process whose threads are pinned stages; surge needs five unary calls,
//! which etcd serves as JSON over HTTP (`/v3/...`, the gateway etcd documents and ships).

pub mod access;
pub mod call;
pub mod candidacy;
pub mod etcd;
pub mod http;
pub mod lease;
pub mod local_etcd;

pub use access::{Credentials, EtcdAccess};
pub use candidacy::{may_campaign, Candidate, PositionRecord, SyncRecord};
pub use etcd::{Etcd, EtcdError, Kv};
pub use lease::{Deadline, LeaderRecord, NodeRecord};
