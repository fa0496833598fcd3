//! `sim`: run the simulator on one seed, or on a range of seeds.
//!
//! ```text
//! sim --seed 42                      one seed; its report if it fails (or with --verbose)
//! sim --seeds 1..200                 a range; one line per seed, a summary at the end
//! sim --seeds 1..200 --seconds 60    longer runs (seconds of faults per seed)
//! sim --seed 7 --faults kill,pause   only these kinds of fault
//! sim --seeds 1..50 --json out.json  the figures as JSON
//! ```
//!
//! Exit status 1 if any seed broke an invariant.

use std::time::Instant;

use sim::faults::{self, Kind};
use sim::{Options, World};

struct Args {
    seeds: std::ops::Range<u64>,
    seconds: Option<u64>,
    nodes: Option<usize>,
    faults: Option<Vec<Kind>>,
    verbose: bool,
    json: Option<String>,
}

fn usage(why: &str) -> ! {
    eprintln!(
        "sim: {why}\nusage: sim (--seed N | --seeds A..B) [--seconds S] [--nodes 2|3] \
         [--faults kind,kind] [--verbose] [--json FILE]\nkinds: {}",
        faults::ALL.map(|k| k.name()).join(", ")
    );
    std::process::exit(2);
}

fn parse() -> Args {
    let mut args = Args {
        seeds: 1..2,
        seconds: None,
        nodes: None,
        faults: None,
        verbose: false,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--seed" => {
                let n: u64 = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--seed takes a number"));
                args.seeds = n..n + 1;
            }
            "--seeds" => {
                let v = value();
                let (a, b) = v.split_once("..").unwrap_or_else(|| usage("--seeds A..B"));
                let a: u64 = a.parse().unwrap_or_else(|_| usage("--seeds A..B"));
                let b: u64 = b.parse().unwrap_or_else(|_| usage("--seeds A..B"));
                args.seeds = a..b;
            }
            "--seconds" => {
                args.seconds = Some(value().parse().unwrap_or_else(|_| usage("--seconds S")))
            }
            "--nodes" => {
                args.nodes = Some(value().parse().unwrap_or_else(|_| usage("--nodes 2|3")))
            }
            "--faults" => {
                let kinds = value()
                    .split(',')
                    .map(|k| {
                        Kind::parse(k).unwrap_or_else(|| usage(&format!("no fault kind {k:?}")))
                    })
                    .collect();
                args.faults = Some(kinds);
            }
            "--verbose" => args.verbose = true,
            "--json" => args.json = Some(value()),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    args
}

fn main() {
    let args = parse();
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut simulated_ns = 0u64;
    let mut kinds = std::collections::BTreeMap::<&'static str, u64>::new();
    let count = args.seeds.end - args.seeds.start;
    for seed in args.seeds.clone() {
        let mut options = Options::for_seed(seed);
        if let Some(s) = args.seconds {
            options.seconds = s;
        }
        if let Some(n) = args.nodes {
            options.nodes = n;
        }
        if let Some(f) = &args.faults {
            options.faults = f.clone();
        }
        let one = Instant::now();
        let report = World::new(options).run();
        simulated_ns += report.sim_ns;
        for (k, n) in &report.fault_kinds {
            *kinds.entry(k).or_default() += n;
        }
        let verdict = if report.passed() { "ok" } else { "FAILED" };
        say(&format!(
            "seed {seed}: {verdict} ({} nodes, {} faults, {} acknowledged, {} starts, {:.1} s simulated in {:.2} s)",
            report.nodes,
            report.faults.len(),
            report.acks,
            report.starts,
            report.sim_ns as f64 / 1e9,
            one.elapsed().as_secs_f64()
        ));
        if !report.passed() || args.verbose {
            say(&report.describe(25));
        }
        if !report.passed() {
            failed.push(seed);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    say(&format!(
        "{count} seed(s), {} failed {failed:?}; {:.1} simulated s in {wall:.1} wall s ({:.1}x); {:.1} seeds/min; fault kinds: {kinds:?}",
        failed.len(),
        simulated_ns as f64 / 1e9,
        simulated_ns as f64 / 1e9 / wall,
        count as f64 * 60.0 / wall
    ));
    if let Some(path) = args.json {
        let json = serde_json::json!({
            "seeds": count,
            "failed": failed,
            "simulated_seconds": simulated_ns as f64 / 1e9,
            "wall_seconds": wall,
            "simulated_per_wall": simulated_ns as f64 / 1e9 / wall,
            "seeds_per_minute": count as f64 * 60.0 / wall,
            "fault_kinds": kinds,
        });
        if let Err(e) = std::fs::write(&path, json.to_string()) {
            eprintln!("sim: writing {path}: {e}");
        }
    }
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

/// One line (or block) to standard output. Output closed (`sim --seeds 1..1000 | head`): stop
/// at once, as a tool killed by SIGPIPE would (Rust ignores the signal), not run on unheard.
fn say(text: &str) {
    use std::io::Write;
    if writeln!(std::io::stdout().lock(), "{text}").is_err() {
        std::process::exit(141);
    }
}
