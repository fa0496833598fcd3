//! `surge journal verify|dump|stats --data-dir DIR`: look inside a journal without starting
//! anything. `verify` exits non-zero with the error's code when the journal is corrupt.

use anyhow::Context;
use engine::codec::{self, kind};
use journal::ScanReport;
use server::checkpoint::data_dir::DataDir;

use crate::offline::{refuse, DirArgs};

#[derive(clap::Subcommand)]
pub enum JournalCommand {
    /// Check every record's checksum and sequence; exit 2 and name the place if corrupt.
    Verify(DirArgs),
    /// One line per record.
    Dump {
        #[command(flatten)]
        dir: DirArgs,
        /// First sequence to show.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Records to show at most.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Segments, records, bytes, sequence range.
    Stats(DirArgs),
}

pub fn run(command: JournalCommand) -> anyhow::Result<()> {
    match command {
        JournalCommand::Verify(args) => verify(args),
        JournalCommand::Dump { dir, from, limit } => dump(dir, from, limit),
        JournalCommand::Stats(args) => stats(args),
    }
}

fn scan(
    args: &DirArgs,
    visit: impl FnMut(&journal::Record<'_>, &journal::Location),
) -> anyhow::Result<ScanReport> {
    let storage = DataDir::new(&args.data_dir).journal(journal::IoMode::Pwritev2)?;
    match journal::scan(&storage, visit) {
        Ok(report) => Ok(report),
        Err(e) if e.code == journal::ErrorCode::Io => Err(e).context("reading the journal"),
        Err(e) => refuse(&e),
    }
}

fn verify(args: DirArgs) -> anyhow::Result<()> {
    let report = scan(&args, |_, _| {})?;
    println!(
        "journal {} is clean",
        args.data_dir.join("journal").display()
    );
    print_totals(&report);
    if let Some(torn) = &report.torn_tail {
        println!(
            "note {}: a torn record at the tail (never acknowledged) will be cut at the next \
             start: segment {}, offset {}, sequence {}",
            journal::ErrorCode::TailTruncated,
            torn.location.segment,
            torn.location.offset,
            torn.location.sequence
        );
    }
    Ok(())
}

fn print_totals(report: &ScanReport) {
    println!("  segments  {}", report.segments.len());
    println!("  records   {}", report.records);
    println!("  bytes     {} in records", report.record_bytes);
    match (report.first_seq, report.last_seq) {
        (Some(first), Some(last)) => println!("  sequences {first}..={last}"),
        _ => println!("  sequences none"),
    }
}

fn dump(args: DirArgs, from: u64, limit: Option<u64>) -> anyhow::Result<()> {
    let mut shown = 0u64;
    let limit = limit.unwrap_or(u64::MAX);
    scan(&args, |record, at| {
        if record.seq < from || shown >= limit {
            return;
        }
        shown += 1;
        let body = match record.kind {
            kind::ENGINE_CONFIG => codec::decode_config(record.payload).map(|c| format!("{c:?}")),
            _ => codec::decode_request(record.payload)
                .map(|r| format!("client={} request={} {:?}", r.client, r.request, r.command)),
        }
        .unwrap_or_else(|e| format!("<{e}>"));
        println!(
            "seq={} ts={} kind={} bytes={} at={}:{} {}",
            record.seq,
            record.timestamp_ns,
            codec::kind_name(record.kind),
            record.payload.len(),
            at.segment,
            at.offset,
            body
        );
    })?;
    Ok(())
}

fn stats(args: DirArgs) -> anyhow::Result<()> {
    let report = scan(&args, |_, _| {})?;
    for segment in &report.segments {
        println!(
            "{}  first {}  records {}  used {} of {} bytes",
            segment.name,
            segment.first_seq,
            segment.records,
            segment.end_offset,
            segment.segment_len
        );
    }
    print_totals(&report);
    Ok(())
}
