//! The open-loop load generator behind `surge loadgen`: C connections, each sending on its
//! own schedule (constant or Poisson, together the offered rate), with at most `pipeline`
//! requests unanswered. Latency is measured from each request's *intended* send time, so a
//! server (or network) that stalls is charged for every request that should have gone out
//! meanwhile, not only for the one that was waiting (no coordinated omission). `--rate max`
//! is the closed-loop saturation mode: every connection keeps `pipeline` requests in flight.
//! A few threads drive all the connections (`threads`, by default a quarter of the cores, at
//! least one), so the generator does not take the cores of the server it measures, and
//! `sender_lag_max` says how late it was against its own schedule.

mod ack_log;
mod conn;
mod driver;
mod system;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use engine::ClientId;

/// The spacing is part of a run's configuration (`RunConfig::spacing`).
pub use crate::schedule::Spacing;
pub use ack_log::{read as read_ack_log, Ack, AckLog};
pub use conn::Conn;
pub use driver::{Plan, Progress};
pub use system::System;

use crate::failover::Nodes;
use crate::measured::Measured;
use crate::protocol::SurgeProtocol;
use crate::report::RunReport;
use crate::schedule::{RateProfile, Schedule};
use crate::traffic;
use crate::windows::Windows;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub system: System,
    /// Tried in order; the run uses the first that answers.
    pub servers: Vec<String>,
    pub workload: String,
    /// Requests per second offered; `None` for closed-loop saturation.
    pub rate: Option<f64>,
    pub spacing: Spacing,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: u64,
    pub pipeline: usize,
    pub seed: u64,
    pub ack_log: Option<PathBuf>,
    /// Print a progress line every second (to stderr).
    pub progress: bool,
    /// Client ids are `base + 0` (setup) and `base + 1 + i`; SKU ids are drawn from the same
    /// clock unless set. Defaults (None) come from the clock, so reruns never collide with
    /// request ids an earlier run used.
    pub id_base: Option<u64>,
    /// The offered rate changes over the run along this profile (instead of `rate`).
    pub rate_profile: Option<Arc<RateProfile>>,
    /// With `ack_log`: log the answers of one order in this many (1: every answer).
    pub ack_every: u64,
    /// Measure latency window by window too (read while the run goes on).
    pub windows: Option<Arc<Windows>>,
    /// Threads that drive the connections (`None`: a quarter of the cores, at least one; never
    /// more than the connections).
    pub threads: Option<usize>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            system: System::Surge,
            servers: vec!["127.0.0.1:7600".into()],
            workload: "flash-sale".into(),
            rate: Some(10_000.0),
            spacing: Spacing::Poisson,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            connections: 4,
            pipeline: 1024,
            seed: 1,
            ack_log: None,
            progress: false,
            id_base: None,
            rate_profile: None,
            ack_every: 1,
            windows: None,
            threads: None,
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the last answers after the run ends.
const DRAIN: Duration = Duration::from_secs(10);
/// What `--rate max` sizes its workload for, per second.
const SATURATION_SIZING_RATE: f64 = 500_000.0;

/// Connect to the first server that answers (for surge with several, the first that takes
/// writes).
fn connect(config: &RunConfig, client: ClientId) -> anyhow::Result<Conn> {
    if config.system == System::Surge && config.servers.len() > 1 {
        let mut nodes = Nodes::new(config.servers.clone(), client);
        let client = nodes.connect_writable(Instant::now() + CONNECT_TIMEOUT)?;
        return Ok(Conn::new(
            client.into_handover()?,
            Box::new(SurgeProtocol::default()),
        )?);
    }
    let mut errors = Vec::new();
    for server in &config.servers {
        match config.system.connect(server, client, CONNECT_TIMEOUT) {
            Ok((stream, protocol)) => return Ok(Conn::new(stream, protocol)?),
            Err(e) => errors.push(format!("{server}: {e:#}")),
        }
    }
    anyhow::bail!("no server answered: {}", errors.join("; "))
}

pub fn run(config: &RunConfig) -> anyhow::Result<RunReport> {
    anyhow::ensure!(config.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(config.pipeline > 0, "--pipeline must be at least 1");
    anyhow::ensure!(
        config.rate.is_none_or(|r| r > 0.0 && r.is_finite()),
        "--rate must be a positive number or max"
    );
    let base = config.id_base.unwrap_or_else(|| {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // A fresh range per millisecond, with room for 16k connections or SKUs under it.
        (ms % (1 << 40)) << 14
    });
    let seconds = (config.duration + config.warmup).as_secs_f64();
    let rate = match &config.rate_profile {
        Some(profile) => profile.mean_rate(seconds),
        None => config.rate.unwrap_or(SATURATION_SIZING_RATE),
    };
    let expected = (rate * seconds) as u64;
    let mut workload = traffic::workload(&config.workload, expected, base)?;

    let mut setup = connect(config, ClientId(base)).context("connecting for setup")?;
    traffic::load_catalog(&mut setup, &workload.catalog()).context("loading the catalog")?;
    workload
        .prepare(&mut setup)
        .context("preparing the workload")?;
    drop(setup);

    let acks = match &config.ack_log {
        Some(path) => Some(
            AckLog::sampled(path, config.ack_every.max(1))
                .with_context(|| format!("creating {}", path.display()))?,
        ),
        None => None,
    };
    let conns = (0..config.connections)
        .map(|i| connect(config, ClientId(base + 1 + i)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let plan = Plan {
        start: Instant::now() + Duration::from_millis(20),
        warmup_ns: config.warmup.as_nanos() as u64,
        end_ns: (config.warmup + config.duration).as_nanos() as u64,
        drain_ns: DRAIN.as_nanos() as u64,
        pipeline: config.pipeline,
    };
    let progress = Progress::default();
    let mut measured = Measured::new();
    let threads = config
        .threads
        .unwrap_or_else(default_threads)
        .clamp(1, config.connections as usize);
    let mut groups: Vec<Vec<driver::Driver<'_>>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, conn) in conns.into_iter().enumerate() {
        let i = i as u64;
        groups[i as usize % threads].push(driver::Driver {
            conn,
            traffic: workload.traffic(i, config.seed),
            schedule: match &config.rate_profile {
                Some(profile) => Some(Schedule::with_profile(
                    config.spacing,
                    profile.clone(),
                    i,
                    config.connections,
                    config.seed,
                )),
                None => config.rate.map(|rate| {
                    Schedule::new(config.spacing, rate, i, config.connections, config.seed)
                }),
            },
            windows: config.windows.as_deref(),
            client: ClientId(base + 1 + i),
            plan: &plan,
            progress: &progress,
            acks: acks.as_ref(),
            failover: (config.system == System::Surge && config.servers.len() > 1)
                .then(|| Nodes::new(config.servers.clone(), ClientId(base + 1 + i))),
        });
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = groups
            .into_iter()
            .map(|group| {
                scope.spawn(|| {
                    std::thread::sleep(plan.start.saturating_duration_since(Instant::now()));
                    driver::run_group(group)
                })
            })
            .collect();
        if config.progress {
            report_progress(&plan, &progress, config.rate, || {
                workers.iter().all(|w| w.is_finished())
            });
        }
        for worker in workers {
            for m in worker.join().expect("a load thread panicked") {
                measured.merge(m);
            }
        }
    });
    if let Some(acks) = &acks {
        acks.finish().context("writing the ack log")?;
    }
    Ok(run_report(config, workload.name(), measured))
}

/// A quarter of the cores, at least one: the generator should not take the server's.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 4).max(1))
}

/// The report of a run: its configuration, and what it measured.
fn run_report(config: &RunConfig, workload: &str, measured: Measured) -> RunReport {
    let duration_s = config.duration.as_secs_f64();
    RunReport {
        system: config.system.name().into(),
        server: config.servers.join(","),
        workload: workload.into(),
        offered_rate: config.rate,
        spacing: config.spacing,
        achieved_rate: measured.answered_in_window as f64 / duration_s,
        duration_s,
        warmup_s: config.warmup.as_secs_f64(),
        connections: config.connections,
        pipeline: config.pipeline,
        seed: config.seed,
        measured,
    }
}

/// A line a second on stderr while the run goes.
fn report_progress(plan: &Plan, p: &Progress, rate: Option<f64>, done: impl Fn() -> bool) {
    let mut last = (0u64, 0u64);
    let mut tick = plan.start;
    let offered = rate.map_or_else(|| "max".to_string(), |r| format!("{r:.0}/s"));
    while !done() {
        tick += Duration::from_secs(1);
        while Instant::now() < tick {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (sent, answered) = (
            p.sent.load(Ordering::Relaxed),
            p.answered.load(Ordering::Relaxed),
        );
        let t = plan.start.elapsed().as_secs_f64();
        // The phase of the second just ended.
        let mid_ns = (t - 0.5) * 1e9;
        let phase = if mid_ns < plan.warmup_ns as f64 {
            "warm-up"
        } else if mid_ns < plan.end_ns as f64 {
            "measure"
        } else {
            "drain"
        };
        let _ = writeln!(
            std::io::stderr(),
            "{t:6.1}s {phase:7}  offered {offered}  sent {}/s  answered {}/s  in flight {}  max {:.2} ms  refused {}",
            sent - last.0,
            answered - last.1,
            sent - answered,
            p.max_ns.swap(0, Ordering::Relaxed) as f64 / 1e6,
            p.refused.load(Ordering::Relaxed),
        );
        last = (sent, answered);
    }
}
