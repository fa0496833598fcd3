//! The two rules that keep a lease-holding primary and a newly elected one from both
//! acknowledging writes (docs/REPLICATION.md, *Failover through etcd*, has the argument):
//!
//! - **The deadline.** A keep-alive sent at local monotonic time `t` that etcd answers with
//!   TTL `s` means the lease cannot expire in etcd before `t + s` (etcd restarted its count
//!   after receiving the request, which was after `t`). The primary stops acknowledging at
//!   `t + s − margin`; the margin covers the two clocks' rates differing over one TTL. No
//!   other node can hold the leader key before the lease expires, and it campaigns only
//!   after that, so no interval has two nodes acknowledging.
//! - **The leader record.** The value of the leader key: which node, at which epoch. And
//!   each node's addresses, under `{prefix}/nodes/{node}`, so a standby finds its primary.

use std::time::Duration;

/// When this node's lease may have run out, by its own monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// Monotonic nanoseconds; 0: no lease (never valid).
    pub at_ns: u64,
}

impl Deadline {
    pub const NONE: Deadline = Deadline { at_ns: 0 };

    /// After a keep-alive sent at `sent_ns` that etcd answered with `ttl`.
    pub fn after_renewal(sent_ns: u64, ttl: Duration, margin: Duration) -> Deadline {
        let ttl_ns = ttl.as_nanos() as u64;
        let margin_ns = (margin.as_nanos() as u64).min(ttl_ns);
        Deadline {
            at_ns: sent_ns.saturating_add(ttl_ns - margin_ns),
        }
    }

    pub fn valid_at(&self, now_ns: u64) -> bool {
        now_ns < self.at_ns
    }

    /// The later of two (a renewal's answer may arrive after a newer one's).
    pub fn max(self, other: Deadline) -> Deadline {
        Deadline {
            at_ns: self.at_ns.max(other.at_ns),
        }
    }
}

/// The leader key's value: `node=<name> epoch=<n>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderRecord {
    pub node: String,
    pub epoch: u64,
}

impl LeaderRecord {
    pub fn encode(&self) -> Vec<u8> {
        format!("node={} epoch={}", self.node, self.epoch).into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<LeaderRecord> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut node = None;
        let mut epoch = None;
        for field in text.split_whitespace() {
            match field.split_once('=')? {
                ("node", v) => node = Some(v.to_string()),
                ("epoch", v) => epoch = v.parse().ok(),
                _ => {}
            }
        }
        Some(LeaderRecord {
            node: node?,
            epoch: epoch?,
        })
    }
}

/// Where a node is reached, as JSON: `{"client":…,"http":…,"replication":…}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub client: String,
    pub http: String,
    pub replication: Option<String>,
}

impl NodeRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::json!({
            "client": self.client,
            "http": self.http,
            "replication": self.replication,
        })
        .to_string()
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<NodeRecord> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        Some(NodeRecord {
            client: v["client"].as_str()?.to_string(),
            http: v["http"].as_str()?.to_string(),
            replication: v["replication"].as_str().map(str::to_string),
        })
    }
}

/// The epoch a campaign moves the counter to: above both etcd's counter and anything this
/// node has seen (epochs from before etcd ran the pair).
pub fn next_epoch(etcd_counter: Option<u64>, local_epoch: u64) -> u64 {
    etcd_counter.unwrap_or(0).max(local_epoch) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_runs_from_the_send_less_the_margin() {
        let d = Deadline::after_renewal(1_000, Duration::from_secs(2), Duration::from_millis(400));
        assert!(d.valid_at(1_000));
        assert!(d.valid_at(1_000 + 1_599_999_999));
        assert!(!d.valid_at(1_000 + 1_600_000_000));
        assert!(!Deadline::NONE.valid_at(0));
        // A margin past the TTL leaves no time at all, not a wrapped one.
        let none = Deadline::after_renewal(5, Duration::from_secs(1), Duration::from_secs(3));
        assert!(!none.valid_at(5));
        assert_eq!(d.max(Deadline::NONE), d);
    }

    #[test]
    fn leader_records_round_trip_and_epochs_only_grow() {
        let r = LeaderRecord {
            node: "a".into(),
            epoch: 7,
        };
        assert_eq!(LeaderRecord::decode(&r.encode()), Some(r));
        assert_eq!(LeaderRecord::decode(b"node=a"), None);
        assert_eq!(next_epoch(None, 0), 1);
        assert_eq!(next_epoch(Some(4), 2), 5);
        assert_eq!(next_epoch(Some(4), 9), 10);
        let n = NodeRecord {
            client: "10.0.0.1:7600".into(),
            http: "10.0.0.1:7680".into(),
            replication: Some("10.0.0.1:7700".into()),
        };
        assert_eq!(NodeRecord::decode(&n.encode()), Some(n));
    }
}
