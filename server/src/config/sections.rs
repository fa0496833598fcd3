//! The sections of the configuration beside replication's: the engine's limits, the ring,
//! the journal, the gateway, core pinning, snapshots, the admin calls, the coordinator
//! (etcd) and the feed; each with its defaults.

use std::net::SocketAddr;

use engine::EngineConfig;

use serde::Deserialize;

use super::RING_SLOTS_DEFAULT;
use crate::error::{Result, ServerError};

/// The feed (docs/FEED.md): a log of every event the commands caused, served to consumers
/// on its own port. Off while `listen` is empty.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedSection {
    /// Where consumers subscribe ("" = no feed: no log is kept either).
    pub listen: String,
    /// Where the feed log lives ("" = DATA_DIR/feed).
    pub dir: String,
    /// A feed file is closed and a new one begun past this size.
    pub segment_mib: u64,
    /// The oldest files are deleted while the log is larger than this: how far back a
    /// consumer can resume.
    pub max_mib: u64,
    /// Subscriptions served at once (one thread and one buffer each).
    pub max_subscribers: u32,
    /// Bytes of events in one FEED frame at most (each subscriber's buffer).
    pub batch_kib: u32,
}

impl Default for FeedSection {
    fn default() -> Self {
        FeedSection {
            listen: String::new(),
            dir: String::new(),
            segment_mib: 64,
            max_mib: 4096,
            max_subscribers: 16,
            batch_kib: 256,
        }
    }
}

impl FeedSection {
    /// The feed port, if this node keeps a feed.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen.parse().map(Some).map_err(|e| {
            ServerError::config(
                "feed.listen",
                format!("{:?} is not an address (host:port): {e}", self.listen),
            )
        })
    }
}

/// Failover through etcd (`replication.failover = "etcd"`): where etcd is and how long a
/// primary's lease lasts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorSection {
    /// etcd's client addresses, `host:port` (its v3 JSON gateway, plain HTTP).
    pub endpoints: Vec<String>,
    /// The lease's TTL: a dead primary is replaced about this long after its last renewal.
    /// Whole seconds, at least 2 (etcd's own floor).
    pub lease_ms: u64,
    /// The primary stops acknowledging this long before its lease can expire (clock rates,
    /// a renewal's round trip).
    pub margin_ms: u64,
    /// Keys live under it: `{prefix}/leader`, `{prefix}/epoch`, `{prefix}/nodes/{node}`.
    pub prefix: String,
    /// PEM file of the CA that signed etcd's certificates: set, every endpoint is reached over
    /// TLS ("": plain HTTP).
    pub tls_ca: String,
    /// This node's client certificate and key (PEM), for an etcd run with
    /// `--client-cert-auth` ("": none).
    pub tls_cert: String,
    pub tls_key: String,
    /// etcd's authentication: the user, and a file holding its password (one line).
    pub username: String,
    pub password_file: String,
}

impl Default for CoordinatorSection {
    fn default() -> Self {
        CoordinatorSection {
            endpoints: Vec::new(),
            lease_ms: 2000,
            margin_ms: 500,
            prefix: "/surge".into(),
            tls_ca: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            username: String::new(),
            password_file: String::new(),
        }
    }
}

/// Snapshots taken while serving by a second engine (off by default: checkpoints of the
/// serving engine do their work), and what happens to the journal segments that snapshots or
/// checkpoints cover.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotSection {
    /// Take one after this many journal records (0: never by count).
    pub every_records: u64,
    /// Take one after this many seconds with new records (0: never by time).
    pub every_secs: u64,
    /// Snapshot files kept (the newest ones); at least 1.
    pub keep: u32,
    /// Covered segments: "recycle" (reused by the writer, the surplus deleted), "archive"
    /// (moved to `archive_dir`, the operator owns its size) or "keep" (disk grows).
    pub retention: String,
    /// Where "archive" moves segments ("" = DATA_DIR/archive).
    pub archive_dir: String,
    /// A snapshot file is written in synced pieces of this size, so the journal's syncs
    /// never queue behind a whole snapshot.
    pub write_piece_kib: u64,
    /// Pause between pieces (throttles the snapshot's disk bandwidth).
    pub write_pause_ms: u64,
}

impl Default for SnapshotSection {
    fn default() -> Self {
        SnapshotSection {
            // Off: the serving engine checkpoints itself (one engine per node).
            every_records: 0,
            every_secs: 0,
            keep: 2,
            retention: "recycle".into(),
            archive_dir: String::new(),
            write_piece_kib: 8192,
            write_pause_ms: 2,
        }
    }
}

/// Checkpoints of the serving engine itself (docs/OPERATIONS.md, *Checkpoints*): a cut
/// between two batches, then the chunks written since the previous one (a delta), or all of
/// them (full), copied a step at a time on the engine's thread and written by a thread of
/// their own. A restart restores the newest chain (a full one and its deltas) and replays
/// the journal after it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Cut one after this many journal records (0: never by count).
    pub every_records: u64,
    /// Cut one after this many seconds with new records (0: never by time). Both 0: off.
    pub every_secs: u64,
    /// A full checkpoint after this many deltas (a chain to restore stays short).
    pub full_every: u32,
    /// Chains (a full checkpoint and its deltas) kept on disk; at least 1.
    pub keep_chains: u32,
    /// Bytes of chunks the engine stage copies per batch while a checkpoint is under way
    /// (its pause per step); more when it is idle.
    pub step_kib: u64,
    /// The most bytes of encoded chunks waiting for the writer: the memory a checkpoint
    /// takes beyond the engine's own (the stage stops copying ahead when it is reached).
    pub queue_mib: u64,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection {
            every_records: 1_000_000,
            every_secs: 60,
            full_every: 4,
            keep_chains: 2,
            step_kib: 16,
            queue_mib: 64,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Admin calls (`POST /admin/promote`) must carry it; empty disables them.
    pub token: String,
    /// PEM certificate chain and private key: the HTTP port speaks HTTPS only. Both or
    /// neither.
    pub tls_cert: String,
    pub tls_key: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    pub payment_window_ms: u64,
    pub waitlist_len_max: u32,
    pub idempotency_window: u32,
    pub clients_max: u32,
    pub orders_max: u64,
    pub skus_max: u32,
    pub orders_retired_max: u64,
    pub retire_after_ms: u64,
    pub holdings_max: u32,
    pub waitlist_entries_max: u32,
    /// When the tables' memory is faulted in: "background" (a thread does it while the
    /// node serves: a restart is not delayed by it) or "before_serving" (the start waits).
    pub fault_in: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingSection {
    pub slots: usize,
    /// "auto", "busy-spin", "yield" or "block".
    pub wait: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSection {
    /// "auto", "direct" (O_DIRECT writes that are durable when they complete, one commit at
    /// a time), "pwritev2" (buffered writes and fdatasync) or "uring" (buffered, each write
    /// linked to its sync on io_uring). See `journal_io.rs` for what "auto" picks.
    pub io: String,
    pub segment_mib: u64,
    /// Buffered commits written and not yet durable at once (1..=4): while one syncs, the
    /// next is encoded and written. Unset: 2 for buffered writes, 1 for direct ones.
    pub commits_in_flight: Option<usize>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    pub connections_max: usize,
    /// Requests one connection may have unanswered; past it the gateway stops reading it.
    pub in_flight_max: u32,
    /// Unsent answer bytes one connection may hold before it is closed as a slow consumer.
    pub write_buffer_max: usize,
    /// A frame (or the hello) must complete within this.
    pub frame_timeout_ms: u64,
    /// With no command for this long, the sequencer inserts a Tick so deadlines expire.
    pub tick_ms: u64,
    /// On SIGTERM, how long to wait for answers to drain to clients.
    pub drain_timeout_ms: u64,
    /// PEM certificate chain and private key: the client port speaks TLS only (clients
    /// connect with TLS, docs/PROTOCOL.md). Both or neither.
    pub tls_cert: String,
    pub tls_key: String,
}

/// Which core each stage is pinned to. "auto" pins when there are cores for every stage
/// plus one for the OS; "off" never pins; or name each: `gateway = 1, journaler = 2, engine = 3`.
/// `layout`: "threads" (a thread per stage), "shared" (the journal and engine stages stepped
/// in turn by one thread: no hand-off between them), "single" (the gateway's thread steps
/// them too: a request is answered in the turn that read it), or "auto" (threads: see
/// `pipeline::layout` for the measurements behind it).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoresSection {
    pub layout: String,
    pub pin: String,
    pub gateway: Option<usize>,
    pub journaler: Option<usize>,
    pub engine: Option<usize>,
}

impl Default for EngineSection {
    fn default() -> Self {
        let e = EngineConfig::default();
        EngineSection {
            payment_window_ms: e.payment_window_ns / 1_000_000,
            waitlist_len_max: e.waitlist_len_max,
            idempotency_window: e.idempotency_window,
            clients_max: e.clients_max,
            orders_max: e.orders_max,
            skus_max: e.skus_max,
            orders_retired_max: e.orders_retired_max,
            retire_after_ms: e.retire_after_ns / 1_000_000,
            holdings_max: e.holdings_max,
            waitlist_entries_max: e.waitlist_entries_max,
            fault_in: "background".into(),
        }
    }
}

impl Default for RingSection {
    fn default() -> Self {
        RingSection {
            slots: RING_SLOTS_DEFAULT,
            wait: "auto".into(),
        }
    }
}

impl Default for JournalSection {
    fn default() -> Self {
        JournalSection {
            io: "auto".into(),
            segment_mib: journal::writer::SEGMENT_LEN_DEFAULT >> 20,
            commits_in_flight: None,
        }
    }
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            connections_max: 1024,
            in_flight_max: 4096,
            write_buffer_max: 4 << 20,
            frame_timeout_ms: 10_000,
            tick_ms: 100,
            drain_timeout_ms: 5_000,
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

impl Default for CoresSection {
    fn default() -> Self {
        CoresSection {
            layout: "auto".into(),
            pin: "auto".into(),
            gateway: None,
            journaler: None,
            engine: None,
        }
    }
}
