//! `surge drill`: the DR drill, self-contained. A primary and a hot standby start as two
//! processes on loopback; the load generator runs a flash sale against both addresses with an
//! ack log; mid-sale the primary is stopped (SIGKILL, or fenced) and the standby promoted
//! (by `surge promote`'s call, or by itself with `--failover auto`); a probe measures the
//! time to the first write the new primary accepts. Then every acknowledged answer is
//! checked on the new primary (none lost, none twice, the stock adds up), and the old
//! primary rejoins as a standby of the new one and must converge to the same rolling hash.
//! `--rounds N` repeats it, the roles swapping each round.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use engine::wire::{Operation, Reply};
use engine::{ClientId, Code, Command, RequestId, SkuId, SkuSpec};
use loadgen::client::Client;
use loadgen::open_loop::{self, RunConfig, Spacing, System};
use serde_json::json;

use crate::acked::verify;
use crate::admin_client::post;
use crate::serve_process::ServeProcess;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Drills to run; the roles swap each round (the old primary rejoins as the standby).
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// Seconds of load per round (0: no load, promotion timing only).
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Requests per second offered.
    #[arg(long, default_value_t = 5_000.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 2)]
    pub connections: u64,
    /// async, received or durable.
    #[arg(long, default_value = "durable")]
    pub ack: String,
    /// How the primary is stopped: kill (SIGKILL) or fence (POST /admin/fence).
    #[arg(long, default_value = "kill")]
    pub stop: String,
    /// manual (the drill calls promote), etcd (both nodes run `surge serve` against an etcd
    /// the drill starts, which decides who leads), or auto (the standby promotes itself
    /// after the silence timeout; unsafe).
    #[arg(long, default_value = "manual")]
    pub failover: String,
    /// With `--failover etcd`: the leader's lease (whole seconds, at least 2000).
    #[arg(long, default_value_t = 2000)]
    pub lease_ms: u64,
    /// Heartbeat and silence timeout, ms (auto failover waits for the timeout).
    #[arg(long, default_value_t = 10)]
    pub heartbeat_ms: u64,
    #[arg(long, default_value_t = 100)]
    pub timeout_ms: u64,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the data directories.
    #[arg(long)]
    pub keep: bool,
    /// Config overrides for both nodes, as `surge serve --set` takes them (e.g.
    /// `journal.io="pwritev2"`), after the drill's own
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

const TOKEN: &str = "drill-token";
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the probe keeps asking for its first accepted write.
const PROBE_PATIENCE: Duration = Duration::from_secs(10);

/// One round's figures.
#[derive(Debug, Default, Clone)]
pub struct Round {
    /// From the stop (SIGKILL or fence) to the first write the new primary accepted.
    pub stop_to_write_us: u64,
    /// From the promote call to the first accepted write (manual failover).
    pub promote_to_write_us: Option<u64>,
    /// The promotion itself, as the node measured it.
    pub promote_us: Option<u64>,
    pub acked: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub problems: Vec<String>,
    pub failovers: u64,
    pub rejoined_same_hash: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rounds = drill(&args)?;
    let report = report_json(&args, &rounds);
    println!("{}", text(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let bad: Vec<&String> = rounds.iter().flat_map(|r| &r.problems).collect();
    ensure!(bad.is_empty(), "the drill found problems:\n{bad:#?}");
    Ok(())
}

/// Run the drill; one entry per round.
pub fn drill(args: &Args) -> anyhow::Result<Vec<Round>> {
    ensure!(
        ["kill", "fence"].contains(&args.stop.as_str()),
        "--stop kill or fence"
    );
    ensure!(
        ["manual", "auto", "etcd"].contains(&args.failover.as_str()),
        "--failover manual, etcd or auto"
    );
    let exe = std::env::current_exe().context("finding the surge binary")?;
    let exe = if exe.file_name().is_some_and(|n| n == "surge") {
        exe
    } else {
        // Called from a test binary: the surge binary is next to its directory.
        exe.parent()
            .and_then(Path::parent)
            .map(|d| d.join("surge"))
            .context("surge binary")?
    };
    // Two drills in one process (tests) must not share directories, ack logs or ids.
    static DRILLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64
        + 1_000 * DRILLS.fetch_add(1, Ordering::Relaxed);
    let root = std::env::temp_dir().join(format!("surge-drill-{}-{stamp}", std::process::id()));
    let dirs = [root.join("a"), root.join("b")];
    let sets: Vec<String> = vec![
        "replication.listen=127.0.0.1:0".into(),
        "replication.secret=drill".into(),
        format!("admin.token={TOKEN}"),
        format!("replication.ack={}", args.ack),
        "replication.on_standby_loss=halt".into(),
        format!("replication.failover={}", args.failover),
        format!("replication.heartbeat_ms={}", args.heartbeat_ms),
        format!("replication.timeout_ms={}", args.timeout_ms),
        "engine.payment_window_ms=2000".into(),
        "journal.segment_mib=8".into(),
    ];
    let sets: Vec<String> = sets.into_iter().chain(args.sets.iter().cloned()).collect();
    let etcd = (args.failover == "etcd")
        .then(|| {
            ensure!(
                coordinator::local_etcd::installed(),
                "--failover etcd starts an etcd of its own: install etcd (apt-get install etcd-server)"
            );
            Ok(coordinator::local_etcd::LocalEtcd::start(&root.join("etcd"))?)
        })
        .transpose()?;
    // Each node's `--set`s: with etcd, each has a name of its own and runs `surge serve`.
    let node_sets: Vec<Vec<String>> = ["a", "b"]
        .iter()
        .map(|name| {
            let mut own = sets.clone();
            if let Some(etcd) = &etcd {
                own.push(format!("replication.node=\"{name}\""));
                own.push(format!("coordinator.endpoints=[\"{}\"]", etcd.endpoint));
                own.push(format!("coordinator.lease_ms={}", args.lease_ms));
                own.push(format!("coordinator.margin_ms={}", args.lease_ms / 4));
            }
            own
        })
        .collect();
    let refs = |i: usize| -> Vec<&str> { node_sets[i].iter().map(String::as_str).collect() };
    // A node rejoining (or starting as the standby) follows `of`: by itself with etcd.
    let start_standby = |i: usize, of: &ServeProcess| -> anyhow::Result<ServeProcess> {
        match etcd {
            Some(_) => ServeProcess::start(&exe, &dirs[i], &refs(i)),
            None => ServeProcess::start_standby(
                &exe,
                &dirs[i],
                of.replication.context("no replication port")?,
                &refs(i),
            ),
        }
    };
    let mut primary = ServeProcess::start(&exe, &dirs[0], &refs(0))?;
    let mut standby = start_standby(1, &primary)?;
    let mut which = 0; // index of the primary's directory
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        wait_streaming(&primary)?;
        if let Some(etcd) = &etcd {
            wait_in_sync(etcd, ["a", "b"][1 - which])?;
        }
        let r = one_round(args, round, &mut primary, &standby, stamp)?;
        // Failback: the old primary rejoins as a standby of the new one.
        let _ = primary.wait_exit(Duration::from_secs(5));
        drop(primary);
        let rejoined = start_standby(which, &standby)?;
        let mut r = r;
        r.rejoined_same_hash = converged(&standby, &rejoined, Duration::from_secs(30));
        if !r.rejoined_same_hash {
            let logs = rejoined.logs();
            r.problems.push(format!(
                "round {round}: the rejoined node did not converge to the same rolling hash: \
                 {:?} vs {:?}; its log ends {:#?}",
                health(&standby),
                health(&rejoined),
                &logs[logs.len().saturating_sub(12)..]
            ));
        }
        rounds.push(r);
        primary = standby;
        standby = rejoined;
        which = 1 - which;
    }
    primary.terminate(STOP_TIMEOUT)?;
    standby.terminate(STOP_TIMEOUT)?;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(rounds)
}

fn one_round(
    args: &Args,
    round: u32,
    primary: &mut ServeProcess,
    standby: &ServeProcess,
    stamp: u64,
) -> anyhow::Result<Round> {
    let base = ((stamp + u64::from(round) * 7) % (1 << 40)) << 14;
    let acks = std::env::temp_dir().join(format!(
        "surge-drill-acks-{}-{base}.jsonl",
        std::process::id()
    ));
    let load = args.duration > 0.0;
    let config = RunConfig {
        system: System::Surge,
        servers: vec![primary.addr.to_string(), standby.addr.to_string()],
        workload: "flash-sale".into(),
        rate: Some(args.rate),
        spacing: Spacing::Poisson,
        duration: Duration::from_secs_f64(args.duration.max(0.1)),
        warmup: Duration::ZERO,
        connections: args.connections,
        pipeline: 256,
        seed: u64::from(round) + 1,
        ack_log: Some(acks.clone()),
        progress: false,
        id_base: Some(base),
        ..RunConfig::default()
    };
    let mut r = Round::default();
    let done = &AtomicBool::new(false);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let loader = load.then(|| scope.spawn(|| open_loop::run(&config)));
        if load {
            std::thread::sleep(Duration::from_secs_f64(args.duration / 2.0));
        }
        let probe_sku = SkuId(base + 12_345);
        let probe = scope.spawn(move || {
            probe_first_write(standby.addr, ClientId(base + 9_990), probe_sku, done)
        });
        std::thread::sleep(Duration::from_millis(20)); // the probe is asking the standby
        let stopped = Instant::now();
        match args.stop.as_str() {
            "kill" => primary.signal(libc::SIGKILL),
            _ => {
                let (status, body) = post(&primary.http.to_string(), "/admin/fence", TOKEN)?;
                ensure!(status == 200, "fence: {status} {body}");
            }
        }
        let mut called = None;
        if args.failover == "manual" {
            called = Some(Instant::now());
            let (status, body) = post(&standby.http.to_string(), "/admin/promote", TOKEN)?;
            ensure!(status == 200, "promote: {status} {body}");
            let v: serde_json::Value = serde_json::from_str(&body)?;
            r.promote_us = v["promote_us"].as_u64();
        }
        let accepted = probe.join().expect("probe thread").map_err(|e| {
            let logs = standby.logs();
            anyhow::anyhow!(
                "round {round}: {e}; the standby: {:?}; its log ends {:#?}",
                health(standby),
                &logs[logs.len().saturating_sub(15)..]
            )
        })?;
        r.stop_to_write_us = accepted.saturating_duration_since(stopped).as_micros() as u64;
        r.promote_to_write_us =
            called.map(|c| accepted.saturating_duration_since(c).as_micros() as u64);
        if let Some(loader) = loader {
            let report = loader.join().expect("load thread")?;
            r.failovers = report.measured.failovers;
            if !report.measured.lost_connections.is_empty() {
                r.problems.push(format!(
                    "connections lost: {:?}",
                    report.measured.lost_connections
                ));
            }
        }
        Ok(())
    })?;
    done.store(true, Ordering::Relaxed);
    if load {
        let acked = open_loop::read_ack_log(&acks)?;
        let verdict = verify(
            standby.addr,
            ClientId(base + 9_997),
            SkuId(base + 1),
            &acked,
        )?;
        r.acked = acked.len() as u64;
        r.lost = verdict.lost;
        r.duplicates = verdict.duplicates;
        r.problems.extend(
            verdict
                .problems
                .into_iter()
                .map(|p| format!("round {round}: {p}")),
        );
    }
    let _ = std::fs::remove_file(&acks);
    Ok(r)
}

/// Ask `addr` for a write again and again (it is a standby at first); when the first one is
/// accepted.
fn probe_first_write(
    addr: std::net::SocketAddr,
    client: ClientId,
    sku: SkuId,
    done: &AtomicBool,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + PROBE_PATIENCE;
    let mut c = Client::connect(addr, client)?;
    let mut request = 1u64;
    let upsert = Operation::Command(Command::UpsertSku(SkuSpec {
        sku,
        price: 100,
        stock: 1,
        per_user_limit: 1,
        sale_window: None,
    }));
    while Instant::now() < deadline && !done.load(Ordering::Relaxed) {
        request += 1;
        match c.call_with_id(RequestId(request), upsert.clone()) {
            Ok(answer) if answer.reply.code() == Code::SkuUpserted => return Ok(Instant::now()),
            Ok(answer) => match answer.reply {
                Reply::Rejected { code, .. } if loadgen::failover::means_move(code) => {}
                other => anyhow::bail!("the probe's write was answered {other:?}"),
            },
            Err(_) => c = Client::connect(addr, client)?,
        }
    }
    anyhow::bail!("no write accepted within {PROBE_PATIENCE:?}")
}

fn health(node: &ServeProcess) -> Option<serde_json::Value> {
    let (status, body) = crate::admin_client::get(&node.http.to_string(), "/health").ok()?;
    (status == 200 || status == 503)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// Until etcd records `standby` as the standby in sync (only then may it take over).
fn wait_in_sync(etcd: &coordinator::local_etcd::LocalEtcd, standby: &str) -> anyhow::Result<()> {
    let client = etcd.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let recorded = client
            .get("/surge/sync")
            .ok()
            .flatten()
            .and_then(|kv| coordinator::SyncRecord::decode(&kv.value));
        if recorded.is_some_and(|r| r.members.iter().any(|m| m == standby)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    anyhow::bail!("etcd never recorded {standby} as the standby in sync")
}

fn wait_streaming(primary: &ServeProcess) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if health(primary).is_some_and(|h| h["standby"] == "streaming") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    anyhow::bail!("the standby did not start streaming")
}

/// Whether both nodes reach the same applied sequence with the same rolling hash.
pub fn converged(a: &ServeProcess, b: &ServeProcess, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let (Some(x), Some(y)) = (health(a), health(b)) {
            if x["applied_seq"] == y["applied_seq"] && x["hash"] == y["hash"] {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// p50, p99 and max of some microsecond figures, as JSON.
fn spread(mut values: Vec<u64>) -> serde_json::Value {
    values.sort_unstable();
    let at = |q: f64| {
        values
            .get(((values.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    json!({"p50": at(0.5), "p99": at(0.99), "max": values.last().copied().unwrap_or(0), "n": values.len()})
}

/// The drill's figures, summed over the rounds: what `--json` writes and the text shows.
fn report_json(args: &Args, rounds: &[Round]) -> serde_json::Value {
    let sum = |f: fn(&Round) -> u64| rounds.iter().map(f).sum::<u64>();
    json!({
        "rounds": rounds.len(),
        "ack": args.ack, "stop": args.stop, "failover": args.failover,
        "stop_to_first_write_us": spread(rounds.iter().map(|r| r.stop_to_write_us).collect()),
        "promote_call_to_first_write_us": spread(rounds.iter().filter_map(|r| r.promote_to_write_us).collect()),
        "promote_in_node_us": spread(rounds.iter().filter_map(|r| r.promote_us).collect()),
        "acked_answers_checked": sum(|r| r.acked),
        "acked_orders_lost": sum(|r| r.lost),
        "duplicates": sum(|r| r.duplicates),
        "client_failovers": sum(|r| r.failovers),
        "rejoined_same_hash": rounds.iter().all(|r| r.rejoined_same_hash),
        "problems": rounds.iter().flat_map(|r| r.problems.clone()).collect::<Vec<_>>(),
    })
}

fn text(report: &serde_json::Value) -> String {
    let ms = |v: &serde_json::Value| format!("{:.3} ms", v.as_u64().unwrap_or(0) as f64 / 1e3);
    let (stop, promote) = (
        &report["stop_to_first_write_us"],
        &report["promote_call_to_first_write_us"],
    );
    format!(
        "surge drill: {} round(s)\n  stop -> first accepted write     p50 {}  p99 {}\n  promote call -> first write      p50 {}  p99 {}  ({} timed)\n  acknowledged answers checked     {}\n  acknowledged orders lost         {}\n  duplicates                       {}\n  client failovers                 {}\n  old primary rejoined, same hash  {}\n  problems                         {}",
        report["rounds"],
        ms(&stop["p50"]), ms(&stop["p99"]),
        ms(&promote["p50"]), ms(&promote["p99"]), promote["n"],
        report["acked_answers_checked"],
        report["acked_orders_lost"],
        report["duplicates"],
        report["client_failovers"],
        report["rejoined_same_hash"],
        report["problems"].as_array().map_or(0, Vec::len),
    )
}
