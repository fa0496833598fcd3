//! `surge replay --data-dir DIR [--export FILE.jsonl]`: rebuild the state from the newest
//! snapshot and the journal after it; print the sequence, the rolling hash and orders per
//! state; optionally export every SKU and order as JSON lines.
//! `surge snapshot --data-dir DIR`: the same rebuild, then a snapshot file, then retention.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use engine::{Engine, OrderState};
use journal::retention::Retention;
use serde_json::json;

use server::checkpoint::data_dir::DataDir;
use server::checkpoint::replay::Replayed;
use server::ServerError;

use crate::offline::{refuse, DirArgs};

#[derive(clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Write one JSON line per SKU and per order to this file.
    #[arg(long)]
    export: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// What to do with journal segments the snapshot covers: keep, delete, archive (moved
    /// to DIR/archive), or recycle (kept for the writer to reuse; the surplus deleted).
    #[arg(long, default_value = "keep")]
    retention: String,
}

fn rebuild(dir: &DataDir) -> anyhow::Result<Replayed> {
    match dir.replay() {
        Ok(replayed) => {
            for warning in &replayed.warnings {
                eprintln!("warning {warning}");
            }
            Ok(replayed)
        }
        Err(ServerError::Journal { source, .. }) if source.code != journal::ErrorCode::Io => {
            refuse(&source)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let started = std::time::Instant::now();
    let replayed = rebuild(&dir)?;
    let elapsed = started.elapsed();
    let engine = &replayed.engine;
    println!("replayed {}", args.dir.data_dir.display());
    let load_ms = replayed.snapshot_load.as_secs_f64() * 1e3;
    match (replayed.checkpoint, replayed.snapshot_seq) {
        (Some(number), Some(seq)) => {
            println!("  from checkpoint {number} at sequence {seq} (restored in {load_ms:.1} ms)")
        }
        (_, Some(seq)) => {
            println!("  from snapshot  at sequence {seq} (loaded in {load_ms:.1} ms)")
        }
        (_, None) => println!("  from snapshot  none (full replay)"),
    }
    println!(
        "  records        {} in {:.1} ms",
        replayed.records_replayed,
        elapsed.as_secs_f64() * 1e3
    );
    println!("  sequence       {}", replayed.last_seq);
    println!("  rolling hash   {:016x}", engine.hash());
    for (state, count) in orders_by_state(engine) {
        println!("  orders {:<16}{count}", state.name());
    }
    let placed = engine.orders().next_id().0 - 1;
    let (held, retired) = (engine.orders().len(), engine.retired().len());
    println!("  orders held    {held} (open, or closed and not yet retired)");
    println!(
        "  orders retired {retired} remembered, {} beyond history",
        placed - held - retired
    );
    engine
        .check_invariants()
        .map_err(anyhow::Error::msg)
        .context("the rebuilt state breaks an invariant")?;
    println!("  invariants     hold");
    if let Some(path) = args.export {
        let lines = export(engine, &path)?;
        println!("  exported       {lines} lines to {}", path.display());
    }
    Ok(())
}

pub fn snapshot(args: SnapshotArgs) -> anyhow::Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let retention = match args.retention.as_str() {
        "keep" => Retention::Keep,
        "delete" => Retention::Delete,
        "archive" => Retention::Archive(args.dir.data_dir.join("archive")),
        "recycle" => Retention::Recycle,
        other => anyhow::bail!("--retention {other:?}: use keep, delete, archive or recycle"),
    };
    let replayed = rebuild(&dir)?;
    let started = std::time::Instant::now();
    let (name, retired) = dir.write_snapshot(&replayed.engine, replayed.last_seq, &retention)?;
    println!(
        "snapshot {name} at sequence {} written in {:.1} ms; {} segment(s) retired",
        replayed.last_seq,
        started.elapsed().as_secs_f64() * 1e3,
        retired.len()
    );
    Ok(())
}

fn orders_by_state(engine: &Engine) -> Vec<(OrderState, u64)> {
    OrderState::ALL
        .iter()
        .map(|&state| {
            let held = engine.orders().iter().filter(|o| o.state == state).count();
            let retired = engine.retired().iter().filter(|r| r.state == state).count();
            (state, (held + retired) as u64)
        })
        .collect()
}

fn export(engine: &Engine, path: &PathBuf) -> anyhow::Result<u64> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let mut lines = 0;
    for sku in engine.catalog().iter() {
        let line = json!({
            "type": "sku", "sku": sku.id.0, "stocked": sku.stocked, "available": sku.available,
            "reserved": sku.reserved, "sold": sku.sold,
        });
        writeln!(out, "{line}")?;
        lines += 1;
    }
    // Retired orders first (they are older), then those held in full; each once.
    for r in engine.retired().iter() {
        let line = json!({
            "type": "order", "order_id": r.id.0, "client_id": r.client.0,
            "request_id": r.request.0, "user": r.user.0, "state": r.state.name(),
            "total": r.total, "retired": true, "line_count": r.line_count,
            "lines": [{"sku": r.first_sku.0, "qty": r.first_qty}], "closed_ns": r.closed_ns,
        });
        writeln!(out, "{line}")?;
        lines += 1;
    }
    for order in engine.orders().iter() {
        let order_lines: Vec<_> = order
            .lines
            .as_slice()
            .iter()
            .map(|l| json!({"sku": l.sku.0, "qty": l.qty}))
            .collect();
        let line = json!({
            "type": "order", "order_id": order.id.0, "client_id": order.client.0,
            "request_id": order.request.0, "user": order.user.0, "state": order.state.name(),
            "lines": order_lines, "total": order.total,
        });
        writeln!(out, "{line}")?;
        lines += 1;
    }
    out.flush()?;
    Ok(lines)
}
