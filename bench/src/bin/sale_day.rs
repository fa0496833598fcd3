//! The sale day: a whole day's transactions (150 million requests by default; `--scale` for a short
//! run) through one `surge serve`, on a rate profile that ramps to the seed's 120,000/s peak
//! and back, with the server SIGKILLed and restarted several times along
//! the way. Every 10 s it records RSS, orders held and retired, data-directory bytes,
//! snapshots taken, and the latency of that window; each restart's time; each snapshot's
//! engine pause (from the server's log). It checks a sampled ack log against the server as it
//! goes (every acknowledged order there, made by the request it was acknowledged to) and at
//! the end, then writes a table, JSON and an SVG.
//!
//! `cargo build --release -p tools -p bench && target/release/sale-day [--scale 0.02]`
//! (`--help` for the rest). Needs nothing else: loopback ports, a data directory under
//! `SURGE_BENCH_DIR` (default /var/tmp).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use engine::ClientId;
use loadgen::client::{Client, OrderLookup};
use loadgen::open_loop::{self, RunConfig, Spacing, System};
use loadgen::schedule::RateProfile;
use loadgen::windows::Windows;
use serde_json::json;

const SAMPLE: Duration = Duration::from_secs(10);
/// How long before a kill and after serving again a window still counts as the kill's.
const KILL_MARGIN_S: f64 = 2.0;
const LISTEN: &str = "127.0.0.1:7660";
const HTTP: &str = "127.0.0.1:7661";
/// The day's shape, as (fraction of the run, fraction of the peak): a morning ramp to the
/// peak, the peak held, an evening decline.
const DAY: &[(f64, f64)] = &[(0.0, 0.25), (0.3, 1.0), (0.5, 1.0), (1.0, 0.33)];

struct Args {
    transactions: u64,
    peak: f64,
    kills: u32,
    connections: u64,
    pipeline: usize,
    surge: PathBuf,
    dir: PathBuf,
    out: PathBuf,
    sets: Vec<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        transactions: 150_000_000,
        peak: 120_000.0,
        kills: 4,
        connections: 4,
        pipeline: 256,
        surge: std::env::current_exe()?.with_file_name("surge"),
        dir: std::env::var_os("SURGE_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp"))
            .join("surge-sale-day"),
        out: PathBuf::from("bench/results/sale-day"),
        sets: Vec::new(),
    };
    let mut scale = 1.0;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--transactions" => a.transactions = value()?.parse()?,
            "--scale" => scale = value()?.parse()?,
            "--peak" => a.peak = value()?.parse()?,
            "--kills" => a.kills = value()?.parse()?,
            "--connections" => a.connections = value()?.parse()?,
            "--pipeline" => a.pipeline = value()?.parse()?,
            "--surge" => a.surge = value()?.into(),
            "--data-dir" => a.dir = value()?.into(),
            "--out" => a.out = value()?.into(),
            "--set" => a.sets.push(value()?),
            "--help" | "-h" => {
                println!(
                    "sale-day [--transactions N (150000000)] [--scale F] [--peak RATE (120000)] \
                     [--kills N (4)] [--connections N] [--pipeline N] \
                     [--surge PATH] [--data-dir DIR] [--out PREFIX] [--set KEY=VALUE]…"
                );
                std::process::exit(0);
            }
            other => bail!("unknown flag {other:?} (--help)"),
        }
    }
    a.transactions = (a.transactions as f64 * scale) as u64;
    anyhow::ensure!(
        a.transactions > 0,
        "--transactions × --scale must be positive"
    );
    Ok(a)
}

/// A running `surge serve`, its log lines collected.
struct Server {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(a: &Args) -> anyhow::Result<(Server, Duration)> {
        let started = Instant::now();
        let mut command = Command::new(&a.surge);
        command
            .args(["serve", "--listen", LISTEN, "--http", HTTP, "--data-dir"])
            .arg(&a.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for set in &a.sets {
            command.args(["--set", set]);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", a.surge.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        // Every server's log, one after the other, kept beside the results.
        let mut log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(a.out.with_extension("server.log"))?;
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = writeln!(log_file, "{line}");
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        let server = Server { child, logs };
        while get("/health").is_none_or(|(status, _)| status != 200) {
            if started.elapsed() > Duration::from_secs(120) {
                bail!("the server did not serve within 120 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok((server, started.elapsed()))
    }

    fn kill9(&mut self) {
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }

    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()));
        status
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb << 10)
    }

    /// Log lines with `event=name`, taken (each is seen once).
    fn take_events(&self, event: &str) -> Vec<String> {
        let mut logs = self.logs.lock().expect("logs");
        let key = format!("event={event} ");
        let (hits, rest): (Vec<String>, Vec<String>) =
            logs.drain(..).partition(|l| l.contains(&key));
        *logs = rest;
        hits
    }
}

fn get(path: &str) -> Option<(u16, String)> {
    tools::admin_client::get(HTTP, path).ok()
}

fn metric(body: &str, name: &str) -> u64 {
    tools::admin_client::metric(body, name).map_or(0, |v| v as u64)
}

fn health_field(field: &str) -> u64 {
    get("/health")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v[field].as_u64())
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn log_field(line: &str, key: &str) -> Option<u64> {
    tools::serve_process::log_field(line, key)?.parse().ok()
}

#[derive(Default)]
struct Checked {
    /// Sampled orders found, made by the request they were acknowledged to.
    ok: u64,
    /// Retired past the server's history: they existed (their id was given), no more.
    beyond_history: u64,
    /// Missing, or made by another request: an acknowledged order lost.
    lost: Vec<String>,
    lines_read: usize,
}

/// Check the ack log lines not checked yet: each sampled order is there (or retired beyond
/// history), made by the client and request it was acknowledged to.
fn check_acks(path: &Path, checked: &mut Checked) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let lines: Vec<&str> = text[..complete].lines().collect();
    let fresh = &lines[checked.lines_read.min(lines.len())..];
    checked.lines_read = lines.len();
    let mut orders: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for line in fresh {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let kind = v["kind"].as_str().unwrap_or("");
        if let (Some(order), "place_order" | "waitlist_order") = (v["order_id"].as_u64(), kind) {
            let made_by = (
                v["client_id"].as_u64().unwrap_or(0),
                v["request_id"].as_u64().unwrap_or(0),
            );
            orders.insert(order, made_by);
        }
    }
    if orders.is_empty() {
        return Ok(());
    }
    let (ids, made_by): (Vec<u64>, Vec<(u64, u64)>) = orders.into_iter().unzip();
    let mut c = Client::connect(LISTEN, ClientId(7_777_777))?;
    let found = c.query_orders(&ids)?;
    for ((order, (client, request)), lookup) in ids.iter().zip(made_by).zip(found) {
        let made = match &lookup {
            OrderLookup::Held(o) => Some((o.client.0, o.request.0)),
            OrderLookup::Retired(r) => Some((r.client.0, r.request.0)),
            OrderLookup::BeyondHistory => {
                checked.beyond_history += 1;
                continue;
            }
            OrderLookup::Other(_) => None,
        };
        match made {
            Some(made) if made == (client, request) => checked.ok += 1,
            Some(made) => checked.lost.push(format!(
                "order {order} acknowledged to {client}/{request}, made by {}/{}",
                made.0, made.1
            )),
            None => checked
                .lost
                .push(format!("order {order} is missing: {lookup:?}")),
        }
    }
    Ok(())
}

/// What the server itself saw in one sampling interval: requests answered, and how many of
/// them waited over 20 ms and over 50 ms inside it (`surge_request_seconds`), and the least
/// bucket bound that holds them all.
#[derive(Clone, Copy, Default)]
struct ServerLatency {
    requests: u64,
    over_20ms: u64,
    over_50ms: u64,
    max_within_ms: f64,
}

/// `surge_request_seconds` as (bound in seconds, cumulative count), `+Inf` last.
fn request_buckets(body: &str) -> Vec<(f64, u64)> {
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("surge_request_seconds_bucket{le=\"")?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// The interval between two readings of the buckets (a restart starts them again from 0).
fn server_latency(before: &[(f64, u64)], after: &[(f64, u64)]) -> ServerLatency {
    let restarted = after.last().map_or(0, |b| b.1) < before.last().map_or(0, |b| b.1);
    let diff: Vec<(f64, u64)> = after
        .iter()
        .map(|&(le, n)| {
            let was = if restarted {
                0
            } else {
                before.iter().find(|b| b.0 == le).map_or(0, |b| b.1)
            };
            (le, n.saturating_sub(was))
        })
        .collect();
    let total = diff.last().map_or(0, |b| b.1);
    let within = |bound: f64| diff.iter().find(|b| b.0 >= bound).map_or(total, |b| b.1);
    ServerLatency {
        requests: total,
        over_20ms: total - within(0.02),
        over_50ms: total - within(0.05),
        max_within_ms: diff
            .iter()
            .find(|b| b.1 == total)
            .map_or(0.0, |b| b.0 * 1e3),
    }
}

struct Sample {
    t_s: f64,
    transactions: u64,
    rss: u64,
    held: u64,
    retired: u64,
    disk: u64,
    snapshots: u64,
    server: ServerLatency,
}

/// The load generator's latency (from intended send) for one 10 s window of the schedule.
#[derive(Clone, Copy)]
struct ClientWindow {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    answered: u64,
}

struct Restart {
    at_s: f64,
    transactions: u64,
    serving_after_s: f64,
}

fn take_windows(windows: &Windows, before: u64, into: &mut BTreeMap<u64, ClientWindow>) {
    for (index, w) in windows.take_before(before) {
        let q = |p| w.latency.value_at_quantile(p) as f64 / 1e6;
        into.insert(
            index,
            ClientWindow {
                p50_ms: q(0.5),
                p99_ms: q(0.99),
                max_ms: w.latency.max() as f64 / 1e6,
                answered: w.answered,
            },
        );
    }
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    anyhow::ensure!(
        a.surge.exists(),
        "{} not found: cargo build --release -p tools (or --surge PATH)",
        a.surge.display()
    );
    let _ = std::fs::remove_dir_all(&a.dir);
    if let Some(parent) = a.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(a.out.with_extension("server.log"));
    let acks = a.dir.with_extension("acks.jsonl");
    // The run's length: the profile's mean rate carries the transactions (requests answered,
    // about one journal record each).
    let mean = RateProfile::new(DAY.iter().map(|&(f, r)| (f, r * a.peak)).collect())
        .map_err(anyhow::Error::msg)?
        .mean_rate(1.0);
    let duration_s = (a.transactions as f64 / mean).ceil();
    let profile = RateProfile::new(
        DAY.iter()
            .map(|&(f, r)| (f * duration_s, r * a.peak))
            .collect(),
    )
    .map_err(anyhow::Error::msg)?;
    println!(
        "sale day: {} requests, {duration_s:.0} s on a profile to a {:.0}/s peak (mean {mean:.0}/s), {} kills; surge {} on {LISTEN}, data in {}",
        a.transactions,
        a.peak,
        a.kills,
        a.surge.display(),
        a.dir.display()
    );
    let (mut server, first_start) = Server::start(&a)?;
    let serving_rss = server.rss_bytes();
    let windows = Arc::new(Windows::new(SAMPLE));
    let config = RunConfig {
        system: System::Surge,
        // The same address twice: a connection that loses the server (killed) moves to the
        // "other" one, which is it restarted, and resends what was unanswered.
        servers: vec![LISTEN.into(), LISTEN.into()],
        workload: "mixed".into(),
        rate: Some(mean),
        rate_profile: Some(Arc::new(profile)),
        spacing: Spacing::Poisson,
        duration: Duration::from_secs_f64(duration_s),
        warmup: Duration::ZERO,
        connections: a.connections,
        pipeline: a.pipeline,
        seed: 1,
        ack_log: Some(acks.clone()),
        // About one order in 997 (a prime, so no pattern of the ids lines up with it).
        ack_every: 997,
        windows: Some(windows.clone()),
        ..RunConfig::default()
    };
    let done = Arc::new(AtomicBool::new(false));
    let load = {
        let done = done.clone();
        std::thread::spawn(move || {
            let report = open_loop::run(&config);
            done.store(true, SeqCst);
            report
        })
    };
    let started = Instant::now();
    let kill_at: Vec<u64> = (1..=a.kills as u64)
        .map(|k| a.transactions * k / (a.kills as u64 + 1))
        .collect();
    let mut restarts: Vec<Restart> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut client: BTreeMap<u64, ClientWindow> = BTreeMap::new();
    let mut pauses_us: Vec<u64> = Vec::new();
    let mut checked = Checked::default();
    let mut next_sample = started + SAMPLE;
    let mut transactions = 0;
    let mut buckets = Vec::new();
    while !done.load(SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
        transactions = health_field("durable_seq").max(transactions);
        if restarts.len() < kill_at.len() && transactions >= kill_at[restarts.len()] {
            collect_pauses(&server, &mut pauses_us);
            server.kill9();
            let at_s = started.elapsed().as_secs_f64();
            let (restarted, took) = Server::start(&a)?;
            server = restarted;
            let recovered = server.take_events("recovered").pop().unwrap_or_default();
            println!(
                "  {at_s:>6.0} s  SIGKILL at {transactions}: serving again in {:.2} s ({recovered})",
                took.as_secs_f64()
            );
            restarts.push(Restart {
                at_s,
                transactions,
                serving_after_s: took.as_secs_f64(),
            });
            check_acks(&acks, &mut checked)?;
        }
        if Instant::now() < next_sample {
            continue;
        }
        next_sample += SAMPLE;
        let t_s = started.elapsed().as_secs_f64();
        collect_pauses(&server, &mut pauses_us);
        let metrics = get("/metrics").map(|(_, b)| b).unwrap_or_default();
        let now_buckets = request_buckets(&metrics);
        let sample = Sample {
            t_s,
            transactions,
            rss: server.rss_bytes(),
            held: metric(&metrics, "surge_limit_used{limit=\"orders_max\"}"),
            retired: metric(&metrics, "surge_orders_retired_total"),
            disk: dir_bytes(&a.dir),
            snapshots: metric(&metrics, "surge_snapshots_total"),
            server: server_latency(&buckets, &now_buckets),
        };
        buckets = now_buckets;
        // Windows of the schedule still being answered are left for later.
        take_windows(
            &windows,
            windows.index((t_s * 1e9) as u64).saturating_sub(1),
            &mut client,
        );
        println!(
            "  {:>6.0} s  {:>11} records  rss {:>6} MiB  held {:>9}  retired {:>11}  disk {:>6} MiB  snapshots {:>3}  server: {} over 20 ms, all within {} ms  {}",
            sample.t_s,
            sample.transactions,
            sample.rss >> 20,
            sample.held,
            sample.retired,
            sample.disk >> 20,
            sample.snapshots,
            sample.server.over_20ms,
            sample.server.max_within_ms,
            client.last_key_value().map_or(String::new(), |(i, w)| format!(
                "client window {}–{} s: p50 {:.2} ms  p99 {:.2} ms  max {:.1} ms",
                i * 10,
                i * 10 + 10,
                w.p50_ms,
                w.p99_ms,
                w.max_ms
            )),
        );
        samples.push(sample);
        check_acks(&acks, &mut checked)?;
    }
    let report = load.join().expect("the load thread panicked")?;
    take_windows(&windows, u64::MAX, &mut client);
    check_acks(&acks, &mut checked)?;
    collect_pauses(&server, &mut pauses_us);
    let m = &report.measured;
    let day = Day {
        samples,
        client,
        restarts,
        pauses_us,
        checked,
        serving_rss,
        first_start,
        requests: (m.sent, m.answered, m.accepted),
        generator_lag_max_ms: m.sender_lag_max_ns as f64 / 1e6,
    };
    let summary = day.summarize();
    println!("{}", serde_json::to_string_pretty(&summary)?);
    println!("{}", report.table());
    day.write_outputs(&a.out, &summary)?;
    server.kill9();
    anyhow::ensure!(
        day.checked.lost.is_empty(),
        "acknowledged orders lost: {:#?}",
        &day.checked.lost[..day.checked.lost.len().min(20)]
    );
    Ok(())
}

fn collect_pauses(server: &Server, pauses_us: &mut Vec<u64>) {
    for line in server.take_events("snapshot") {
        if let Some(us) = log_field(&line, "engine_pause_us") {
            pauses_us.push(us);
        }
    }
}

struct Day {
    samples: Vec<Sample>,
    client: BTreeMap<u64, ClientWindow>,
    restarts: Vec<Restart>,
    pauses_us: Vec<u64>,
    checked: Checked,
    serving_rss: u64,
    first_start: Duration,
    /// The load generator's requests sent, answered, and accepted (applied or answered).
    requests: (u64, u64, u64),
    generator_lag_max_ms: f64,
}

/// After a restart the new server faults its tables in for a few seconds (RSS climbs back):
/// samples this soon after one are left out of the flatness figures.
const AFTER_RESTART_S: f64 = 30.0;

impl Day {
    /// Samples that show the steady state: from the second on (the first snapshot interval
    /// and the fault-in are behind), none just after a restart.
    fn steady(&self) -> Vec<&Sample> {
        self.samples
            .iter()
            .skip(1)
            .filter(|s| {
                !self
                    .restarts
                    .iter()
                    .any(|r| s.t_s >= r.at_s && s.t_s < r.at_s + AFTER_RESTART_S)
            })
            .collect()
    }

    /// Whether window `index` (its 10 s of the schedule) saw a kill: its requests waited for
    /// a restart, a wait the server is not asked to hide. Requests meant a little before the
    /// kill (in flight then) and a little after serving again (the backlog) count too.
    fn killed_in(&self, index: u64) -> bool {
        let (from, to) = (index as f64 * 10.0, index as f64 * 10.0 + 10.0);
        self.restarts.iter().any(|r| {
            r.at_s - KILL_MARGIN_S < to && r.at_s + r.serving_after_s + KILL_MARGIN_S >= from
        })
    }

    fn summarize(&self) -> serde_json::Value {
        let samples = &self.samples;
        let steady = self.steady();
        let spread = |f: &dyn Fn(&Sample) -> u64| -> (u64, u64, f64) {
            let lo = steady.iter().map(|s| f(s)).min().unwrap_or(0);
            let hi = steady.iter().map(|s| f(s)).max().unwrap_or(0);
            let mid = (lo + hi) as f64 / 2.0;
            let pm = if mid > 0.0 {
                (hi - lo) as f64 / 2.0 / mid * 100.0
            } else {
                0.0
            };
            (lo, hi, pm)
        };
        let (rss_lo, rss_hi, rss_pm) = spread(&|s| s.rss);
        let (disk_lo, disk_hi, disk_pm) = spread(&|s| s.disk);
        let mut pauses = self.pauses_us.clone();
        pauses.sort_unstable();
        let pct = |v: &[u64], p: f64| {
            v.get(((v.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0)
        };
        let (quiet, killed): (Vec<_>, Vec<_>) =
            self.client.iter().partition(|(i, _)| !self.killed_in(**i));
        let max_of = |ws: &[(&u64, &ClientWindow)], f: fn(&ClientWindow) -> f64| {
            ws.iter().map(|(_, w)| f(w)).fold(0.0, f64::max)
        };
        let server =
            |f: fn(&ServerLatency) -> u64| samples.iter().map(|s| f(&s.server)).sum::<u64>();
        json!({
            "requests_sent_answered_accepted": [self.requests.0, self.requests.1, self.requests.2],
            "journal_records": samples.last().map_or(0, |s| s.transactions),
            "generator_lag_max_ms": self.generator_lag_max_ms,
            "seconds": samples.last().map_or(0.0, |s| s.t_s),
            "rss_at_serving_mib": self.serving_rss >> 20,
            "rss_steady_mib": {"min": rss_lo >> 20, "max": rss_hi >> 20, "plus_minus_pct": rss_pm},
            "disk_steady_mib": {"min": disk_lo >> 20, "max": disk_hi >> 20, "plus_minus_pct": disk_pm},
            "steady_samples": steady.len(),
            "orders_held_max": samples.iter().map(|s| s.held).max().unwrap_or(0),
            "first_start_s": self.first_start.as_secs_f64(),
            "restarts_s": self.restarts.iter().map(|r| r.serving_after_s).collect::<Vec<_>>(),
            "restart_max_s": self.restarts.iter().map(|r| r.serving_after_s).fold(0.0, f64::max),
            "snapshots": pauses.len(),
            "snapshot_engine_pause_us": {"p50": pct(&pauses, 0.5), "p99": pct(&pauses, 0.99), "max": pauses.last().copied().unwrap_or(0)},
            "client_latency_ms_windows_without_a_kill": {
                "windows": quiet.len(),
                "p99_max": max_of(&quiet, |w| w.p99_ms),
                "max": max_of(&quiet, |w| w.max_ms),
            },
            "client_latency_ms_windows_with_a_kill": {
                "windows": killed.len(),
                "max": max_of(&killed, |w| w.max_ms),
            },
            "server_requests": server(|l| l.requests),
            "server_requests_over_20ms": server(|l| l.over_20ms),
            "server_requests_over_50ms": server(|l| l.over_50ms),
            "server_max_within_ms": samples.iter().map(|s| s.server.max_within_ms).fold(0.0, f64::max),
            "acks_checked": self.checked.ok,
            "acks_beyond_history": self.checked.beyond_history,
            "acks_lost": self.checked.lost.len(),
        })
    }

    fn write_outputs(&self, out: &Path, summary: &serde_json::Value) -> anyhow::Result<()> {
        let mut table = String::from(
            "| t (s) | journal records | RSS (MiB) | orders held | orders retired | disk (MiB) | snapshots | server: over 20 ms | server: all within (ms) | window | p50 (ms) | p99 (ms) | max (ms) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for s in &self.samples {
            // The schedule's window that ended at this sample.
            let index = (s.t_s / 10.0).round() as u64 - 1;
            let w = self.client.get(&index);
            let cell =
                |f: fn(&ClientWindow) -> f64| w.map_or("–".into(), |w| format!("{:.2}", f(w)));
            table.push_str(&format!(
                "| {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {}–{} s{} | {} | {} | {} |\n",
                s.t_s,
                s.transactions,
                s.rss >> 20,
                s.held,
                s.retired,
                s.disk >> 20,
                s.snapshots,
                s.server.over_20ms,
                s.server.max_within_ms,
                index * 10,
                index * 10 + 10,
                if self.killed_in(index) { " (kill)" } else { "" },
                cell(|w| w.p50_ms),
                cell(|w| w.p99_ms),
                cell(|w| w.max_ms),
            ));
        }
        table.push_str(
            "\n| SIGKILL at (s) | at transaction | serving again in (s) |\n|---|---|---|\n",
        );
        for r in &self.restarts {
            table.push_str(&format!(
                "| {:.0} | {} | {:.2} |\n",
                r.at_s, r.transactions, r.serving_after_s
            ));
        }
        table.push_str(&format!(
            "\n```json\n{}\n```\n",
            serde_json::to_string_pretty(summary)?
        ));
        std::fs::write(out.with_extension("md"), &table)?;
        let rows: Vec<_> = self
            .samples
            .iter()
            .map(|s| {
                json!({"t_s": s.t_s, "transactions": s.transactions, "rss": s.rss, "held": s.held,
                       "retired": s.retired, "disk": s.disk, "snapshots": s.snapshots,
                       "server_requests": s.server.requests, "server_over_20ms": s.server.over_20ms,
                       "server_over_50ms": s.server.over_50ms, "server_max_within_ms": s.server.max_within_ms})
            })
            .collect();
        let windows: Vec<_> = self
            .client
            .iter()
            .map(|(i, w)| {
                json!({"from_s": i * 10, "p50_ms": w.p50_ms, "p99_ms": w.p99_ms, "max_ms": w.max_ms,
                       "answered": w.answered, "kill": self.killed_in(*i)})
            })
            .collect();
        let restarts: Vec<_> = self
            .restarts
            .iter()
            .map(|r| json!({"at_s": r.at_s, "transactions": r.transactions, "serving_after_s": r.serving_after_s}))
            .collect();
        std::fs::write(
            out.with_extension("json"),
            serde_json::to_string_pretty(
                &json!({"summary": summary, "samples": rows, "client_windows": windows, "restarts": restarts}),
            )?,
        )?;
        std::fs::write(out.with_extension("svg"), self.svg())?;
        Ok(())
    }

    /// Four charts over time: RSS, data-directory bytes, p99 latency (the load generator's,
    /// by 10 s window), and restart times; kills are dashed lines.
    fn svg(&self) -> String {
        let (w, h, pad) = (900.0, 170.0, 45.0);
        let t_max = self.samples.last().map_or(1.0, |s| s.t_s).max(1.0);
        let mut out = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="11">"#,
            4.0 * h + 20.0
        );
        out.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
        let mib = |b: u64| (b >> 20) as f64;
        let charts: [(&str, Vec<(f64, f64)>); 4] = [
            ("RSS (MiB)", self.samples.iter().map(|s| (s.t_s, mib(s.rss))).collect()),
            ("data directory (MiB)", self.samples.iter().map(|s| (s.t_s, mib(s.disk))).collect()),
            (
                "p99 latency from intended send, per 10 s window (ms; windows with a kill left out)",
                self.client
                    .iter()
                    .filter(|(i, _)| !self.killed_in(**i))
                    .map(|(i, w)| (*i as f64 * 10.0 + 10.0, w.p99_ms))
                    .collect(),
            ),
            (
                "restart: serving again in (s)",
                self.restarts.iter().map(|r| (r.at_s, r.serving_after_s)).collect(),
            ),
        ];
        for (i, (title, points)) in charts.iter().enumerate() {
            let top = 10.0 + i as f64 * h;
            let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.15;
            let x = |t: f64| pad + t / t_max * (w - 2.0 * pad);
            let y = |v: f64| top + h - 25.0 - v / y_max * (h - 45.0);
            out.push_str(&format!(
                r#"<text x="{pad}" y="{}" font-weight="bold">{title}</text><line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{pad}" y1="{}" x2="{pad}" y2="{}" stroke="black"/><text x="5" y="{}">{:.0}</text><text x="5" y="{}">0</text><text x="{}" y="{}">{t_max:.0} s</text>"#,
                top + 12.0, y(0.0), w - pad, y(0.0), y(0.0), y(y_max), y(y_max) + 4.0, y_max, y(0.0), w - pad - 30.0, y(0.0) + 14.0
            ));
            if i == 3 {
                for &(t, v) in points {
                    out.push_str(&format!(
                        r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="crimson"/><text x="{:.1}" y="{:.1}">{v:.2}</text>"#,
                        x(t), y(v), x(t) + 6.0, y(v) - 4.0
                    ));
                }
            } else {
                let path: Vec<String> = points
                    .iter()
                    .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
                    .collect();
                out.push_str(&format!(
                    r#"<polyline fill="none" stroke="steelblue" stroke-width="1.5" points="{}"/>"#,
                    path.join(" ")
                ));
            }
            for r in &self.restarts {
                out.push_str(&format!(
                    r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="crimson" stroke-dasharray="3,3"/>"#,
                    x(r.at_s), y(y_max), y(0.0)
                ));
            }
        }
        out.push_str("</svg>\n");
        out
    }
}
