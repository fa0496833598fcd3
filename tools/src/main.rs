//! `surge`: the one binary. Each subcommand lives in its own module; this file only parses
//! the command line and dispatches.

use clap::{Parser, Subcommand};
use tools::{
    admin_cmd, ctl_cmd, demo, drill, feed_cmd, flash_sale, journal_cmd, loadgen_cmd, node_args,
    replay_cmd, serve_cmd, sink_cmd, standby_cmd, status_cmd,
};

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
    /// A flash sale on a real primary in a temporary directory, a restart from its journal,
    /// and a check that nothing acknowledged was lost. Needs no setup.
    Demo(demo::Args),
    /// Serve the client protocol: gateway, journal, engine, release gate, /metrics.
    Serve(node_args::NodeArgs),
    /// A hot standby of a primary: journals and applies its stream, answers queries.
    Standby(standby_cmd::StandbyArgs),
    /// A pair run through etcd as etcd and its nodes see it: leader, epoch, lease, nodes.
    Status(status_cmd::Args),
    /// Make a standby the primary of a new epoch (POST /admin/promote).
    Promote(admin_cmd::AdminArgs),
    /// Make a primary stop taking writes (POST /admin/fence).
    Fence(admin_cmd::AdminArgs),
    /// The DR drill: a pair under load, the primary stopped, the standby promoted, every
    /// acknowledged answer checked on the new primary, the old one rejoined.
    Drill(drill::Args),
    /// The feed: every event after a sequence, one line each (`--json` for pipelines).
    Feed(feed_cmd::Args),
    /// Keep another system current from the feed: `surge sink postgres`.
    #[command(subcommand)]
    Sink(sink_cmd::SinkCommand),
    /// Talk to a running server: catalog, orders, stock, waitlists.
    Ctl(ctl_cmd::CtlArgs),
    /// Open-loop load against a server, with latency measured from intended send times.
    Loadgen(loadgen_cmd::Args),
    /// Run a generated flash sale through the engine in simulated time and report it.
    FlashSale(flash_sale::Args),
    /// Inspect a journal: verify, dump, stats.
    #[command(subcommand)]
    Journal(journal_cmd::JournalCommand),
    /// Rebuild the state from snapshot + journal and report it (or export it).
    Replay(replay_cmd::ReplayArgs),
    /// Rebuild the state, write a snapshot, and retire the segments it covers.
    Snapshot(replay_cmd::SnapshotArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Commands::Demo(args) => demo::run(args),
        Commands::Serve(args) => serve_cmd::run(args),
        Commands::Standby(args) => standby_cmd::run(args),
        Commands::Status(args) => status_cmd::run(args),
        Commands::Promote(args) => admin_cmd::promote(args),
        Commands::Fence(args) => admin_cmd::fence(args),
        Commands::Drill(args) => drill::run(args),
        Commands::Ctl(args) => {
            let status = ctl_cmd::run(args)?;
            std::process::exit(status)
        }
        Commands::Feed(args) => {
            let status = feed_cmd::run(args)?;
            std::process::exit(status)
        }
        Commands::Sink(command) => {
            let status = sink_cmd::run(command)?;
            std::process::exit(status)
        }
        Commands::Loadgen(args) => {
            let status = loadgen_cmd::run(args)?;
            std::process::exit(status)
        }
        Commands::FlashSale(args) => flash_sale::run(args),
        Commands::Journal(command) => journal_cmd::run(command),
        Commands::Replay(args) => replay_cmd::run(args),
        Commands::Snapshot(args) => replay_cmd::snapshot(args),
    }
}
