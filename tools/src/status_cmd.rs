//! `surge status`: a pair run through etcd (`failover = "etcd"`) as the coordinator and the
//! nodes see it. From etcd: the leader and its epoch, how long its lease has left, the last
//! term, the standby in sync, and the nodes registered under `{prefix}/nodes/`; from each
//! node's `/health`: its role, epoch, ack mode, sequences, lag and standby state.

use std::time::Duration;

use coordinator::{Etcd, LeaderRecord, NodeRecord};
use serde_json::{json, Value};

use crate::admin_client;

#[derive(clap::Args)]
pub struct Args {
    /// etcd's client addresses (`coordinator.endpoints`), comma-separated.
    #[arg(long, required = true, value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// `coordinator.prefix`.
    #[arg(long, default_value = "/surge")]
    pub prefix: String,
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
    let etcd = Etcd::new(args.etcd.clone(), Duration::from_secs(2));
    let prefix = args.prefix.trim_end_matches('/');
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
    let in_sync = record(&etcd, &format!("{prefix}/sync"))?.map_or(
        Value::Null,
        |(r, _)| json!({ "node": r.node, "epoch": r.epoch }),
    );
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
        "etcd": args.etcd,
        "leader": leader,
        "last_term": term,
        "in_sync": in_sync,
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
    let in_sync = s["in_sync"]["node"].as_str().unwrap_or("");
    out.push_str(&format!(
        "in sync   {}\n",
        if in_sync.is_empty() {
            "none (only the leader holds every acknowledged write)"
        } else {
            in_sync
        }
    ));
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
    }
    out
}
