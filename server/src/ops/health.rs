//! `/health`: one small JSON object saying whether this node serves, what it is (role,
//! epoch), where it stands (durable and applied sequences, rolling hash, replication lag and
//! state), how many clients it has, its ack mode and, with failover through etcd, how long
//! until its lease deadline. 200 while serving, 503 otherwise.

use std::sync::atomic::Ordering::Relaxed;

use crate::node::Node;
use crate::shared::Shared;

/// The HTTP status line's code and the body.
pub fn render(shared: &Shared, node: &Node) -> (&'static str, String) {
    let m = &shared.metrics;
    let (durable, applied) = (m.durable_seq.load(Relaxed), m.applied_seq.load(Relaxed));
    let status = shared.status();
    let body = format!(
        "{{\"status\":\"{status}\",\"role\":\"{}\",\"epoch\":{},\"durable_seq\":{durable},\"applied_seq\":{applied},\"hash\":\"{:#018x}\",\"lag_seq\":{},\"standby\":\"{}\",\"degraded\":{},\"connections\":{},\"ack\":\"{}\",\"lease_left_ms\":{}}}\n",
        node.role().name(),
        node.epoch(),
        shared.engine_hash.load(Relaxed),
        node.lag_seq(durable, applied),
        node.standby.state_name(),
        node.degraded(),
        m.connections.load(Relaxed),
        node.policy.ack.name(),
        node.lease.left_ms()
    );
    let code = if status == "serving" {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    (code, body)
}
