//! Print the side-by-side table of a `bench/peers/compare.sh` run: for each system,
//! saturation throughput (closed loop, `--rate max`) and latency at the common offered rate,
//! with surge's ratio to each, and the p99 of payments alone (a write every system must make
//! durable before it answers; a refused order is a write for surge but not for the peers).
//! Reads `NAME-max.json` and `NAME-common.json` (the load
//! generator's `--json` output) from the directory given, for the names given, surge first.
//!
//! ```sh
//! target/release/peer-table target/peers/last surge redis-always redis-everysec postgres
//! ```

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

fn load(dir: &Path, name: &str, mode: &str) -> anyhow::Result<Value> {
    let path = dir.join(format!("{name}-{mode}.json"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn num(v: &Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_f64()
        .unwrap_or(f64::NAN)
}

fn ms(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.0} ms", us / 1e3)
    } else {
        format!("{:.2} ms", us / 1e3)
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 2, "usage: peer-table DIR surge [peer …]");
    let dir = Path::new(&args[0]);
    let names = &args[1..];
    let runs: Vec<(Value, Value)> = names
        .iter()
        .map(|n| Ok((load(dir, n, "max")?, load(dir, n, "common")?)))
        .collect::<anyhow::Result<_>>()?;
    let (surge_max, surge_common) = &runs[0];
    let surge_rate = num(surge_max, &["achieved_rate"]);
    let surge_p99 = num(surge_common, &["latency_us", "p99"]);
    let common = num(surge_common, &["offered_rate"]);
    println!(
        "flash-sale workload, {} connections × pipeline {} for saturation, {} s measured per run; \
         latency from intended send time at {common:.0} req/s offered (Poisson)\n",
        surge_max["connections"], surge_max["pipeline"], surge_max["duration_s"]
    );
    println!(
        "| system | saturation req/s | surge × | p50 @ {common:.0}/s | p99 @ {common:.0}/s | p99.9 @ {common:.0}/s | p99: × surge | payments p99 @ {common:.0}/s | errors at saturation |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (name, (max, at)) in names.iter().zip(&runs) {
        let rate = num(max, &["achieved_rate"]);
        let p99 = num(at, &["latency_us", "p99"]);
        let lost: u64 = ["DISCONNECTED", "UNANSWERED", "SERVER_FAILED", "CLIENT"]
            .iter()
            .filter_map(|k| max["errors"][*k].as_u64())
            .sum();
        println!(
            "| {name} | {} | {:.1}× | {} | {} | {} | {:.1}× | {} | {} |",
            loadgen::report::thousands(rate as u64),
            surge_rate / rate,
            ms(num(at, &["latency_us", "p50"])),
            ms(p99),
            ms(num(at, &["latency_us", "p99.9"])),
            p99 / surge_p99,
            ms(num(at, &["by_kind", "confirm_payment", "p99"])),
            if lost == 0 {
                "none".to_string()
            } else {
                format!("{lost} lost")
            }
        );
    }
    Ok(())
}
