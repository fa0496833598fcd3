//! The replication lines of `/metrics`.

use std::sync::atomic::Ordering::SeqCst;

use engine::Code;

use crate::group::node::Node;
use crate::group::role::Role;
use crate::telemetry::metrics::{counter_value, gauge_float, gauge_value};

/// The replication lines of `/metrics`.
pub fn render_metrics(node: &Node, durable: u64, applied: u64, out: &mut String) {
    let flag = |b: bool| u64::from(b);
    let standbys = &node.standbys();
    let k = node.policy().needed;
    let group = |f: fn(&replicator::standbys::StandbyStatus) -> u64| {
        standbys.attached_kth(k, f).unwrap_or(0)
    };
    let (sessions, losses) = standbys.totals();
    let follower = &node.follower();
    let gauges = [
        (
            "surge_role",
            "1 primary, 2 standby, 3 fenced (a replaced primary), 4 promoting.",
            node.role() as u64,
        ),
        (
            "surge_epoch",
            "The highest epoch this node knows.",
            node.epoch(),
        ),
        (
            "surge_fenced",
            "1 once this node learned that a newer primary exists.",
            flag(node.role() == Role::Fenced),
        ),
        (
            "surge_replication_standby_state",
            "Primary: 0 fewer standbys that count than sync_standbys, 1 enough attached, 2 enough streaming.",
            u64::from(node.standby_state()),
        ),
        (
            "surge_replication_standby_received_seq",
            "Primary: highest sequence sync_standbys of the attached standbys acked as received (per standby: surge_standby_received_seq).",
            group(|s| s.received.load(SeqCst)),
        ),
        (
            "surge_replication_standby_durable_seq",
            "Primary: highest sequence sync_standbys of the attached standbys acked as synced.",
            group(|s| s.durable.load(SeqCst)),
        ),
        (
            "surge_replication_standby_applied_seq",
            "Primary: highest sequence sync_standbys of the attached standbys acked as applied.",
            group(|s| s.applied.load(SeqCst)),
        ),
        (
            "surge_replication_sent_seq",
            "Primary: highest sequence sent to sync_standbys of the attached standbys.",
            group(|s| s.sent.load(SeqCst)),
        ),
        (
            "surge_replication_acked_seq",
            "Primary: highest sequence the release rule counts as acked (sync_standbys of the standbys that count, each in its ack mode).",
            node.acked(),
        ),
        (
            "surge_replication_sync_standbys",
            "Primary: standbys that must ack a write (replication.sync_standbys).",
            k as u64,
        ),
        (
            "surge_replication_lag_seq",
            "Sequences the standby is behind (on either node).",
            node.lag_seq(durable, applied),
        ),
        (
            "surge_replication_degraded",
            "1 while synchronous replication runs without the standbys it needs (RPO > 0).",
            flag(node.degraded()),
        ),
        (
            "surge_replication_halted",
            "1 while writes are refused for want of standbys (on_standby_loss = halt).",
            flag(node.write_refusal() == Some(Code::StandbyUnavailable)),
        ),
        (
            "surge_replication_connected",
            "Standby: 1 while following a primary.",
            flag(follower.link.connected.load(SeqCst)),
        ),
        (
            "surge_replication_diverged",
            "Standby: 1 once its rolling hash differed from the primary's.",
            flag(follower.diverged.load(SeqCst)),
        ),
        (
            "surge_coordinator_enabled",
            "1 when failover goes through etcd (replication.failover = \"etcd\").",
            flag(node.lease().enabled.load(SeqCst)),
        ),
        (
            "surge_coordinator_reachable",
            "1 while etcd answers this node's calls.",
            flag(node.lease().reachable.load(SeqCst)),
        ),
        (
            "surge_coordinator_leader",
            "1 while this node holds the leader key in etcd.",
            flag(node.lease().leading.load(SeqCst)),
        ),
    ];
    for (name, help, value) in gauges {
        gauge_value(out, name, help, value);
    }
    gauge_float(
        out,
        "surge_coordinator_lease_deadline_left_seconds",
        "Seconds until this node stops acknowledging unless its lease in etcd is renewed.",
        node.lease().left_ms() as f64 / 1000.0,
    );
    let counters = [
        (
            "surge_coordinator_unreachable_total",
            "Calls to etcd that no endpoint answered.",
            node.lease().unreachable_total.load(SeqCst),
        ),
        (
            "surge_coordinator_authentications_total",
            "Auth tokens bought from etcd (coordinator.username); a steady rise means tokens expire.",
            node.lease().authentications_total.load(SeqCst),
        ),
        (
            "surge_replication_checkpoints_matched_total",
            "Standby: rolling-hash checkpoints compared and equal.",
            follower.comparer.compared(),
        ),
        (
            "surge_replication_standby_sessions_total",
            "Primary: standby sessions begun (all standbys).",
            sessions,
        ),
        (
            "surge_replication_standby_losses_total",
            "Primary: standbys lost.",
            losses,
        ),
        (
            "surge_promotions_total",
            "Promotions of this node to primary.",
            node.promotions(),
        ),
    ];
    for (name, help, value) in counters {
        counter_value(out, name, help, value);
    }
    render_standbys(standbys, out);
}

/// One series per standby a primary ever streamed to, labelled with its name and ack mode.
fn render_standbys(standbys: &replicator::Standbys, out: &mut String) {
    use std::fmt::Write;
    type Field = fn(&replicator::standbys::StandbyStatus) -> u64;
    let families: [(&str, &str, &str, Field); 6] = [
        (
            "surge_standby_state",
            "gauge",
            "Primary: this standby 0 detached, 1 catching up, 2 streaming.",
            |s| u64::from(s.state.load(SeqCst)),
        ),
        (
            "surge_standby_counted",
            "gauge",
            "Primary: 1 while this standby's acks count toward sync_standbys.",
            |s| u64::from(s.counted.load(SeqCst)),
        ),
        (
            "surge_standby_received_seq",
            "gauge",
            "Primary: highest sequence this standby acked as received.",
            |s| s.received.load(SeqCst),
        ),
        (
            "surge_standby_durable_seq",
            "gauge",
            "Primary: highest sequence this standby acked as synced.",
            |s| s.durable.load(SeqCst),
        ),
        (
            "surge_standby_applied_seq",
            "gauge",
            "Primary: highest sequence this standby acked as applied.",
            |s| s.applied.load(SeqCst),
        ),
        (
            "surge_standby_losses_total",
            "counter",
            "Primary: sessions of this standby lost.",
            |s| s.losses.load(SeqCst),
        ),
    ];
    // The families are announced even before a standby attaches, so dashboards and rules
    // find them on every node.
    let used: Vec<_> = standbys.slots().iter().filter(|s| s.used()).collect();
    for (name, kind, help, field) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for slot in &used {
            let _ = writeln!(
                out,
                "{name}{{standby=\"{}\",ack=\"{}\"}} {}",
                slot.name(),
                slot.mode().name(),
                field(slot)
            );
        }
    }
}
