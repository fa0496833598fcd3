//! `surge flash-sale`: thousands of buyers rush one hot SKU; most pay, some fail, cancel or
//! walk away (their orders expire); buyers who find it sold out join the waitlist and are
//! handed released units in order. Runs in-process in simulated time, checks the stock
//! invariant, and prints what happened.

use std::time::Instant;

use anyhow::{ensure, Context};
use engine::{Answer, Engine, EngineConfig, Query};
use loadgen::{FlashSale, Simulation};

use server::checkpoint::data_dir::DataDir;

const MS: u64 = 1_000_000;

#[derive(clap::Args)]
pub struct Args {
    /// Buyers who arrive during the sale.
    #[arg(long, default_value_t = 20_000)]
    buyers: u64,
    /// Units of the hot SKU.
    #[arg(long, default_value_t = 2_000)]
    stock: u64,
    /// Most units one buyer may hold.
    #[arg(long, default_value_t = 2)]
    per_user_limit: u32,
    /// Time from order to payment deadline, in (simulated) milliseconds.
    #[arg(long, default_value_t = 2_000)]
    payment_window_ms: u64,
    /// Buyers arrive over this many (simulated) milliseconds.
    #[arg(long, default_value_t = 5_000)]
    arrivals_over_ms: u64,
    /// Seed for the buyers' choices; the same seed gives the same sale.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also journal every sequenced request to this data directory (which must not hold a
    /// journal yet), group-committing as a server would, with a snapshot half way through.
    /// `surge replay --data-dir` then rebuilds the same state.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Requests per group commit when journaling.
    #[arg(long, default_value_t = 256)]
    commit_every: usize,
    /// Journal write path: auto (io_uring when allowed), io_uring, pwritev2.
    #[arg(long, default_value = "auto")]
    io: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.buyers > 0, "--buyers must be at least 1");
    ensure!(
        args.payment_window_ms > 0,
        "--payment-window-ms must be at least 1"
    );
    let sale = FlashSale {
        stock: args.stock,
        per_user_limit: args.per_user_limit,
        buyers: args.buyers,
        arrivals_over_ns: args.arrivals_over_ms * MS,
        ..FlashSale::default()
    };
    let config = EngineConfig {
        payment_window_ns: args.payment_window_ms * MS,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config);
    let started = Instant::now();
    let simulation = Simulation::new(&sale, &mut engine, args.seed);
    let (report, recording) = match args.data_dir {
        Some(_) => simulation.record().run(),
        None => simulation.run(),
    };
    let elapsed = started.elapsed();
    engine
        .check_invariants()
        .map_err(anyhow::Error::msg)
        .context("the engine's invariants do not hold after the sale")?;
    let Answer::Stock(stock) = engine.query(&Query::Stock { sku: sale.hot_sku }) else {
        anyhow::bail!("the hot SKU vanished");
    };

    println!("surge flash sale (seed {}, simulated time)", args.seed);
    println!(
        "  hot SKU {}: {} units at {}.{:02}, limit {} per buyer; {} buyers over {} ms",
        sale.hot_sku,
        sale.stock,
        sale.price / 100,
        sale.price % 100,
        sale.per_user_limit,
        report.buyers,
        args.arrivals_over_ms
    );
    println!("  orders placed         {:>8}", report.orders_placed);
    println!("  waitlist joined       {:>8}", report.waitlist_joined);
    println!(
        "  waitlist served       {:>8}  (released units handed to the head of the list)",
        report.waitlist_served
    );
    println!(
        "  waitlist dropped      {:>8}  (wanted more than could still come back)",
        report.waitlist_dropped
    );
    println!("  paid                  {:>8}", report.paid);
    println!("  payment failed        {:>8}", report.payment_failed);
    println!("  cancelled             {:>8}", report.cancelled);
    println!("  expired unpaid        {:>8}", report.expired);
    if !report.rejected.is_empty() {
        println!("  rejections by code");
    }
    for (code, count) in &report.rejected {
        println!("    {:<28}{:>6}", code.to_string(), count);
    }
    match report.sold_out_at_ns {
        Some(at) => println!("  sold out at           {:>8} ms", at / MS),
        None => println!("  sold out at                  -  (units left unsold)"),
    }
    println!(
        "  final stock           stocked {} = available {} + reserved {} + sold {}",
        stock.stocked, stock.available, stock.reserved, stock.sold
    );
    println!(
        "  invariants            hold after {} commands",
        engine.commands_applied()
    );
    println!("  rolling hash          {:016x}", engine.hash());
    println!(
        "  engine time           {:.1} ms wall for {} requests ({:.2} M requests/s incl. the simulation)",
        elapsed.as_secs_f64() * 1e3,
        report.requests,
        report.requests as f64 / elapsed.as_secs_f64() / 1e6
    );
    if let (Some(dir), Some(recording)) = (&args.data_dir, recording) {
        ensure!(args.commit_every > 0, "--commit-every must be at least 1");
        let io = args.io.parse().map_err(anyhow::Error::msg)?;
        journal_sale(
            dir,
            io,
            config,
            &recording,
            args.commit_every,
            engine.hash(),
        )?;
    }
    Ok(())
}

/// Journal a recorded sale as a server would (group commits), applying each request to an
/// engine of its own and snapshotting it half way; check it ends with the same hash.
fn journal_sale(
    root: &std::path::Path,
    io: journal::IoMode,
    config: EngineConfig,
    recording: &loadgen::Recording,
    commit_every: usize,
    expected_hash: u64,
) -> anyhow::Result<()> {
    let dir = DataDir::new(root);
    let (mut journaler, write_path) =
        dir.journaler(io, &config, journal::writer::SEGMENT_LEN_DEFAULT, 1)?;
    ensure!(
        journaler.next_seq() == 2,
        "{} already holds a journal; use an empty directory",
        root.display()
    );
    let requests: Vec<_> = recording.setup.iter().chain(&recording.stream).collect();
    let mut engine = Engine::new(config);
    let mut out = engine::Output::default();
    let started = Instant::now();
    let mut commits = 0u64;
    let mut snapshot = None;
    for (i, (now_ns, request)) in requests.iter().enumerate() {
        let seq = journaler.append(*now_ns, request)?;
        engine.apply(*now_ns, request, &mut out);
        if (i + 1) % commit_every == 0 || i + 1 == requests.len() {
            journaler.commit()?;
            commits += 1;
        }
        if i + 1 == requests.len() / 2 {
            journaler.commit()?;
            let retention = journal::retention::Retention::Keep;
            snapshot = Some((dir.write_snapshot(&engine, seq, &retention)?.0, seq));
        }
    }
    let elapsed = started.elapsed();
    ensure!(
        engine.hash() == expected_hash,
        "the journaled engine diverged from the sale"
    );
    println!("journal                {}", dir.journal_dir().display());
    println!("  write path           {write_path}");
    println!(
        "  records              {} in {commits} group commits, {:.1} ms ({:.0} durable records/s)",
        requests.len() + 1,
        elapsed.as_secs_f64() * 1e3,
        requests.len() as f64 / elapsed.as_secs_f64()
    );
    if let Some((name, seq)) = snapshot {
        println!("  snapshot             {name} (sequence {seq})");
    }
    Ok(())
}
