//! `/health`: one small JSON object saying whether this node serves, what it is (role,
//! epoch), where it stands (durable and applied sequences, rolling hash, replication lag and
//! state), how many clients it has, its ack mode and, with failover through etcd, how long
//! until its lease deadline; on a primary, each standby it streams to. 200 while serving,
//! 503 otherwise.

use std::fmt::Write;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use crate::group::node::Node;
use crate::pipeline::shared::Shared;

/// The HTTP status line's code and the body.
pub fn render(shared: &Shared, node: &Node) -> (&'static str, String) {
    let m = &shared.metrics;
    let (durable, applied) = (shared.release.durable(), m.applied_seq.load(Relaxed));
    let status = shared.status();
    let mut standbys = String::new();
    for slot in node.standbys().slots().iter().filter(|s| s.used()) {
        let durable_acked = slot.durable.load(SeqCst);
        let _ = write!(
            standbys,
            "{}{{\"node\":{:?},\"ack\":\"{}\",\"state\":\"{}\",\"counted\":{},\"received_seq\":{},\"durable_seq\":{durable_acked},\"lag_seq\":{}}}",
            if standbys.is_empty() { "" } else { "," },
            slot.name(),
            slot.mode().name(),
            slot.state_name(),
            slot.counted.load(SeqCst),
            slot.received.load(SeqCst),
            durable.saturating_sub(durable_acked),
        );
    }
    let body = format!(
        "{{\"status\":\"{status}\",\"role\":\"{}\",\"epoch\":{},\"durable_seq\":{durable},\"applied_seq\":{applied},\"hash\":\"{:#018x}\",\"lag_seq\":{},\"standby\":\"{}\",\"degraded\":{},\"connections\":{},\"ack\":\"{}\",\"lease_left_ms\":{},\"sync_standbys\":{},\"standbys\":[{standbys}]}}\n",
        node.role().name(),
        node.epoch(),
        shared.engine_hash.load(Relaxed),
        node.lag_seq(durable, applied),
        replicator::standbys::state_name(node.standby_state()),
        node.degraded(),
        m.connections.load(Relaxed),
        node.policy().ack.name(),
        node.lease().left_ms(),
        node.policy().needed,
    );
    let code = if status == "serving" {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    (code, body)
}
