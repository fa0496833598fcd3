//! `surge demo`: surge doing its job, start to finish, with nothing to set up. A primary and
//! a hot standby start on loopback in a temporary directory; the load generator loads a
//! catalog and runs a short flash sale against them (one hot SKU, a crowd, waitlists,
//! payments, expiries); halfway through, the primary is killed (SIGKILL) and the standby
//! promoted, and the load generator moves over by itself; the new primary checkpoints its
//! serving engine while it serves and retires closed orders; it is stopped and restarted from
//! its newest checkpoint chain and the journal after it; every answer the load generator was given, before and after the
//! failover, is checked against the rebuilt state. A feed consumer follows the standby's feed
//! into a file throughout, and every acknowledged order change must be in it. A short report
//! says what happened.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use engine::wire::{Operation, Reply};
use engine::{Answer, ClientId, Query, SkuId};
use loadgen::client::Client;
use loadgen::open_loop::{self, RunConfig, Spacing, System};
use loadgen::report::thousands;

use crate::acked::{stock_of, verify};
use crate::feed_client::Subscription;
use crate::serve_process::{log_field, ServeProcess};
use engine::feed::FeedEvent;

#[derive(clap::Args)]
pub struct Args {
    /// Requests per second the crowd offers.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Seconds the sale runs (after a one-second warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    #[arg(long, default_value_t = 4)]
    connections: u64,
    /// Keep the data directory (and the ack log) instead of removing it.
    #[arg(long)]
    keep: bool,
}

/// Orders unpaid this long expire, so the sale shows expiries and waitlist hand-offs.
const PAYMENT_WINDOW_MS: u64 = 2_000;
/// A checkpoint every this many records, so a short sale shows a few and the restart uses
/// one.
const CHECKPOINT_EVERY_RECORDS: u64 = 5_000;
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The admin token the demo's nodes take (loopback only).
const TOKEN: &str = "demo";

/// A directory removed on drop (unless kept).
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.rate > 0.0 && args.duration > 0.0,
        "--rate and --duration must be positive"
    );
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let dir = TempDir {
        path: std::env::temp_dir().join(format!("surge-demo-{}-{stamp}", std::process::id())),
        keep: args.keep,
    };
    std::fs::create_dir_all(&dir.path)?;
    let (data_a, data_b) = (dir.path.join("a"), dir.path.join("b"));
    let acks = dir.path.join("acks.jsonl");
    let exe = std::env::current_exe().context("finding the surge binary")?;
    let payment_window = format!("engine.payment_window_ms={PAYMENT_WINDOW_MS}");
    let checkpoint_every = format!("checkpoint.every_records={CHECKPOINT_EVERY_RECORDS}");
    let admin = format!("admin.token={TOKEN}");
    let sets = [
        payment_window.as_str(),
        checkpoint_every.as_str(),
        "replication.listen=127.0.0.1:0",
        "replication.secret=demo",
        "feed.listen=\"127.0.0.1:0\"",
        admin.as_str(),
    ];

    println!(
        "surge demo: a flash sale against a primary and its hot standby, the primary killed \
         halfway and the standby promoted, then a restart from the journal\n"
    );
    let mut primary = ServeProcess::start(&exe, &data_a, &sets)?;
    let serving = primary.log_line("serving").unwrap_or_default();
    println!(
        "  primary    {} (journal io={}, wait={}), data in {}",
        primary.addr,
        log_field(&serving, "io").unwrap_or_default(),
        log_field(&serving, "wait").unwrap_or_default(),
        data_a.display()
    );
    let standby = ServeProcess::start_standby(
        &exe,
        &data_b,
        primary
            .replication
            .context("the primary's replication port")?,
        &sets,
    )?;
    wait_streaming(&primary)?;
    println!(
        "  standby    {} streaming from the primary; an answer leaves only once both have synced it",
        standby.addr
    );

    // Ids from the clock, as the load generator would pick; known here so the stock can be
    // watched while the sale runs.
    let base = (stamp % (1 << 40)) << 14;
    let sku = SkuId(base + 1);
    let config = RunConfig {
        system: System::Surge,
        servers: vec![primary.addr.to_string(), standby.addr.to_string()],
        workload: "flash-sale".into(),
        rate: Some(args.rate),
        spacing: Spacing::Poisson,
        duration: Duration::from_secs_f64(args.duration),
        warmup: Duration::from_secs(1),
        connections: args.connections,
        pipeline: 1024,
        seed: 1,
        ack_log: Some(acks.clone()),
        progress: false,
        id_base: Some(base),
        ..RunConfig::default()
    };
    println!(
        "  sale       {} s of a crowd offering {} requests/s (Poisson) on {} connections; \
         unpaid orders expire after {} s",
        args.duration + 1.0,
        thousands(args.rate as u64),
        args.connections,
        PAYMENT_WINDOW_MS / 1000
    );
    let done = AtomicBool::new(false);
    let feed_path = dir.path.join("feed.jsonl");
    let feed_until = AtomicU64::new(u64::MAX);
    let standby_feed = standby.feed.context("the standby's feed port")?;
    let (report, sold_out, promoted, followed) = std::thread::scope(|scope| {
        let follower = scope.spawn(|| follow_feed(standby_feed, &feed_path, &feed_until));
        let watcher =
            scope.spawn(|| watch_sold_out(standby.addr, ClientId(base + 9_999), sku, &done));
        let sale = scope.spawn(|| open_loop::run(&config));
        // Halfway: the primary dies, the standby takes over.
        std::thread::sleep(Duration::from_secs_f64(1.0 + args.duration / 2.0));
        primary.signal(libc::SIGKILL);
        let promoted =
            crate::admin_client::post(&standby.http.to_string(), "/admin/promote", TOKEN);
        let report = sale.join().expect("sale");
        done.store(true, Ordering::Relaxed);
        // Closed orders retire a second after closing: the feed follows until then.
        std::thread::sleep(Duration::from_millis(1_500));
        let head = crate::admin_client::get(&standby.http.to_string(), "/metrics")
            .ok()
            .and_then(|(_, body)| crate::admin_client::metric(&body, "surge_release_bound_seq"))
            .unwrap_or(0.0) as u64;
        feed_until.store(head, Ordering::SeqCst);
        let followed = follower.join().expect("feed follower");
        (report, watcher.join().expect("watcher"), promoted, followed)
    });
    let followed = followed?;
    let report = report?;
    let (status, body) = promoted?;
    ensure!(status == 200, "promoting the standby: {status} {body}");
    let promotion: serde_json::Value = serde_json::from_str(&body)?;
    let _ = primary.wait_exit(STOP_TIMEOUT);
    drop(primary);
    println!(
        "  failover   primary killed (SIGKILL) halfway; standby promoted to epoch {} in {} µs; the \
         load generator moved over {} time(s) and resent what was unanswered",
        promotion["epoch"],
        promotion["promote_us"],
        report.measured.failovers
    );
    let primary = standby;
    let m = &report.measured;
    let stock = stock_of(primary.addr, ClientId(base + 9_998), sku)?;
    println!(
        "  catalog    1 hot SKU, {} units at {:.2}, at most {} per buyer",
        thousands(stock.stocked),
        stock.price as f64 / 100.0,
        stock.per_user_limit
    );
    let place = m.by_kind.get(&loadgen::traffic::Kind::PlaceOrder);
    println!(
        "  achieved   {} requests/s; {} requests answered, {} refused (sold out, limits, waitlist full)",
        thousands(report.achieved_rate as u64),
        thousands(m.answered),
        thousands(m.errors.values().sum::<u64>()),
    );
    let ms = |ns: u64| format!("{:.2} ms", ns as f64 / 1e6);
    let h = place.unwrap_or(&m.overall);
    println!(
        "  latency    orders: p50 {}  p99 {}  p99.9 {}  max {}  (from intended send, journal synced)",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    );

    let acked = open_loop::read_ack_log(&acks)?;
    let handed = acked.iter().filter(|a| a.kind == "waitlist_order").count();
    match sold_out {
        Some(at) => println!(
            "  sold out   {:.2} s after the catalog was loaded; {} waitlisted buyers were handed an order",
            at.as_secs_f64(),
            thousands(handed as u64)
        ),
        None => println!(
            "  sold out   not during the sale; {} waitlisted buyers were handed an order",
            thousands(handed as u64)
        ),
    }

    // Each acknowledged change is in the feed once. A resent request's answer carries the
    // resend's sequence, where the feed (rightly) says nothing: the change is matched by its
    // order and kind, at or before that sequence.
    let missing: Vec<_> = acked
        .iter()
        .filter_map(|a| Some((a, fed_as(&a.kind)?, a.order_id?)))
        .filter(|(a, code, order)| {
            followed
                .told
                .get(&(*code, *order))
                .is_none_or(|&at| at > a.seq)
        })
        .map(|(a, ..)| a)
        .collect();
    println!(
        "  feed       {} events followed from the standby, then the new primary it became \
         ({} orders placed, {} paid, {} expired, {} retired), through seq {}, into {}; {} \
         acknowledged order changes missing from it, {} told twice",
        thousands(followed.events),
        thousands(followed.count("order_placed") + followed.count("waitlist_order_created")),
        thousands(followed.count("order_paid")),
        thousands(followed.count("order_expired")),
        thousands(followed.count("order_retired")),
        followed.through,
        feed_path.display(),
        missing.len(),
        followed.told_twice
    );
    ensure!(
        followed.told_twice == 0,
        "{} order changes came twice in the feed",
        followed.told_twice
    );
    ensure!(
        missing.is_empty(),
        "acknowledged changes missing from the feed, first: {:?}",
        missing.first()
    );
    let metrics = crate::admin_client::get(&primary.http.to_string(), "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let metric = |name: &str| crate::admin_client::metric(&metrics, name).unwrap_or(0.0) as u64;
    println!(
        "  longevity  {} orders retired (closed, kept as 80-byte records); {} checkpoints of \
         the serving engine ({} full), the newest at seq {}",
        thousands(metric("surge_orders_retired_total")),
        metric("surge_checkpoints_total"),
        metric("surge_checkpoints_full_total"),
        metric("surge_checkpoint_seq")
    );

    let mut primary = primary;
    primary.terminate(STOP_TIMEOUT)?;
    let restarted_at = Instant::now();
    let mut primary = ServeProcess::start(&exe, &data_b, &sets)?;
    let restart = restarted_at.elapsed();
    let recovered = primary.log_line("recovered").unwrap_or_default();
    println!(
        "  restart    new process serving in {:.0} ms: checkpoint {} at seq {} + {} journal \
         records replayed (last seq {})",
        restart.as_secs_f64() * 1e3,
        log_field(&recovered, "checkpoint").unwrap_or_default(),
        log_field(&recovered, "snapshot_seq").unwrap_or_default(),
        thousands(
            log_field(&recovered, "records_replayed")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        ),
        log_field(&recovered, "last_seq").unwrap_or_default()
    );

    let verdict = verify(primary.addr, ClientId(base + 9_997), sku, &acked)?;
    println!("  verified   {}", verdict.summary);
    primary.terminate(STOP_TIMEOUT)?;
    if args.keep {
        println!("\n  kept {}", dir.path.display());
    }
    ensure!(
        verdict.problems.is_empty(),
        "verification failed:\n{}",
        verdict.problems.join("\n")
    );
    Ok(())
}

/// What following the feed saw.
struct Followed {
    events: u64,
    through: u64,
    by_type: std::collections::HashMap<&'static str, u64>,
    /// The sequence of every order event, by (event, order); and how many came a second time.
    told: std::collections::HashMap<(engine::Code, u64), u64>,
    told_twice: u64,
}

impl Followed {
    fn count(&self, event_type: &str) -> u64 {
        self.by_type.get(event_type).copied().unwrap_or(0)
    }
}

/// The feed event an acknowledged answer of this kind (the ack log's name) must have made.
fn fed_as(kind: &str) -> Option<engine::Code> {
    use engine::Code;
    Some(match kind {
        "place_order" => Code::OrderPlaced,
        "confirm_payment" => Code::PaymentConfirmed,
        "fail_payment" => Code::PaymentFailed,
        "cancel_order" => Code::OrderCancelled,
        "waitlist_order" => Code::WaitlistOrderCreated,
        _ => return None,
    })
}

/// Follow the feed at `addr` into `path` (JSON lines) until it is through `until` (set once
/// the sale is over).
fn follow_feed(addr: SocketAddr, path: &Path, until: &AtomicU64) -> anyhow::Result<Followed> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut sub = Subscription::open(addr, 0, true)?;
    let mut followed = Followed {
        events: 0,
        through: 0,
        by_type: Default::default(),
        told: Default::default(),
        told_twice: 0,
    };
    while followed.through < until.load(Ordering::SeqCst) {
        let Some(frame) = sub.next_frame()? else {
            break;
        };
        for item in &frame.items {
            writeln!(out, "{}", crate::feed_cmd::to_json(item))?;
            *followed.by_type.entry(item.event.type_name()).or_default() += 1;
            if let FeedEvent::Order { code, order } = &item.event {
                // Each change once: the load generator's resends after the failover repeat
                // their original answers and must not repeat their events.
                if followed
                    .told
                    .insert((*code, order.id.0), item.seq)
                    .is_some()
                {
                    followed.told_twice += 1;
                }
            }
        }
        followed.events += frame.items.len() as u64;
        followed.through = frame.through;
    }
    out.flush()?;
    Ok(followed)
}

fn wait_streaming(primary: &ServeProcess) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let health = crate::admin_client::get(&primary.http.to_string(), "/health");
        if health.is_ok_and(|(_, body)| body.contains("\"standby\":\"streaming\"")) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    anyhow::bail!("the standby did not start streaming")
}

/// Poll the hot SKU until it first has nothing available; the time since it was listed.
fn watch_sold_out(
    addr: std::net::SocketAddr,
    client: ClientId,
    sku: SkuId,
    done: &AtomicBool,
) -> Option<Duration> {
    let mut c = Client::connect(addr, client).ok()?;
    let mut listed = None;
    while !done.load(Ordering::Relaxed) {
        if let Ok(answer) = c.call(Operation::Query(Query::Stock { sku })) {
            if let Reply::Answer(Answer::Stock(s)) = answer.reply {
                let since = *listed.get_or_insert_with(Instant::now);
                if s.available == 0 {
                    return Some(since.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}
