//! `surge`: the one binary. Each subcommand lives in its own module; this file only parses
//! the command line and dispatches.

mod flash_sale;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "surge",
    version,
    about = "An in-memory order engine for flash sales"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run a generated flash sale through the engine in simulated time and report it.
    FlashSale(flash_sale::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Commands::FlashSale(args) => flash_sale::run(args),
    }
}
