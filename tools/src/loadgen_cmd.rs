//! `surge loadgen`: open-loop load against a running server (or, for comparison, Redis or
//! PostgreSQL), with honest latency: measured from each request's intended send time.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use loadgen::open_loop::{self, RunConfig, Spacing, System};
use loadgen::report::RunReport;
use loadgen::schedule::RateProfile;

#[derive(clap::Args)]
pub struct Args {
    /// Server addresses, comma-separated; the run uses the first that answers.
    #[arg(long, default_value = "127.0.0.1:7600", value_delimiter = ',')]
    server: Vec<String>,
    /// What is listening there: surge, redis or postgres (the peers of bench/peers).
    #[arg(long, default_value = "surge")]
    system: String,
    /// flash-sale, mixed or reconcile.
    #[arg(long, default_value = "flash-sale")]
    workload: String,
    /// Requests per second offered, or `max` for closed-loop saturation.
    #[arg(long, default_value = "10000")]
    rate: String,
    /// A rate that changes over the run instead: `SECONDS:RATE,…`, straight lines between
    /// the points (e.g. `0:20000,300:120000,600:30000`).
    #[arg(long)]
    rate_profile: Option<String>,
    /// How arrivals are spaced: poisson or constant.
    #[arg(long, default_value = "poisson")]
    spacing: String,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value_t = 4)]
    connections: u64,
    /// Most requests one connection has unanswered; when full, due requests wait (and their
    /// latency counts the wait).
    #[arg(long, default_value_t = 1024)]
    pipeline: usize,
    /// Seed for the workload and the arrival times.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write PREFIX.hgrm (all requests) and PREFIX.KIND.hgrm, HdrHistogram's percentile format.
    #[arg(long)]
    hgrm: Option<String>,
    /// Write the latency-by-percentile curve as SVG here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write one JSON line per accepted answer here.
    #[arg(long)]
    ack_log: Option<PathBuf>,
    /// Log the answers of one order in N (by order id) instead of all: a long run's ack log
    /// stays small and each sampled order's answers are all there.
    #[arg(long, default_value_t = 1)]
    ack_every: u64,
    /// Threads that drive the connections (default: a quarter of the cores, at least one),
    /// each sleeping in one poll over its connections until the next request is due.
    #[arg(long)]
    threads: Option<usize>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

fn seconds(s: f64, flag: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        s.is_finite() && s >= 0.0,
        "{flag} must be a number of seconds"
    );
    Ok(Duration::from_secs_f64(s))
}

pub fn config(args: &Args) -> anyhow::Result<RunConfig> {
    let rate = match args.rate.as_str() {
        "max" => None,
        n => Some(
            n.parse::<f64>()
                .ok()
                .filter(|r| *r > 0.0 && r.is_finite())
                .with_context(|| format!("--rate must be a positive number or max, not {n:?}"))?,
        ),
    };
    let spacing = match args.spacing.as_str() {
        "poisson" => Spacing::Poisson,
        "constant" => Spacing::Constant,
        other => anyhow::bail!("--spacing must be poisson or constant, not {other:?}"),
    };
    let duration = seconds(args.duration, "--duration")?;
    anyhow::ensure!(!duration.is_zero(), "--duration must be more than 0");
    Ok(RunConfig {
        system: System::parse(&args.system)?,
        servers: args.server.clone(),
        workload: args.workload.clone(),
        rate,
        spacing,
        duration,
        warmup: seconds(args.warmup, "--warmup")?,
        connections: args.connections,
        pipeline: args.pipeline,
        seed: args.seed,
        ack_log: args.ack_log.clone(),
        progress: !args.quiet,
        id_base: None,
        rate_profile: match &args.rate_profile {
            Some(text) => Some(std::sync::Arc::new(
                RateProfile::parse(text).map_err(|e| anyhow::anyhow!("--rate-profile: {e}"))?,
            )),
            None => None,
        },
        ack_every: args.ack_every.max(1),
        windows: None,
        threads: match args.threads {
            Some(0) => anyhow::bail!("--threads must be at least 1"),
            other => other,
        },
    })
}

/// Write the report wherever the flags asked.
pub fn write_outputs(args: &Args, report: &RunReport) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(prefix) = &args.hgrm {
        report.write_hgrm(prefix).context("writing .hgrm files")?;
    }
    if let Some(path) = &args.plot {
        report
            .write_svg(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Exit status: 0, or 1 when a connection was lost.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let config = config(&args)?;
    let report = open_loop::run(&config)?;
    print!("{}", report.table());
    write_outputs(&args, &report)?;
    Ok(if report.measured.lost_connections.is_empty() {
        0
    } else {
        1
    })
}
