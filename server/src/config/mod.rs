//! `surge serve` configuration: a TOML file (every key optional, unknown keys an error that
//! names the key), then flags on top. `deploy/surge.toml` shows every key with its default.
//! One file per part: the pipeline's sections (`sections.rs`), replication's
//! (`replication.rs`), the checks run at load (`check.rs`), and the TLS and etcd settings
//! built from the files they name (`tls.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use engine::ring::WaitStrategy;
use engine::EngineConfig;
use journal::IoMode;
use serde::Deserialize;

use crate::error::{Result, ServerError};

mod check;
pub mod replication;
pub mod sections;
#[cfg(test)]
mod tests;
pub mod tls;

pub use replication::{AckMode, ReplicationSection};
pub use sections::{
    AdminSection, CheckpointSection, CoordinatorSection, CoresSection, EngineSection, FeedSection,
    GatewaySection, JournalSection, RingSection, SnapshotSection,
};

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
    pub checkpoint: CheckpointSection,
    pub coordinator: CoordinatorSection,
    pub feed: FeedSection,
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
            checkpoint: CheckpointSection::default(),
            coordinator: CoordinatorSection::default(),
            feed: FeedSection::default(),
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

    /// Whether the serving engine checkpoints itself.
    pub fn checkpoints_on(&self) -> bool {
        self.checkpoint.every_records > 0 || self.checkpoint.every_secs > 0
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
