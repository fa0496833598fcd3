//! Replication's stable error codes (400–499), listed in docs/ERRORS.md and used in logs.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplicationCode {
    /// The handshake's secret is not the one in this node's config.
    BadSecret,
    /// A stream, a standby or a client from an older epoch: ignored.
    StaleEpoch,
    /// Primary and standby computed different rolling hashes for the same sequence.
    Diverged,
    /// The standby holds records of the primary's own epoch that the primary lacks.
    StandbyAhead,
    /// The standby's journal began with another engine configuration.
    ConfigMismatch,
    /// Asked to stream from a node that is not a primary.
    NotPrimary,
    /// The stream skipped or repeated a sequence.
    SequenceGap,
    /// The primary lost its standby (closed, or silent past the timeout).
    StandbyLost,
    /// Synchronous replication fell back to asynchronous (`on_standby_loss = "degrade"`).
    Degraded,
    /// A malformed replication frame.
    BadFrame,
    /// The primary could not be reached (the standby keeps trying).
    PrimaryUnreachable,
    /// Every standby slot (`replication.max_standbys`) holds an attached standby: one more
    /// is refused.
    StandbysFull,
    /// The records the standby needs are no longer in the primary's journal files.
    CatchUpUnavailable,
    /// The configuration allows acknowledging on both sides of a partition.
    UnsafeFailover,
    /// An admin call without the configured token.
    AdminTokenRequired,
    /// This node learned of a newer epoch: it takes no more writes.
    Fenced,
    /// The standby promoted itself: the primary was silent past the failover timeout.
    AutoPromoted,
    /// The standby's `--primary` answered, but not as a replication port (a client port, say).
    NotAReplicationPort,
    /// Failover through etcd: no etcd endpoint answered.
    CoordinatorUnreachable,
    /// Failover through etcd: this primary's lease is gone, or another node holds the leader
    /// key; it stops and rejoins as a standby.
    LeadershipLost,
    /// Failover through etcd: this node won the leader key and became the primary.
    Elected,
    /// One side of the replication link speaks TLS and the other does not, or the TLS
    /// handshake failed (a certificate not signed by `replication.tls_ca`).
    TlsRequired,
    /// The other side went away in the middle of the handshake (closed, or silent): no
    /// refusal, nothing to fix in the settings.
    HandshakeAbandoned,
}

impl ReplicationCode {
    pub const ALL: [ReplicationCode; 23] = [
        ReplicationCode::BadSecret,
        ReplicationCode::StaleEpoch,
        ReplicationCode::Diverged,
        ReplicationCode::StandbyAhead,
        ReplicationCode::ConfigMismatch,
        ReplicationCode::NotPrimary,
        ReplicationCode::SequenceGap,
        ReplicationCode::StandbyLost,
        ReplicationCode::Degraded,
        ReplicationCode::BadFrame,
        ReplicationCode::PrimaryUnreachable,
        ReplicationCode::StandbysFull,
        ReplicationCode::CatchUpUnavailable,
        ReplicationCode::UnsafeFailover,
        ReplicationCode::AdminTokenRequired,
        ReplicationCode::Fenced,
        ReplicationCode::AutoPromoted,
        ReplicationCode::NotAReplicationPort,
        ReplicationCode::CoordinatorUnreachable,
        ReplicationCode::LeadershipLost,
        ReplicationCode::Elected,
        ReplicationCode::TlsRequired,
        ReplicationCode::HandshakeAbandoned,
    ];

    pub fn number(self) -> u16 {
        400 + ReplicationCode::ALL
            .iter()
            .position(|&c| c == self)
            .expect("listed") as u16
    }

    pub fn from_number(n: u16) -> Option<ReplicationCode> {
        ReplicationCode::ALL
            .get(usize::from(n.checked_sub(400)?))
            .copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            ReplicationCode::BadSecret => "BAD_SECRET",
            ReplicationCode::StaleEpoch => "STALE_EPOCH",
            ReplicationCode::Diverged => "DIVERGED",
            ReplicationCode::StandbyAhead => "STANDBY_AHEAD",
            ReplicationCode::ConfigMismatch => "CONFIG_MISMATCH",
            ReplicationCode::NotPrimary => "NOT_PRIMARY_NODE",
            ReplicationCode::SequenceGap => "STREAM_SEQUENCE_GAP",
            ReplicationCode::StandbyLost => "STANDBY_LOST",
            ReplicationCode::Degraded => "REPLICATION_DEGRADED",
            ReplicationCode::BadFrame => "BAD_REPLICATION_FRAME",
            ReplicationCode::PrimaryUnreachable => "PRIMARY_UNREACHABLE",
            ReplicationCode::StandbysFull => "STANDBYS_FULL",
            ReplicationCode::CatchUpUnavailable => "CATCH_UP_UNAVAILABLE",
            ReplicationCode::UnsafeFailover => "UNSAFE_FAILOVER",
            ReplicationCode::AdminTokenRequired => "ADMIN_TOKEN_REQUIRED",
            ReplicationCode::Fenced => "NODE_FENCED",
            ReplicationCode::AutoPromoted => "AUTO_PROMOTED",
            ReplicationCode::NotAReplicationPort => "NOT_A_REPLICATION_PORT",
            ReplicationCode::CoordinatorUnreachable => "COORDINATOR_UNREACHABLE",
            ReplicationCode::LeadershipLost => "LEADERSHIP_LOST",
            ReplicationCode::Elected => "ELECTED",
            ReplicationCode::TlsRequired => "TLS_REQUIRED",
            ReplicationCode::HandshakeAbandoned => "HANDSHAKE_ABANDONED",
        }
    }
}

impl fmt::Display for ReplicationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.number(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for code in ReplicationCode::ALL {
            assert_eq!(ReplicationCode::from_number(code.number()), Some(code));
            assert!(names.insert(code.name()));
        }
        assert_eq!(ReplicationCode::from_number(399), None);
        assert_eq!(
            ReplicationCode::from_number(400 + ReplicationCode::ALL.len() as u16),
            None
        );
        assert_eq!(ReplicationCode::NotAReplicationPort.number(), 417);
    }
}
