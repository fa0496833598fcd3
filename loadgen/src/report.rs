//! What a load run measured, in the forms people read it: a percentile table for the
//! terminal, JSON for scripts, `.hgrm` files for HdrHistogram's plotters, and an SVG of the
//! latency-by-percentile curve.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::measured::Measured;
use crate::schedule::Spacing;

/// The quantiles every report shows, with their labels.
pub const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

pub struct RunReport {
    pub system: String,
    pub server: String,
    pub workload: String,
    pub offered_rate: Option<f64>,
    pub spacing: Spacing,
    pub achieved_rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: u64,
    pub pipeline: usize,
    pub seed: u64,
    pub measured: Measured,
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

/// `{"p50": µs, …, "max": µs}` for one histogram.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    let mut m = Map::new();
    for (label, q) in QUANTILES {
        m.insert(label.into(), json!(us(h.value_at_quantile(q))));
    }
    m.insert("max".into(), json!(us(h.max())));
    m.insert("count".into(), json!(h.len()));
    Value::Object(m)
}

impl RunReport {
    fn offered(&self) -> String {
        match self.offered_rate {
            Some(r) => format!(
                "{} req/s ({})",
                thousands(r as u64),
                match self.spacing {
                    Spacing::Constant => "constant",
                    Spacing::Poisson => "poisson",
                }
            ),
            None => "max (closed loop)".into(),
        }
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let m = &self.measured;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} on {} at {}: offered {}, {} connections × pipeline {}, {} s after {} s warm-up, seed {}",
            self.workload,
            self.system,
            self.server,
            self.offered(),
            self.connections,
            self.pipeline,
            self.duration_s,
            self.warmup_s,
            self.seed
        );
        let _ = writeln!(
            out,
            "achieved {} req/s   sent {}   answered {}   accepted {}   generator lag max {:.1} ms",
            thousands(self.achieved_rate as u64),
            thousands(m.sent),
            thousands(m.answered),
            thousands(m.accepted),
            m.sender_lag_max_ns as f64 / 1e6
        );
        let p50 = m.overall.value_at_quantile(0.5);
        if !m.overall.is_empty() && m.sender_lag_max_ns > p50 {
            let _ = writeln!(
                out,
                "note: the generator itself sent up to {:.2} ms late, more than the p50 ({:.2} ms): \
                 the latencies below include its lateness, not only the server's",
                m.sender_lag_max_ns as f64 / 1e6,
                p50 as f64 / 1e6
            );
        }
        let _ = writeln!(
            out,
            "\n{:<16} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}   latency µs from intended send",
            "kind", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        );
        let row = |out: &mut String, name: &str, h: &Histogram<u64>| {
            let _ = write!(out, "{name:<16} {:>10}", thousands(h.len()));
            for (_, q) in QUANTILES {
                let _ = write!(out, " {:>9}", fmt_us(h.value_at_quantile(q)));
            }
            let _ = writeln!(out, " {:>9}", fmt_us(h.max()));
        };
        row(&mut out, "all", &m.overall);
        for (kind, h) in &m.by_kind {
            row(&mut out, kind.name(), h);
        }
        if m.errors.is_empty() {
            let _ = writeln!(out, "\nrefused or failed: none");
        } else {
            let _ = write!(out, "\nrefused or failed:");
            for (name, n) in &m.errors {
                let _ = write!(out, "  {name} {}", thousands(*n));
            }
            let _ = writeln!(out);
        }
        for lost in &m.lost_connections {
            let _ = writeln!(out, "connection lost: {lost}");
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let m = &self.measured;
        let by_kind: Map<String, Value> = m
            .by_kind
            .iter()
            .map(|(k, h)| (k.name().to_string(), latency_json(h)))
            .collect();
        json!({
            "system": self.system,
            "server": self.server,
            "workload": self.workload,
            "offered_rate": self.offered_rate,
            "spacing": match self.spacing { Spacing::Constant => "constant", Spacing::Poisson => "poisson" },
            "achieved_rate": self.achieved_rate.round(),
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "connections": self.connections,
            "pipeline": self.pipeline,
            "seed": self.seed,
            "sent": m.sent,
            "answered": m.answered,
            "accepted": m.accepted,
            "sender_lag_max_us": us(m.sender_lag_max_ns),
            "latency_us": latency_json(&m.overall),
            "by_kind": by_kind,
            "errors": m.errors,
            "lost_connections": m.lost_connections,
        })
    }

    /// `PREFIX.hgrm` for all requests and `PREFIX.KIND.hgrm` per kind, in milliseconds.
    pub fn write_hgrm(&self, prefix: &str) -> std::io::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let mut write = |path: PathBuf, h: &Histogram<u64>| -> std::io::Result<()> {
            std::fs::write(&path, hgrm(h))?;
            written.push(path);
            Ok(())
        };
        write(
            PathBuf::from(format!("{prefix}.hgrm")),
            &self.measured.overall,
        )?;
        for (kind, h) in &self.measured.by_kind {
            write(PathBuf::from(format!("{prefix}.{}.hgrm", kind.name())), h)?;
        }
        Ok(written)
    }

    pub fn write_svg(&self, path: &Path) -> std::io::Result<()> {
        let title = format!(
            "{} on {}, offered {}, achieved {} req/s",
            self.workload,
            self.system,
            self.offered(),
            thousands(self.achieved_rate as u64)
        );
        let mut curves = vec![("all".to_string(), &self.measured.overall)];
        curves.extend(
            self.measured
                .by_kind
                .iter()
                .map(|(k, h)| (k.name().to_string(), h)),
        );
        std::fs::write(path, crate::plot::latency_by_percentile(&title, &curves))
    }
}

/// HdrHistogram's percentile distribution text (what `outputPercentileDistribution` writes,
/// values in milliseconds), which its plotters read.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut out = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = ms(h.highest_equivalent(v.value_iterated_to()));
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1e6,
        h.stdev() / 1e6
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        ms(h.max()),
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

fn fmt_us(ns: u64) -> String {
    let us = ns as f64 / 1e3;
    if us < 10.0 {
        format!("{us:.1}")
    } else {
        thousands(us.round() as u64)
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_is_what_hdrhistogram_plotters_read() {
        let mut h = crate::measured::latency_histogram();
        for i in 1..=10_000u64 {
            h.record(i * 1_000).unwrap();
        }
        let text = hgrm(&h);
        let mut lines = text.lines();
        assert!(lines.next().unwrap().trim_start().starts_with("Value"));
        assert_eq!(lines.next(), Some(""));
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(rows.len() > 20);
        assert_eq!(rows.last().unwrap()[1], "1.000000000000");
        assert_eq!(rows.last().unwrap()[2], "10000");
        assert!(rows[..rows.len() - 1].iter().all(|r| r.len() == 4));
        let median: Vec<_> = rows.iter().filter(|r| r[1] == "0.500000000000").collect();
        assert_eq!(median[0][0], "5.001");
        let max = text.lines().find(|l| l.starts_with("#[Max")).unwrap();
        assert_eq!(
            max,
            "#[Max     =       10.002, Total count    =        10000]"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
