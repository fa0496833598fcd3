//! Replication's section: the ack modes, the standbys' table, failover, the link's timing
//! and TLS, and the replication port.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::bad;
use crate::error::{Result, ServerError};

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
