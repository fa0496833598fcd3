//! `surge feed --server ADDR [--after SEQ | --from SEQ] [--follow] [--json]`: the feed as
//! one line per event, for shell pipelines. `--json` lines are the shapes docs/FEED.md
//! lists (`{"seq":…,"type":"order_paid","order_id":…}`); without it, a short text line.
//! The last line on stderr says where to resume (`through=`).

use std::io::{BufWriter, Write};
use std::net::SocketAddr;

use anyhow::Context;
use engine::feed::{FeedEvent, FeedItem};
use serde_json::{json, Value};

use crate::feed_client::{FeedRefused, Subscription};

#[derive(clap::Args)]
pub struct Args {
    /// The node's feed port (`feed.listen`); a standby serves the same feed.
    #[arg(long)]
    server: SocketAddr,
    /// Start after this sequence: the last one a previous run printed `through=` for
    /// (0: from the beginning).
    #[arg(long, conflicts_with = "from")]
    after: Option<u64>,
    /// Start at this sequence (the same as `--after SEQ-1`).
    #[arg(long)]
    from: Option<u64>,
    /// Keep going: print new events as they come (else stop at the node's head of now).
    #[arg(long)]
    follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// Print no events, only the closing `through=` line with the count (a consumer that
    /// costs its machine nothing but the reading, for benchmarks).
    #[arg(long, conflicts_with = "json")]
    count: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let after = args
        .after
        .or(args.from.map(|seq| seq.saturating_sub(1)))
        .unwrap_or(0);
    let mut subscription = match Subscription::open(args.server, after, args.follow) {
        Ok(s) => s,
        Err(e) => {
            if let Some(refused) = e.downcast_ref::<FeedRefused>() {
                eprintln!("surge feed: {refused}");
                if let Some(begins_after) = refused.begins_after {
                    eprintln!("hint: the oldest start is --after {begins_after}");
                }
                return Ok(2);
            }
            return Err(e);
        }
    };
    eprintln!(
        "feed begins_after={} head={}",
        subscription.begin.begins_after, subscription.begin.head
    );
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut through = after;
    // Past `--limit`, the rest of the last sequence's events still go out: a run ends at a
    // whole sequence, so resuming after its `through=` repeats nothing and skips nothing.
    let mut ending_at: Option<u64> = None;
    while let Some(frame) = subscription.next_frame()? {
        if args.count && args.limit.is_none() {
            printed += frame.items.len() as u64;
            through = frame.through;
            continue;
        }
        for item in &frame.items {
            if ending_at.is_some_and(|seq| item.seq > seq) {
                return finish(&mut out, ending_at, printed);
            }
            if !args.count {
                let line = match args.json {
                    true => to_json(item).to_string(),
                    false => to_text(item),
                };
                if writeln!(out, "{line}").is_err() {
                    return Ok(0); // the pipe closed: the reader has what it wanted
                }
            }
            printed += 1;
            if args.limit.is_some_and(|limit| printed >= limit) {
                ending_at.get_or_insert(item.seq);
            }
        }
        if ending_at.is_some_and(|seq| frame.through >= seq) {
            return finish(&mut out, ending_at, printed);
        }
        through = frame.through;
        if frame.items.is_empty() || subscription_caught_up(&frame) {
            out.flush().context("writing the events")?;
        }
    }
    out.flush().context("writing the events")?;
    eprintln!("feed through={through} events={printed}");
    Ok(0)
}

fn finish(out: &mut impl Write, through: Option<u64>, printed: u64) -> anyhow::Result<i32> {
    out.flush().context("writing the events")?;
    eprintln!("feed through={} events={printed}", through.unwrap_or(0));
    Ok(0)
}

fn subscription_caught_up(frame: &engine::wire::feed::FeedFrame) -> bool {
    frame.through >= frame.head
}

/// The event as one JSON object: `seq`, `at_ns`, `type`, then the event's fields.
pub fn to_json(item: &FeedItem) -> Value {
    let mut v = match &item.event {
        FeedEvent::Order { order: o, .. } => json!({
            "order_id": o.id.0, "client_id": o.client.0, "request_id": o.request.0,
            "user": o.user.0, "state": o.state.name(), "total": o.total,
            "created_ns": o.created_ns, "deadline_ns": o.deadline_ns, "paid_ns": o.paid_ns,
            "payment_ref": o.payment_ref, "closed_ns": o.closed_ns,
            "lines": o.lines.iter().map(|l| json!({"sku": l.sku.0, "qty": l.qty})).collect::<Vec<_>>(),
        }),
        FeedEvent::OrderRetired(r) => json!({
            "order_id": r.id.0, "client_id": r.client.0, "request_id": r.request.0,
            "user": r.user.0, "state": r.state.name(), "total": r.total,
            "created_ns": r.created_ns, "closed_ns": r.closed_ns, "payment_ref": r.payment_ref,
            "line_count": r.line_count, "first_line": {"sku": r.first_sku.0, "qty": r.first_qty},
            "reconciled": r.reconciled,
        }),
        FeedEvent::WaitlistJoined {
            client,
            request,
            user,
            sku,
            qty,
            position,
            units_ahead,
        } => json!({
            "client_id": client.0, "request_id": request.0, "user": user.0, "sku": sku.0,
            "qty": qty, "position": position, "units_ahead": units_ahead,
        }),
        FeedEvent::WaitlistDropped {
            client,
            request,
            user,
            sku,
        } => json!({
            "client_id": client.0, "request_id": request.0, "user": user.0, "sku": sku.0,
        }),
        FeedEvent::Discrepancy(d) => json!({
            "kind": item.event.code().name(), "order_id": d.order.0,
            "payment_ref": d.payment_ref, "expected": d.expected, "captured": d.captured,
        }),
        FeedEvent::Sku { sku: s, .. } => json!({
            "sku": s.id.0, "price": s.price, "per_user_limit": s.per_user_limit,
            "listed": s.listed, "stocked": s.stocked, "available": s.available,
            "reserved": s.reserved, "sold": s.sold, "waitlist": s.waitlist,
            "sale_window": s.sale_window.map(|w| json!({"start_ns": w.start_ns, "end_ns": w.end_ns})),
        }),
    };
    let head = json!({"seq": item.seq, "at_ns": item.at_ns, "type": item.event.type_name()});
    if let (Value::Object(fields), Value::Object(head)) = (&mut v, head) {
        let mut merged = head;
        merged.append(fields);
        return Value::Object(merged);
    }
    v
}

fn to_text(item: &FeedItem) -> String {
    let what = match &item.event {
        FeedEvent::Order { order, .. } => format!(
            "order {} user {} total {} {}",
            order.id.0,
            order.user.0,
            order.total,
            order.state.name()
        ),
        FeedEvent::OrderRetired(r) => format!("order {} {}", r.id.0, r.state.name()),
        FeedEvent::WaitlistJoined {
            user,
            sku,
            position,
            ..
        } => format!("user {} sku {} position {position}", user.0, sku.0),
        FeedEvent::WaitlistDropped { user, sku, .. } => format!("user {} sku {}", user.0, sku.0),
        FeedEvent::Discrepancy(d) => format!(
            "{} order {} expected {} captured {}",
            item.event.code().name(),
            d.order.0,
            d.expected,
            d.captured
        ),
        FeedEvent::Sku { sku, .. } => format!(
            "sku {} available {} reserved {} sold {}",
            sku.id.0, sku.available, sku.reserved, sku.sold
        ),
    };
    format!("{:>10} {:<24} {what}", item.seq, item.event.type_name())
}
