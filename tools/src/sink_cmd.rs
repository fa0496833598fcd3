//! `surge sink postgres --server FEED_ADDR --dsn DSN`: keep an order-history database
//! current from the feed. Creates the schema when it is missing, resumes after the position
//! stored with the rows, applies the feed in batched transactions (each one moving the
//! position), and after a lost connection to either side waits and resumes, exactly once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use engine::feed::FeedItem;

use crate::feed_client::{FeedRefused, Subscription};
use crate::order_history::{self, Batch};

#[derive(clap::Subcommand)]
pub enum SinkCommand {
    /// The order history in PostgreSQL (deploy/postgres/order-history.sql).
    Postgres(PostgresArgs),
}

#[derive(clap::Args)]
pub struct PostgresArgs {
    /// Feed ports to read from, comma-separated (a standby's first keeps the primary's
    /// hot path free); the sink moves to the next when one is lost.
    #[arg(long, value_delimiter = ',', required = true)]
    server: Vec<SocketAddr>,
    /// PostgreSQL connection string, e.g. `host=/run/postgresql dbname=shop user=surge`.
    #[arg(long, env = "SURGE_SINK_DSN")]
    dsn: String,
    /// Commit once a batch holds this many events...
    #[arg(long, default_value_t = 20_000)]
    batch_events: u64,
    /// ...or is this old.
    #[arg(long, default_value_t = 200)]
    batch_ms: u64,
    /// Stop once caught up with the feed's head (a backfill), instead of following.
    #[arg(long)]
    until_caught_up: bool,
}

/// Codes the sink exits with.
const EXIT_TRUNCATED: i32 = 3;
/// No frame for this long from a following subscription: the connection is gone.
const SILENCE: Duration = Duration::from_secs(10);
/// How long to wait before reconnecting after a lost connection.
const RETRY: Duration = Duration::from_millis(500);

pub fn run(command: SinkCommand) -> anyhow::Result<i32> {
    let SinkCommand::Postgres(args) = command;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let mut server = 0;
    // Nodes in a row whose feed no longer reaches back to the database's position.
    let mut truncated = 0;
    while !stop.load(Ordering::SeqCst) {
        match sink_once(&args, args.server[server], &stop) {
            Ok(Done::CaughtUp) => return Ok(0),
            Ok(Done::Stopped) => break,
            Err(e) => {
                if let Some(refused) = e.downcast_ref::<FeedRefused>() {
                    truncated += refused.begins_after.is_some() as usize;
                    // Another node's feed may reach back further: ask each before giving up.
                    if refused.begins_after.is_some() && truncated >= args.server.len() {
                        eprintln!(
                            "surge sink: {refused}\nhint: the database is behind what the feed \
                             still holds; rebuild it from `surge replay --export`, or point the \
                             sink at a node whose feed reaches back further"
                        );
                        return Ok(EXIT_TRUNCATED);
                    }
                }
                if e.downcast_ref::<FeedRefused>()
                    .is_none_or(|r| r.begins_after.is_none())
                {
                    truncated = 0;
                }
                eprintln!("surge sink: {e:#}; retrying");
                server = (server + 1) % args.server.len();
                std::thread::sleep(RETRY);
            }
        }
    }
    Ok(0)
}

enum Done {
    CaughtUp,
    Stopped,
}

/// Connect to both sides and apply the feed until something is lost (`Err`) or we are told
/// to stop.
fn sink_once(args: &PostgresArgs, feed: SocketAddr, stop: &AtomicBool) -> anyhow::Result<Done> {
    let mut db = postgres::Client::connect(&args.dsn, postgres::NoTls)
        .context("connecting to PostgreSQL")?;
    db.batch_execute(order_history::SCHEMA)
        .context("creating the order-history tables")?;
    let (after, events) = order_history::position(&mut db)?;
    let mut sub = Subscription::open(feed, after, !args.until_caught_up)?;
    // A following subscription gets a frame every second at least (heartbeats): silence
    // this long is a lost connection.
    sub.set_timeout(Some(SILENCE))?;
    eprintln!(
        "surge sink: from {feed} after seq {after} ({events} events applied so far); feed head {}",
        sub.begin.head
    );
    let mut position = after;
    let mut batch = Batch::default();
    // Events of a sequence whose last events have not come yet (a frame's `through` stops
    // short of it): a transaction takes whole sequences only.
    let mut waiting: Vec<FeedItem> = Vec::new();
    let mut started = Instant::now();
    let (mut applied, mut rows, since) = (0u64, 0u64, Instant::now());
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(Done::Stopped); // what was not committed comes again next time
        }
        let ended = match sub.next_frame()? {
            Some(frame) => {
                waiting.extend(frame.items);
                let whole = waiting.partition_point(|i| i.seq <= frame.through);
                for item in waiting.drain(..whole) {
                    batch.add(&item);
                }
                batch.through = frame.through;
                false
            }
            // The subscription ends at the head it began with; anything short of that is a
            // lost connection.
            None if args.until_caught_up && batch.through.max(position) >= sub.begin.head => true,
            None if args.until_caught_up => {
                anyhow::bail!("the feed port at {feed} closed before the head it named")
            }
            None => anyhow::bail!("the feed port at {feed} ended the subscription"),
        };
        let due = batch.events >= args.batch_events
            || started.elapsed() >= Duration::from_millis(args.batch_ms)
            || ended;
        if due && batch.through > position {
            batch.commit(&mut db)?;
            position = batch.through;
            rows += batch.rows();
            applied += batch.events;
            batch = Batch::default();
            started = Instant::now();
        }
        if ended {
            let secs = since.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "surge sink: caught up through seq {position}: {applied} events, {rows} rows in \
                 {secs:.1} s ({:.0} rows/s)",
                rows as f64 / secs
            );
            return Ok(Done::CaughtUp);
        }
    }
}
