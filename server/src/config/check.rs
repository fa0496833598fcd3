//! The checks `ServerConfig::load` runs: every limit in range, every mode known, settings
//! that need one another present together. Each refusal names the key.

use journal::IoMode;

use super::{bad, wire_requests_max, ServerConfig};
use crate::error::{Result, ServerError};

impl ServerConfig {
    /// Every key in range and consistent with the others.
    pub(super) fn check(&self) -> Result<()> {
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
        if !["auto", "threads", "shared", "single"].contains(&self.cores.layout.as_str()) {
            return Err(bad(
                "cores.layout",
                &self.cores.layout,
                "auto, threads, shared or single",
            ));
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
        let ckpt = &self.checkpoint;
        for (key, value) in [
            ("checkpoint.full_every", u64::from(ckpt.full_every)),
            ("checkpoint.keep_chains", u64::from(ckpt.keep_chains)),
            ("checkpoint.step_kib", ckpt.step_kib),
            ("checkpoint.queue_mib", ckpt.queue_mib),
        ] {
            if value == 0 {
                return Err(ServerError::config(key, "must be at least 1"));
            }
        }
        if ckpt.step_kib > 64 << 10 || ckpt.queue_mib > 64 << 10 {
            return Err(ServerError::config(
                "checkpoint.step_kib, checkpoint.queue_mib",
                "at most 65536 (64 MiB a step, 64 GiB queued)",
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

    fn check_feed(&self) -> Result<()> {
        let f = &self.feed;
        if f.listen_addr()?.is_none() {
            return Ok(());
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
}
