//! `surge status`: a group run through etcd (`failover = "etcd"`) as the coordinator and the
//! nodes see it. From etcd: the leader and its epoch, how long its lease has left, the last
//! term, the standbys in sync (and how many must ack), their published positions, and the
//! nodes registered under `{prefix}/nodes/`; from each node's `/health`: its role, epoch,
//! ack mode, sequences, lag and standby state, and on the primary each standby's mode, state,
//! lag and durable sequence. etcd's addresses, prefix, TLS and credentials come from the
//! flags or from a node's config (`--config`, its `[coordinator]`).

use std::time::Duration;

use coordinator::{Etcd, LeaderRecord, NodeRecord, PositionRecord, SyncRecord};
use serde_json::{json, Value};

use crate::admin_client;
use crate::node_args::ConfigArgs;

#[derive(clap::Args)]
pub struct Args {
    /// etcd's client addresses (`coordinator.endpoints`), comma-separated; default: those
    /// of `--config`.
    #[arg(long, value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// `coordinator.prefix`; default: that of `--config`, else /surge.
    #[arg(long)]
    pub prefix: Option<String>,
    /// A node's config (`--config FILE`, `--set KEY=VALUE`): etcd's endpoints, prefix, TLS
    /// files and credentials are taken from its `[coordinator]` (a secured etcd needs them).
    #[command(flatten)]
    pub node_config: ConfigArgs,
    /// Print one JSON object instead of the text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let status = collect(&args)?;
    if args.json {
        println!("{status}");
    } else {
        print!("{}", text(&status));
    }
    Ok(())
}

fn record(etcd: &Etcd, key: &str) -> anyhow::Result<Option<(LeaderRecord, i64)>> {
    Ok(etcd
        .get(key)?
        .and_then(|kv| LeaderRecord::decode(&kv.value).map(|r| (r, kv.lease))))
}

/// Everything `surge status` shows, as JSON.
pub fn collect(args: &Args) -> anyhow::Result<Value> {
    let config = args.node_config.load(&[])?;
    let endpoints = match args.etcd.is_empty() {
        true => config.coordinator.endpoints.clone(),
        false => args.etcd.clone(),
    };
    anyhow::ensure!(
        !endpoints.is_empty(),
        "where is etcd? --etcd HOST:PORT, or --config with coordinator.endpoints"
    );
    let etcd = Etcd::with_access(
        endpoints.clone(),
        Duration::from_secs(2),
        config.etcd_access()?,
    );
    let prefix = args.prefix.as_ref().unwrap_or(&config.coordinator.prefix);
    let prefix = prefix.trim_end_matches('/');
    let leader = match record(&etcd, &format!("{prefix}/leader"))? {
        Some((r, lease)) => {
            let left = etcd.time_to_live(lease)?;
            json!({ "node": r.node, "epoch": r.epoch, "lease_left_s": left })
        }
        None => Value::Null,
    };
    let term = record(&etcd, &format!("{prefix}/epoch"))?.map_or(
        Value::Null,
        |(r, _)| json!({ "node": r.node, "epoch": r.epoch }),
    );
    let in_sync = etcd
        .get(&format!("{prefix}/sync"))?
        .and_then(|kv| SyncRecord::decode(&kv.value))
        .map_or(
            Value::Null,
            |r| json!({ "members": r.members, "needed": r.needed, "epoch": r.epoch }),
        );
    let positions_prefix = format!("{prefix}/position/");
    let positions: Vec<Value> = etcd
        .get_prefix(&positions_prefix)?
        .into_iter()
        .filter_map(|(key, kv)| {
            let p = PositionRecord::decode(&kv.value)?;
            let name = key.trim_start_matches(&positions_prefix);
            Some(json!({ "node": name, "epoch": p.epoch, "seq": p.seq }))
        })
        .collect();
    let nodes_prefix = format!("{prefix}/nodes/");
    let mut nodes = Vec::new();
    for (key, kv) in etcd.get_prefix(&nodes_prefix)? {
        let name = key.trim_start_matches(&nodes_prefix).to_string();
        let Some(addresses) = NodeRecord::decode(&kv.value) else {
            continue;
        };
        let health = admin_client::get(&addresses.http, "/health")
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .unwrap_or(Value::Null);
        nodes.push(json!({
            "node": name,
            "client": addresses.client,
            "http": addresses.http,
            "replication": addresses.replication,
            "health": health,
        }));
    }
    Ok(json!({
        "etcd": endpoints,
        "leader": leader,
        "last_term": term,
        "in_sync": in_sync,
        "positions": positions,
        "nodes": nodes,
    }))
}

fn text(s: &Value) -> String {
    let mut out = String::new();
    match &s["leader"] {
        Value::Null => out.push_str("leader    none (no node holds the leader key)\n"),
        l => out.push_str(&format!(
            "leader    {}  epoch {}  lease {} s left\n",
            l["node"].as_str().unwrap_or("?"),
            l["epoch"],
            l["lease_left_s"]
        )),
    }
    let members: Vec<&str> = s["in_sync"]["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if members.is_empty() {
        out.push_str("in sync   none (only the leader holds every acknowledged write)\n");
    } else {
        out.push_str(&format!(
            "in sync   {} (each write acked by {} of them)\n",
            members.join(", "),
            s["in_sync"]["needed"]
        ));
    }
    for p in s["positions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "position  {} reached {} in epoch {}\n",
            p["node"].as_str().unwrap_or("?"),
            p["seq"],
            p["epoch"]
        ));
    }
    out.push_str("nodes\n");
    for n in s["nodes"].as_array().into_iter().flatten() {
        let h = &n["health"];
        if h.is_null() {
            out.push_str(&format!(
                "  {:<10} unreachable at {}\n",
                n["node"].as_str().unwrap_or("?"),
                n["http"].as_str().unwrap_or("?")
            ));
            continue;
        }
        out.push_str(&format!(
            "  {:<10} {:<8} epoch {}  ack {}  durable {}  applied {}  lag {}  standby {}  client {}\n",
            n["node"].as_str().unwrap_or("?"),
            h["role"].as_str().unwrap_or("?"),
            h["epoch"],
            h["ack"].as_str().unwrap_or("?"),
            h["durable_seq"],
            h["applied_seq"],
            h["lag_seq"],
            h["standby"].as_str().unwrap_or("?"),
            n["client"].as_str().unwrap_or("?")
        ));
        for sb in h["standbys"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    → {:<10} ack {:<8} {:<11} durable {}  lag {}{}\n",
                sb["node"].as_str().unwrap_or("?"),
                sb["ack"].as_str().unwrap_or("?"),
                sb["state"].as_str().unwrap_or("?"),
                sb["durable_seq"],
                sb["lag_seq"],
                if sb["counted"] == true {
                    "  (counts)"
                } else {
                    ""
                }
            ));
        }
    }
    out
}
