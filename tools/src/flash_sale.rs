//! `surge flash-sale`: thousands of buyers rush one hot SKU; most pay, some fail, cancel or
//! walk away (their orders expire); buyers who find it sold out join the waitlist and are
//! handed released units in order. Runs in-process in simulated time, checks the stock
//! invariant, and prints what happened.

use std::time::Instant;

use anyhow::{ensure, Context};
use engine::{Answer, Engine, EngineConfig, Query};
use loadgen::{FlashSale, Simulation};

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
    let mut engine = Engine::new(EngineConfig {
        payment_window_ns: args.payment_window_ms * MS,
        ..EngineConfig::default()
    });
    let started = Instant::now();
    let (report, _) = Simulation::new(&sale, &mut engine, args.seed).run();
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
    Ok(())
}
