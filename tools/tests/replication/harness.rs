//! Pairs of real processes, their /health, and the writes the tests make.

use std::path::Path;
use std::time::{Duration, Instant};

use engine::wire::{Operation, Reply};
use engine::{ClientId, Code, Command, OrderLine, RequestId, SkuId, SkuSpec, UserId};
use loadgen::client::Client;
use tools::serve_process::ServeProcess;

pub use crate::scratch::ScratchDir;

pub const SURGE: &str = env!("CARGO_BIN_EXE_surge");
pub const TOKEN: &str = "test-token";

pub fn exe() -> &'static Path {
    Path::new(SURGE)
}

/// A fresh, empty directory for one test, removed when it passes.
pub fn temp_dir(name: &str) -> ScratchDir {
    ScratchDir::new("repl", name)
}

/// The `--set`s both nodes of a pair get.
pub fn pair_sets(ack: &str, on_loss: &str, extra: &[&str]) -> Vec<String> {
    let mut sets: Vec<String> = vec![
        "replication.listen=127.0.0.1:0".into(),
        "replication.secret=test-secret".into(),
        format!("admin.token={TOKEN}"),
        format!("replication.ack={ack}"),
        format!("replication.on_standby_loss={on_loss}"),
        "replication.heartbeat_ms=20".into(),
        "replication.timeout_ms=200".into(),
        "journal.segment_mib=4".into(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    sets
}

pub fn refs(sets: &[String]) -> Vec<&str> {
    sets.iter().map(String::as_str).collect()
}

pub fn primary(dir: &Path, sets: &[String]) -> ServeProcess {
    ServeProcess::start(exe(), dir, &refs(sets)).unwrap()
}

pub fn standby(dir: &Path, of: &ServeProcess, sets: &[String]) -> ServeProcess {
    ServeProcess::start_standby(exe(), dir, of.replication.unwrap(), &refs(sets)).unwrap()
}

pub fn health(node: &ServeProcess) -> serde_json::Value {
    let (_, body) = tools::admin_client::get(&node.http.to_string(), "/health").unwrap();
    serde_json::from_str(&body).unwrap()
}

pub fn metric(node: &ServeProcess, name: &str) -> u64 {
    metric_at(node.http, name)
}

/// An unlabelled metric from the node whose HTTP port is `http`.
pub fn metric_at(http: std::net::SocketAddr, name: &str) -> u64 {
    let (_, body) = tools::admin_client::get(&http.to_string(), "/metrics").unwrap();
    tools::admin_client::metric(&body, name).unwrap_or_else(|| panic!("no {name} in /metrics"))
        as u64
}

pub fn wait_for(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

pub fn wait_streaming(primary: &ServeProcess) {
    wait_for(Duration::from_secs(30), "the standby to stream", || {
        health(primary)["standby"] == "streaming"
    });
}

/// Both nodes at the same applied sequence with the same rolling hash.
pub fn assert_converged(a: &ServeProcess, b: &ServeProcess) {
    assert!(
        tools::drill::converged(a, b, Duration::from_secs(30)),
        "not converged: {} vs {}",
        health(a),
        health(b)
    );
}

pub fn promote(node: &ServeProcess) -> serde_json::Value {
    let (status, body) =
        tools::admin_client::post(&node.http.to_string(), "/admin/promote", TOKEN).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A SKU with plenty of stock and no per-user limit to speak of.
pub fn add_sku(node: &ServeProcess, client: u64, sku: u64) {
    let mut c = Client::connect(node.addr, ClientId(client)).unwrap();
    let answer = c
        .call(Operation::Command(Command::UpsertSku(SkuSpec {
            sku: SkuId(sku),
            price: 100,
            stock: 10_000_000,
            per_user_limit: 1_000_000,
            sale_window: None,
        })))
        .unwrap();
    assert_eq!(answer.reply.code(), Code::SkuUpserted, "{answer:?}");
}

/// `n` one-unit orders, pipelined; the last accepted sequence.
pub fn place_orders(node: &ServeProcess, client: u64, sku: u64, n: u64) -> u64 {
    let mut c = Client::connect(node.addr, ClientId(client)).unwrap();
    let mut last = 0;
    for chunk in 0..n.div_ceil(1000) {
        let count = 1000.min(n - chunk * 1000);
        for i in 0..count {
            let id = c.next_request_id();
            c.send(id, &place(chunk * 1000 + i, sku)).unwrap();
        }
        c.flush().unwrap();
        for _ in 0..count {
            let answer = c.recv_answer().unwrap();
            assert_eq!(answer.reply.code(), Code::OrderPlaced, "{answer:?}");
            last = answer.seq;
        }
    }
    last
}

pub fn place(user: u64, sku: u64) -> Operation {
    Operation::Command(Command::PlaceOrder {
        user: UserId(user),
        lines: vec![OrderLine {
            sku: SkuId(sku),
            qty: 1,
        }],
        join_waitlist: false,
    })
}

/// One write's answer code.
pub fn write_code(addr: std::net::SocketAddr, client: u64, epoch: u64, sku: u64) -> Code {
    let mut c =
        Client::connect_at_epoch(addr, ClientId(client), Duration::from_secs(5), epoch).unwrap();
    let id = RequestId(1);
    match c.call_with_id(id, place(1, sku)) {
        Ok(answer) => match answer.reply {
            Reply::Rejected { code, .. } => code,
            other => other.code(),
        },
        Err(e) => panic!("write to {addr}: {e}"),
    }
}

/// `surge <command…>` on `dir` with loopback ports and `sets`, run until its log has `want`
/// (20 s at most), then killed: its log so far. For nodes that are meant not to start.
pub fn log_until(command: &[&str], dir: &Path, sets: &[String], want: &str) -> String {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut c = Command::new(exe());
    c.args(command)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for set in tools::serve_process::SMALL_ENGINE
        .iter()
        .copied()
        .chain(sets.iter().map(String::as_str))
    {
        c.args(["--set", set]);
    }
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !log.contains(want) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            log.push_str(&line);
            log.push('\n');
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    log
}
