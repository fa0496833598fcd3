//! `surge serve` configuration: a TOML file (every key optional, unknown keys an error that
//! names the key), then flags on top. `deploy/surge.toml` shows every key with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use engine::ring::WaitStrategy;
use engine::EngineConfig;
use journal::IoMode;
use serde::Deserialize;

use crate::error::{Result, ServerError};

/// Ring slots by default: a power of two, larger than one full REQUESTS frame (4096).
pub const RING_SLOTS_DEFAULT: usize = 1 << 16;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub http: SocketAddr,
    pub engine: EngineSection,
    pub ring: RingSection,
    pub journal: JournalSection,
    pub gateway: GatewaySection,
    pub cores: CoresSection,
    pub replication: ReplicationSection,
    pub admin: AdminSection,
    pub snapshot: SnapshotSection,
    pub coordinator: CoordinatorSection,
    pub feed: FeedSection,
}

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

/// Snapshots taken while serving, and what happens to the journal segments they cover.
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
            every_records: 500_000,
            every_secs: 60,
            keep: 2,
            retention: "recycle".into(),
            archive_dir: String::new(),
            write_piece_kib: 8192,
            write_pause_ms: 2,
        }
    }
}

/// Replication: the same keys in every node's file. Off (a lone server, as before) while
/// `listen` is empty on a primary.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationSection {
    /// Where this node takes a standby's connection when it is the primary ("" = never).
    pub listen: String,
    /// "async", "received" or "durable": what the release gate waits for from a standby
    /// (each one not named in `standby_ack`).
    pub ack: String,
    /// Standbys with a mode of their own, by `replication.node`: e.g. `dr = "async"` for a
    /// second-site standby that must never hold a write back.
    pub standby_ack: std::collections::BTreeMap<String, String>,
    /// How many standbys in a synchronous mode must ack a write before its answer leaves
    /// ("durable on k of N"); fewer attached is a standby loss (`on_standby_loss`).
    pub sync_standbys: usize,
    /// Standbys a primary streams to at most (slots allocated at start; one more is
    /// refused with STANDBYS_FULL).
    pub max_standbys: usize,
    /// "halt" (answer no write without a standby) or "degrade" (fall back to async, loudly).
    pub on_standby_loss: String,
    /// "manual" (an operator promotes), "etcd" (the leader key in etcd decides, see
    /// `[coordinator]`), or "auto" (unsafe: a standby promotes itself after `timeout_ms` of
    /// silence, which a partition also causes).
    pub failover: String,
    /// A heartbeat (or ack) at least this often on an idle stream.
    pub heartbeat_ms: u64,
    /// Silence this long means the other side is gone (standby lost; auto failover).
    pub timeout_ms: u64,
    /// Shared by primary and standby; required when replication is on.
    pub secret: String,
    /// This node's name in logs and in the handshake.
    pub node: String,
    /// Recent commits kept in memory for a standby that reconnects.
    pub backlog_mib: u64,
    /// Allow `listen` off loopback without encryption (a private link or a tunnel).
    pub allow_plaintext: bool,
    /// TLS on the replication link: this node's PEM certificate chain and key (served as a
    /// primary, shown as a standby) and the CA that signed the other node's. All three or
    /// none; both nodes alike.
    pub tls_cert: String,
    pub tls_key: String,
    pub tls_ca: String,
    /// A primary takes only standbys with a certificate `tls_ca` signed.
    pub tls_client_auth: bool,
    /// The name a standby checks the primary's certificate for ("" = its IP address).
    pub tls_server_name: String,
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

/// What the release gate waits for from a standby (replication's own type).
pub use replicator::AckMode;

impl ReplicationSection {
    pub fn ack_mode(&self) -> Result<AckMode> {
        AckMode::parse(&self.ack)
            .ok_or_else(|| bad("replication.ack", &self.ack, "async, received or durable"))
    }

    /// The standbys named in `standby_ack`, with their modes.
    pub fn standby_modes(&self) -> Result<Vec<(String, AckMode)>> {
        self.standby_ack
            .iter()
            .map(|(name, mode)| {
                AckMode::parse(mode)
                    .map(|m| (name.clone(), m))
                    .ok_or_else(|| {
                        bad(
                            &format!("replication.standby_ack.{name}"),
                            mode,
                            "async, received or durable",
                        )
                    })
            })
            .collect()
    }

    /// The table of standbys a primary streams to, allocated now.
    pub fn standbys(&self) -> Result<replicator::Standbys> {
        Ok(replicator::Standbys::new(
            self.max_standbys,
            self.ack_mode()?,
            self.standby_modes()?,
            self.etcd_failover(),
        ))
    }

    pub fn degrade(&self) -> bool {
        self.on_standby_loss == "degrade"
    }

    pub fn auto_failover(&self) -> bool {
        self.failover == "auto"
    }

    pub fn etcd_failover(&self) -> bool {
        self.failover == "etcd"
    }

    pub fn settings(&self) -> replicator::Settings {
        replicator::Settings {
            secret: self.secret.as_bytes().to_vec(),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }

    /// TLS for the replication link, if configured (the files are read and checked here).
    pub fn tls(&self) -> Result<Option<replicator::tls::TlsSettings>> {
        let set = [&self.tls_cert, &self.tls_key, &self.tls_ca]
            .iter()
            .filter(|s| !s.is_empty())
            .count();
        let keys = "replication.tls_cert, replication.tls_key, replication.tls_ca";
        match set {
            0 if self.tls_client_auth || !self.tls_server_name.is_empty() => {
                return Err(ServerError::config(
                    "replication.tls_client_auth, replication.tls_server_name",
                    "these say how TLS is checked, but TLS is off: set replication.tls_cert, \
                     tls_key and tls_ca too, or leave them out",
                ))
            }
            0 => return Ok(None),
            3 => {}
            _ => {
                return Err(ServerError::config(
                    keys,
                    "set all three (this node's certificate and key, and the CA that signed \
                     the other node's) or none",
                ))
            }
        }
        replicator::tls::TlsSettings::from_files(
            std::path::Path::new(&self.tls_cert),
            std::path::Path::new(&self.tls_key),
            std::path::Path::new(&self.tls_ca),
            self.tls_client_auth,
            (!self.tls_server_name.is_empty()).then(|| self.tls_server_name.clone()),
        )
        .map(Some)
        .map_err(|why| ServerError::config(keys, why))
    }

    /// How a standby reaches its primary: TLS when configured, else plain TCP.
    pub fn dialer(&self) -> Result<std::sync::Arc<dyn replicator::net::Dialer>> {
        Ok(match self.tls()? {
            Some(tls) => std::sync::Arc::new(replicator::tls::TlsDialer(tls)),
            None => std::sync::Arc::new(replicator::net::TcpDialer),
        })
    }

    /// The replication port, if this node has one.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen.parse().map(Some).map_err(|e| {
            bad(
                "replication.listen",
                &self.listen,
                &format!("IP:PORT ({e})"),
            )
        })
    }
}

impl Default for ReplicationSection {
    fn default() -> Self {
        ReplicationSection {
            listen: String::new(),
            ack: "durable".into(),
            standby_ack: Default::default(),
            sync_standbys: 1,
            max_standbys: 4,
            on_standby_loss: "halt".into(),
            failover: "manual".into(),
            heartbeat_ms: 50,
            timeout_ms: 500,
            secret: String::new(),
            node: "surge".into(),
            backlog_mib: 64,
            allow_plaintext: false,
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_ca: String::new(),
            tls_client_auth: false,
            tls_server_name: String::new(),
        }
    }
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
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoresSection {
    pub pin: String,
    pub gateway: Option<usize>,
    pub journaler: Option<usize>,
    pub engine: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("surge-data"),
            listen: "127.0.0.1:7600".parse().expect("literal"),
            http: "127.0.0.1:7680".parse().expect("literal"),
            engine: EngineSection::default(),
            ring: RingSection::default(),
            journal: JournalSection::default(),
            gateway: GatewaySection::default(),
            cores: CoresSection::default(),
            replication: ReplicationSection::default(),
            admin: AdminSection::default(),
            snapshot: SnapshotSection::default(),
            coordinator: CoordinatorSection::default(),
            feed: FeedSection::default(),
        }
    }
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
            pin: "auto".into(),
            gateway: None,
            journaler: None,
            engine: None,
        }
    }
}

impl ServerConfig {
    /// Read `file` (if given), apply `overrides` (`section.key=value`, the value in TOML
    /// syntax or a bare string), and check the result.
    pub fn load(file: Option<&std::path::Path>, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = match file {
            Some(path) => {
                let file_error = |why: String| ServerError::ConfigFile {
                    path: path.to_path_buf(),
                    why,
                };
                let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
                text.parse()
                    .map_err(|e: toml::de::Error| file_error(e.to_string()))?
            }
            None => toml::Table::new(),
        };
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| ServerError::config(item.as_str(), "--set expects key=value"))?;
            set(&mut table, key.trim(), value.trim())?;
        }
        let config: ServerConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ServerError::config("(file)", e.message()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if !self.ring.slots.is_power_of_two()
            || self.ring.slots < 2 * wire_requests_max()
            || self.ring.slots > 1 << 24
        {
            return Err(ServerError::config(
                "ring.slots",
                format!(
                    "{} is not a power of two from {} to {}",
                    self.ring.slots,
                    2 * wire_requests_max(),
                    1 << 24
                ),
            ));
        }
        self.wait_strategy(1)?;
        self.io_mode()?;
        if self.journal.segment_mib == 0 || self.journal.segment_mib > 4096 {
            return Err(ServerError::config(
                "journal.segment_mib",
                "must be 1..=4096",
            ));
        }
        let in_flight = self.journal.commits_in_flight;
        if in_flight.is_some_and(|k| !(1..=journal::format::COMMITS_IN_FLIGHT_MAX).contains(&k)) {
            return Err(ServerError::config(
                "journal.commits_in_flight",
                "must be 1..=4 (1: one commit at a time)",
            ));
        }
        let overlapped = in_flight.is_some_and(|k| k > 1);
        let io = self.io_mode()?;
        if io == IoMode::Uring && overlapped {
            // Not quietly overridden: with commits in flight the writes are pwritev2.
            return Err(ServerError::config(
                "journal.io, journal.commits_in_flight",
                "io_uring links a write to its sync only with one commit at a time: set \
                 journal.commits_in_flight = 1 for io_uring, or journal.io = \"auto\"",
            ));
        }
        if io == IoMode::Direct && overlapped {
            return Err(ServerError::config(
                "journal.io, journal.commits_in_flight",
                "direct writes go one commit at a time (two in flight would rewrite the same \
                 block): set journal.commits_in_flight = 1 for direct, or journal.io = \"auto\"",
            ));
        }
        if self.gateway.in_flight_max == 0 || self.gateway.connections_max == 0 {
            return Err(ServerError::config(
                "gateway.in_flight_max, gateway.connections_max",
                "must be at least 1",
            ));
        }
        if self.gateway.tick_ms == 0 {
            return Err(ServerError::config("gateway.tick_ms", "must be at least 1"));
        }
        if !["auto", "off", "manual"].contains(&self.cores.pin.as_str()) {
            return Err(bad("cores.pin", &self.cores.pin, "auto, off or manual"));
        }
        let r = &self.replication;
        r.ack_mode()?;
        for (key, name) in std::iter::once(("replication.node", &r.node))
            .chain(r.standby_ack.keys().map(|n| ("replication.standby_ack", n)))
        {
            if !replicator::standbys::valid_node_name(name) {
                return Err(bad(key, name, "1 to 64 of A-Z a-z 0-9 . _ -"));
            }
        }
        r.standby_modes()?;
        if !(1..=replicator::standbys::MAX_SLOTS).contains(&r.max_standbys) {
            return Err(bad(
                "replication.max_standbys",
                &r.max_standbys.to_string(),
                &format!("1 to {}", replicator::standbys::MAX_SLOTS),
            ));
        }
        if r.sync_standbys == 0 || r.sync_standbys > r.max_standbys {
            return Err(ServerError::config(
                "replication.sync_standbys, replication.max_standbys",
                "sync_standbys (how many standbys must ack a write) must be at least 1 and at                  most max_standbys; for no synchronous standby at all set ack = \"async\"",
            ));
        }
        if let Some(addr) = r.listen_addr()? {
            let encrypted = !r.tls_cert.is_empty();
            if !addr.ip().is_loopback() && !r.allow_plaintext && !encrypted {
                return Err(ServerError::config(
                    "replication.listen, replication.allow_plaintext",
                    "a replication port off loopback carries every journaled command in the \
                     clear (the handshake proves the secret but encrypts nothing): set \
                     replication.tls_cert, tls_key and tls_ca, or keep it on a private link or \
                     a tunnel (WireGuard, SSH) and set replication.allow_plaintext = true to \
                     say so",
                ));
            }
        }
        r.tls()?;
        if !["halt", "degrade"].contains(&r.on_standby_loss.as_str()) {
            return Err(bad(
                "replication.on_standby_loss",
                &r.on_standby_loss,
                "halt or degrade",
            ));
        }
        if !["manual", "auto", "etcd"].contains(&r.failover.as_str()) {
            return Err(bad(
                "replication.failover",
                &r.failover,
                "manual, etcd, or auto (unsafe: a partition can make two primaries)",
            ));
        }
        if r.failover == "etcd" {
            let c = &self.coordinator;
            if c.endpoints.is_empty() {
                return Err(ServerError::config(
                    "coordinator.endpoints",
                    "failover = \"etcd\" needs etcd's client addresses, e.g. [\"10.0.0.5:2379\"]",
                ));
            }
            if let Some(e) = c.endpoints.iter().find(|e| e.contains("://")) {
                return Err(ServerError::config(
                    "coordinator.endpoints",
                    format!("{e:?}: host:port without a scheme (TLS is set by coordinator.tls_ca)"),
                ));
            }
            if !c.tls_cert.is_empty() && !c.tls_key.is_empty() && c.tls_ca.is_empty() {
                return Err(ServerError::config(
                    "coordinator.tls_ca",
                    "a client certificate is for etcd over TLS: set tls_ca to the CA that \
                     signed etcd's certificate",
                ));
            }
            if c.username.is_empty() != c.password_file.is_empty() {
                return Err(ServerError::config(
                    "coordinator.username, coordinator.password_file",
                    "etcd's authentication needs both the user and the file with its password",
                ));
            }
            if c.lease_ms < 2000 || !c.lease_ms.is_multiple_of(1000) {
                return Err(ServerError::config(
                    "coordinator.lease_ms",
                    "whole seconds, at least 2000 (etcd's leases count in seconds, 2 at least)",
                ));
            }
            if c.margin_ms == 0 || 2 * c.margin_ms > c.lease_ms {
                return Err(ServerError::config(
                    "coordinator.margin_ms",
                    "at least 1 and at most half of lease_ms",
                ));
            }
            if r.listen.is_empty() || r.node.is_empty() || r.node == "surge" {
                return Err(ServerError::config(
                    "replication.listen, replication.node",
                    "failover = \"etcd\": every node may become the primary, so each needs a \
                     replication port and a name of its own (not the default \"surge\")",
                ));
            }
        }
        if r.heartbeat_ms == 0 || r.timeout_ms < 2 * r.heartbeat_ms {
            return Err(ServerError::config(
                "replication.heartbeat_ms, replication.timeout_ms",
                "heartbeat_ms must be at least 1 and timeout_ms at least twice it",
            ));
        }
        let e = &self.engine;
        if e.orders_max == 0 || e.orders_max >= u64::from(u32::MAX) {
            return Err(ServerError::config(
                "engine.orders_max",
                "must be 1..2^32 (the book is sized from it at start-up)",
            ));
        }
        if e.orders_retired_max >= u64::from(u32::MAX) {
            return Err(ServerError::config(
                "engine.orders_retired_max",
                "must be below 2^32",
            ));
        }
        if !["background", "before_serving"].contains(&e.fault_in.as_str()) {
            return Err(bad(
                "engine.fault_in",
                &e.fault_in,
                "background or before_serving",
            ));
        }
        let snap = &self.snapshot;
        if snap.keep == 0 {
            return Err(ServerError::config("snapshot.keep", "must be at least 1"));
        }
        if snap.write_piece_kib == 0 {
            return Err(ServerError::config(
                "snapshot.write_piece_kib",
                "must be at least 1",
            ));
        }
        self.retention()?;
        if r.backlog_mib == 0 {
            return Err(ServerError::config(
                "replication.backlog_mib",
                "must be at least 1",
            ));
        }
        for (keys, cert, key) in [
            (
                "admin.tls_cert, admin.tls_key",
                &self.admin.tls_cert,
                &self.admin.tls_key,
            ),
            (
                "gateway.tls_cert, gateway.tls_key",
                &self.gateway.tls_cert,
                &self.gateway.tls_key,
            ),
            (
                "coordinator.tls_cert, coordinator.tls_key",
                &self.coordinator.tls_cert,
                &self.coordinator.tls_key,
            ),
        ] {
            if cert.is_empty() != key.is_empty() {
                return Err(ServerError::config(
                    keys,
                    "set both (a PEM certificate chain and its private key) or neither",
                ));
            }
        }
        self.check_feed()
    }

    /// The client port's TLS, if configured (the files are read and checked here).
    pub fn client_tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
        if self.gateway.tls_cert.is_empty() {
            return Ok(None);
        }
        crate::ops::tls::server_config(
            std::path::Path::new(&self.gateway.tls_cert),
            std::path::Path::new(&self.gateway.tls_key),
            "gateway.tls_cert, gateway.tls_key",
        )
        .map(Some)
    }

    /// How to reach etcd (`[coordinator]`): TLS and credentials where configured, the files
    /// read and checked here.
    pub fn etcd_access(&self) -> Result<coordinator::EtcdAccess> {
        let c = &self.coordinator;
        let tls = match c.tls_ca.is_empty() {
            true => None,
            false => Some(crate::ops::tls::client_config(
                std::path::Path::new(&c.tls_ca),
                (!c.tls_cert.is_empty()).then(|| {
                    (
                        std::path::Path::new(&c.tls_cert),
                        std::path::Path::new(&c.tls_key),
                    )
                }),
                "coordinator.tls_ca, coordinator.tls_cert, coordinator.tls_key",
            )?),
        };
        let credentials = match c.username.is_empty() {
            true => None,
            false => {
                let text = std::fs::read_to_string(&c.password_file).map_err(|e| {
                    ServerError::config(
                        "coordinator.password_file",
                        format!("{}: {e}", c.password_file),
                    )
                })?;
                let password = text.trim_end_matches(['\r', '\n']).to_string();
                if password.is_empty() {
                    return Err(ServerError::config(
                        "coordinator.password_file",
                        format!(
                            "{}: empty; it holds the password of {:?}",
                            c.password_file, c.username
                        ),
                    ));
                }
                Some(coordinator::Credentials {
                    user: c.username.clone(),
                    password,
                })
            }
        };
        Ok(coordinator::EtcdAccess { tls, credentials })
    }

    /// The HTTP port's TLS, if configured (the files are read and checked here).
    pub fn http_tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
        if self.admin.tls_cert.is_empty() {
            return Ok(None);
        }
        crate::ops::tls::server_config(
            std::path::Path::new(&self.admin.tls_cert),
            std::path::Path::new(&self.admin.tls_key),
            "admin.tls_cert, admin.tls_key",
        )
        .map(Some)
    }

    fn check_feed(&self) -> Result<()> {
        let f = &self.feed;
        if f.listen_addr()?.is_none() {
            return Ok(());
        }
        if !self.snapshots_on() {
            return Err(ServerError::config(
                "feed.listen, snapshot.every_records, snapshot.every_secs",
                "the feed is written by the snapshotter's engine: turn snapshots on (either \
                 interval above 0) or leave feed.listen empty",
            ));
        }
        if f.segment_mib == 0 || f.max_mib < 2 * f.segment_mib {
            return Err(ServerError::config(
                "feed.segment_mib, feed.max_mib",
                "segment_mib must be at least 1 and max_mib at least twice segment_mib (the \
                 file being written is never deleted)",
            ));
        }
        if f.max_subscribers == 0 || f.max_subscribers > 1024 {
            return Err(ServerError::config(
                "feed.max_subscribers",
                "must be from 1 to 1024 (one thread each)",
            ));
        }
        if !(16..=768).contains(&f.batch_kib) {
            return Err(ServerError::config(
                "feed.batch_kib",
                "must be from 16 to 768 (a FEED frame is at most 1 MiB)",
            ));
        }
        Ok(())
    }

    /// Where the feed log lives.
    pub fn feed_dir(&self) -> PathBuf {
        match self.feed.dir.as_str() {
            "" => self.data_dir.join("feed"),
            dir => PathBuf::from(dir),
        }
    }

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            payment_window_ns: self.engine.payment_window_ms.saturating_mul(1_000_000),
            waitlist_len_max: self.engine.waitlist_len_max,
            idempotency_window: self.engine.idempotency_window,
            clients_max: self.engine.clients_max,
            orders_max: self.engine.orders_max,
            skus_max: self.engine.skus_max,
            orders_retired_max: self.engine.orders_retired_max,
            retire_after_ns: self.engine.retire_after_ms.saturating_mul(1_000_000),
            holdings_max: self.engine.holdings_max,
            waitlist_entries_max: self.engine.waitlist_entries_max,
        }
    }

    /// The configured strategy, or for "auto" the one that fits `busy_threads` on this
    /// machine's cores.
    pub fn wait_strategy(&self, busy_threads: usize) -> Result<WaitStrategy> {
        match self.ring.wait.as_str() {
            "auto" => Ok(WaitStrategy::for_threads(busy_threads, available_cores())),
            other => other
                .parse()
                .map_err(|e: String| ServerError::config("ring.wait", e)),
        }
    }

    pub fn io_mode(&self) -> Result<IoMode> {
        match self.journal.io.as_str() {
            "auto" => Ok(IoMode::Auto),
            "uring" | "io_uring" => Ok(IoMode::Uring),
            "pwritev2" => Ok(IoMode::Pwritev2),
            "direct" => Ok(IoMode::Direct),
            other => Err(bad("journal.io", other, "auto, uring, pwritev2 or direct")),
        }
    }

    /// Whether snapshots are taken while serving.
    pub fn snapshots_on(&self) -> bool {
        self.snapshot.every_records > 0 || self.snapshot.every_secs > 0
    }

    /// What happens to segments a snapshot covers.
    pub fn retention(&self) -> Result<journal::retention::Retention> {
        use journal::retention::Retention;
        Ok(match self.snapshot.retention.as_str() {
            "recycle" => Retention::Recycle,
            "keep" => Retention::Keep,
            "archive" if self.snapshot.archive_dir.is_empty() => {
                Retention::Archive(self.data_dir.join("archive"))
            }
            "archive" => Retention::Archive(PathBuf::from(&self.snapshot.archive_dir)),
            other => return Err(bad("snapshot.retention", other, "recycle, archive or keep")),
        })
    }

    pub fn segment_len(&self) -> u64 {
        self.journal.segment_mib << 20
    }

    pub fn tick_interval(&self) -> Duration {
        Duration::from_millis(self.gateway.tick_ms)
    }
}

/// A key whose value is not one of those allowed.
fn bad(key: &str, value: &str, allowed: &str) -> ServerError {
    ServerError::config(key, format!("{value:?}: expected {allowed}"))
}

fn wire_requests_max() -> usize {
    engine::wire::REQUESTS_PER_FRAME_MAX as usize
}

/// Cores this process may run on.
pub fn available_cores() -> usize {
    core_affinity::get_core_ids().map_or(1, |ids| ids.len().max(1))
}

/// Set `a.b.c = value` in `table`, parsing the value as TOML (a bare word is a string).
fn set(table: &mut toml::Table, key: &str, value: &str) -> Result<()> {
    let parsed: toml::Value = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ServerError::config(key, "empty key"))?;
    let mut at = table;
    for part in parts {
        at = at
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| ServerError::config(key, format!("{part} is not a section")))?;
    }
    at.insert(last.to_string(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, overrides: &[&str]) -> Result<ServerConfig> {
        static FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("surge-config-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let loaded = ServerConfig::load(Some(&path), &overrides);
        let _ = std::fs::remove_file(&path);
        loaded
    }

    #[test]
    fn keys_flags_and_unknown_keys() {
        let c = load(
            "listen = \"127.0.0.1:9000\"\n[gateway]\ntick_ms = 50\n",
            &["gateway.tick_ms=20", "ring.wait=block"],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.gateway.tick_ms, 20);
        assert_eq!(c.wait_strategy(3).unwrap(), WaitStrategy::Block);
        let e = load("[gateway]\ntick_msec = 5\n", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("tick_msec"), "{e:#}");
        let e = load("colour = 1\n", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("colour"), "{e:#}");
        assert!(load("[ring]\nslots = 1000\n", &[]).is_err());
        assert!(load("", &["ring.wait=sometimes"]).is_err());
    }

    #[test]
    fn the_example_config_is_valid_and_holds_the_defaults() {
        let text = include_str!("../../deploy/surge.toml");
        let c = load(text, &[]).unwrap();
        let d = ServerConfig::default();
        assert_eq!(c.gateway.in_flight_max, d.gateway.in_flight_max);
        assert_eq!(c.ring.slots, d.ring.slots);
        // The limits and the snapshot keys a sale day depends on, as the defaults have them.
        assert_eq!(c.engine_config(), d.engine_config());
        assert_eq!(c.engine.fault_in, d.engine.fault_in);
        let (cs, ds) = (&c.snapshot, &d.snapshot);
        assert_eq!(
            (
                cs.every_records,
                cs.every_secs,
                cs.keep,
                &cs.retention,
                &cs.archive_dir
            ),
            (
                ds.every_records,
                ds.every_secs,
                ds.keep,
                &ds.retention,
                &ds.archive_dir
            )
        );
        assert_eq!(
            (cs.write_piece_kib, cs.write_pause_ms),
            (ds.write_piece_kib, ds.write_pause_ms)
        );
        // The feed is on in the example (a port to name); its sizes are the defaults.
        let (cf, df) = (&c.feed, &d.feed);
        assert!(c.feed.listen_addr().unwrap().is_some());
        assert_eq!(
            (cf.segment_mib, cf.max_mib, cf.max_subscribers, cf.batch_kib),
            (df.segment_mib, df.max_mib, df.max_subscribers, df.batch_kib)
        );
    }

    #[test]
    fn a_secured_etcd_needs_whole_settings() {
        let etcd = [
            "replication.failover=\"etcd\"",
            "replication.listen=\"127.0.0.1:7700\"",
            "replication.node=\"a\"",
            "coordinator.endpoints=[\"127.0.0.1:2379\"]",
        ];
        let with = |extra: &[&str]| {
            let mut sets = etcd.to_vec();
            sets.extend_from_slice(extra);
            load("", &sets)
        };
        assert!(with(&[]).is_ok());
        for (extra, key) in [
            (
                &["coordinator.endpoints=[\"https://127.0.0.1:2379\"]"][..],
                "coordinator.endpoints",
            ),
            (
                &["coordinator.tls_cert=\"c.pem\""][..],
                "coordinator.tls_key",
            ),
            (
                &[
                    "coordinator.tls_cert=\"c.pem\"",
                    "coordinator.tls_key=\"k.pem\"",
                ][..],
                "coordinator.tls_ca",
            ),
            (
                &["coordinator.username=\"surge\""][..],
                "coordinator.password_file",
            ),
            (
                &["coordinator.password_file=\"pw\""][..],
                "coordinator.username",
            ),
        ] {
            let e = with(extra).unwrap_err();
            assert!(format!("{e:#}").contains(key), "{extra:?}: {e:#}");
        }
        // Files are read when the access is built: a missing one is named.
        let c = with(&[
            "coordinator.username=\"surge\"",
            "coordinator.password_file=\"/nonexistent/pw\"",
        ])
        .unwrap();
        let e = c.etcd_access().err().expect("no password file");
        assert!(format!("{e:#}").contains("/nonexistent/pw"), "{e:#}");
        let c = with(&["coordinator.tls_ca=\"/nonexistent/ca.pem\""]).unwrap();
        let e = c.etcd_access().err().expect("no CA file");
        assert!(format!("{e:#}").contains("coordinator.tls_ca"), "{e:#}");
        assert!(ServerConfig::default().etcd_access().unwrap().tls.is_none());
    }

    #[test]
    fn a_feed_needs_snapshots_and_sane_sizes() {
        let on = "feed.listen=\"127.0.0.1:0\"";
        assert!(load("", &[on]).is_ok());
        for (set, key) in [
            ("snapshot.every_records=0", "snapshot.every_records"),
            ("feed.max_mib=1", "feed.max_mib"),
            ("feed.batch_kib=4096", "feed.batch_kib"),
            ("feed.max_subscribers=0", "feed.max_subscribers"),
        ] {
            let mut sets = vec![on, set];
            if set.starts_with("snapshot") {
                sets.push("snapshot.every_secs=0");
            }
            let e = load("", &sets).unwrap_err();
            assert!(format!("{e:#}").contains(key), "{set}: {e:#}");
        }
        let e = load("", &["replication.tls_cert=\"/etc/surge/cert.pem\""]).unwrap_err();
        assert!(format!("{e:#}").contains("replication.tls_ca"), "{e:#}");
        let e = load("", &["admin.tls_cert=\"/etc/surge/cert.pem\""]).unwrap_err();
        assert!(format!("{e:#}").contains("admin.tls_key"), "{e:#}");
        let e = load("", &["feed.listen=\"nowhere\""]).unwrap_err();
        assert!(format!("{e:#}").contains("feed.listen"), "{e:#}");
    }

    #[test]
    fn bad_limits_and_snapshot_keys_are_refused_by_name() {
        let cases: &[(&str, &str)] = &[
            ("engine.orders_max=0", "engine.orders_max"),
            ("engine.orders_max=4294967296", "engine.orders_max"),
            (
                "engine.orders_retired_max=4294967295",
                "engine.orders_retired_max",
            ),
            ("engine.fault_in=later", "engine.fault_in"),
            ("snapshot.keep=0", "snapshot.keep"),
            ("snapshot.write_piece_kib=0", "snapshot.write_piece_kib"),
            ("snapshot.retention=shred", "snapshot.retention"),
            ("journal.commits_in_flight=0", "journal.commits_in_flight"),
            ("journal.commits_in_flight=5", "journal.commits_in_flight"),
            ("journal.io=\"fast\"", "journal.io"),
            (
                "replication.listen=\"10.0.0.1:7700\"",
                "replication.allow_plaintext",
            ),
        ];
        for &(set, key) in cases {
            let e = load("", &[set]).expect_err(set);
            assert!(format!("{e:#}").contains(key), "{set}: {e:#}");
        }
        // One commit at a time only, and not quietly turned into something else.
        for io in ["uring", "direct"] {
            let io = format!("journal.io=\"{io}\"");
            load("", &[&io]).unwrap();
            let e = load("", &[&io, "journal.commits_in_flight=2"]).expect_err(&io);
            assert!(
                format!("{e:#}").contains("journal.commits_in_flight"),
                "{e:#}"
            );
        }
    }
}
