//! What operators touch: `/metrics` (checked with promtool when it is installed), `/health`,
//! SIGTERM draining under load without losing an answered order, and `surge ctl`.

use std::process::Command;
use std::time::Duration;

use engine::wire::{Operation, Reply};
use engine::{Code, Outcome};

use super::harness::*;

#[test]
fn metrics_are_prometheus_text_and_health_says_serving() {
    let dir = temp_dir("ops-metrics");
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client(1);
    upsert(&mut c, 1, 100, 1, 0);
    c.call(place(1, 1, 1, false)).unwrap();
    c.call(place(2, 1, 1, false)).unwrap();
    let (status, health) = server.http_get("/health");
    assert_eq!(status, 200);
    assert!(health.contains("\"status\":\"serving\""), "{health}");
    let (status, metrics) = server.http_get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "surge_answers_total{code=\"1\",name=\"ORDER_PLACED\"} 1",
        "surge_answers_total{code=\"105\",name=\"OUT_OF_STOCK\"} 1",
        "surge_ring_occupancy",
        "surge_journal_sync_seconds_bucket",
        "surge_journal_batch_records_count",
        "surge_gate_wait_seconds_count",
        "surge_connections 1",
        "surge_waitlist_entries",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    assert_eq!(server.http_get("/nope").0, 404);
    assert_dashboard_queries_exported(&metrics);
    if let Some(promtool) = promtool() {
        let file = dir.join("metrics.txt");
        std::fs::write(&file, &metrics).unwrap();
        let out = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every metric deploy/grafana/surge.json queries is one `/metrics` exports (a histogram's
/// `_bucket`, `_sum` and `_count` count as the histogram), so the dashboard never shows an
/// empty panel for a name that does not exist.
fn assert_dashboard_queries_exported(metrics: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/surge.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exported: std::collections::HashSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut queries: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = variable["query"].as_str() {
            queries.push(q.to_string());
        }
    }
    let mut checked = 0;
    for query in &queries {
        for (at, _) in query.match_indices("surge_") {
            let name: String = query[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| exported.contains(base))
                .unwrap_or(&name);
            assert!(
                exported.contains(base),
                "deploy/grafana/surge.json queries {name}, which /metrics does not export: {query}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} metric names in the dashboard");
}

/// promtool, if installed (`.ci/run` installs Debian's `prometheus`, and requires it there).
fn promtool() -> Option<String> {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if !found && std::env::var_os("SURGE_REQUIRE_PROMTOOL").is_some() {
        panic!("promtool is required (SURGE_REQUIRE_PROMTOOL) but not installed");
    }
    found.then(|| "promtool".to_string())
}

#[test]
fn the_alert_rules_are_valid() {
    let Some(promtool) = promtool() else {
        return;
    };
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/surge-alerts.yml"
    );
    let out = Command::new(promtool)
        .args(["check", "rules", rules])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_under_load_drains_and_loses_nothing_answered() {
    let dir = temp_dir("ops-sigterm");
    let mut server = ServerProcess::start(&dir, &[]);
    let mut c = server.client(5);
    upsert(&mut c, 1, 10, 1_000_000, 0);
    let mut answered = Vec::new();
    let mut sent = 0u64;
    let mut signalled = false;
    // Pipeline in rounds; SIGTERM lands in the middle of one.
    for round in 0..200 {
        for _ in 0..200 {
            let id = c.next_request_id();
            c.send(id, &place(sent % 5000, 1, 1, false)).unwrap();
            sent += 1;
        }
        c.flush().unwrap();
        if round == 20 {
            server.signal(libc::SIGTERM);
            signalled = true;
        }
        let mut stop = false;
        for _ in 0..200 {
            match c.recv_answer() {
                Ok(a) => {
                    if let Reply::Outcome(Outcome::OrderPlaced { order, .. }) = a.reply {
                        answered.push((a.request, order));
                    } else {
                        assert_eq!(a.reply.code(), Code::ShuttingDown);
                    }
                }
                Err(_) => {
                    stop = true;
                    break;
                }
            }
        }
        if stop {
            break;
        }
    }
    assert!(signalled);
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit {status:?}: {:#?}", server.logs());
    assert!(server.logs().iter().any(|l| l.contains("event=drained")));
    drop(server);
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client(6);
    for (request, order) in &answered {
        let view = c
            .call(Operation::Query(engine::Query::Order { order: *order }))
            .unwrap();
        match view.reply {
            Reply::Answer(engine::Answer::Order(o)) => assert_eq!(o.request, *request),
            other => panic!("answered order {order} is gone after restart: {other:?}"),
        }
    }
    assert!(answered.len() >= 20 * 200, "answered {}", answered.len());
}

#[test]
fn ctl_places_pays_and_exits_non_zero_on_refusal() {
    let dir = temp_dir("ops-ctl");
    let server = ServerProcess::start(&dir, &[]);
    let csv = dir.join("catalog.csv");
    std::fs::write(
        &csv,
        "sku,price,stock,per_user_limit\n1,1999,1,1\n2,500,10,0\n",
    )
    .unwrap();
    let ctl = |args: &[&str]| {
        let out = Command::new(SURGE)
            .args(["ctl", "--server", &server.addr.to_string(), "--json"])
            .args(args)
            .output()
            .unwrap();
        let json: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (out.status.code(), json)
    };
    let (status, out) = ctl(&["catalog", "load", csv.to_str().unwrap()]);
    assert_eq!((status, out[0]["loaded"].as_u64()), (Some(0), Some(2)));
    let (status, out) = ctl(&["order", "place", "--user", "3", "--sku", "1", "--qty", "1"]);
    assert_eq!(status, Some(0), "{out:?}");
    assert_eq!(out[0]["name"], "ORDER_PLACED");
    let order = out[0]["order_id"].as_u64().unwrap();
    let placed_by = out[0]["client_id"].as_u64().unwrap();
    let (status, out) = ctl(&["order", "place", "--user", "4", "--sku", "1", "--qty", "1"]);
    assert_eq!(status, Some(3));
    assert_eq!(
        (out[0]["code"].as_u64(), out[0]["name"].as_str()),
        (Some(105), Some("OUT_OF_STOCK"))
    );
    let (status, _) = ctl(&["order", "pay", &order.to_string(), "--amount", "1999"]);
    assert_eq!(status, Some(0));
    let (status, out) = ctl(&["order", "get", &order.to_string()]);
    assert_eq!(status, Some(0));
    assert_eq!(
        (out[0]["order_id"].as_u64(), out[0]["state"].as_str()),
        (Some(order), Some("paid"))
    );
    assert_eq!(
        out[0]["client_id"].as_u64(),
        Some(placed_by),
        "the order's client, not the asker"
    );
    let (_, out) = ctl(&["stock", "1"]);
    assert_eq!(
        (out[0]["sold"].as_u64(), out[0]["available"].as_u64()),
        (Some(1), Some(0))
    );
    let (status, out) = ctl(&["order", "cancel", &order.to_string()]);
    assert_eq!(
        (status, out[0]["name"].as_str()),
        (Some(3), Some("ALREADY_PAID"))
    );
}
