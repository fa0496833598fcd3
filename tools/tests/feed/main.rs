//! The feed over real processes: resuming at every boundary (segment roll, snapshot,
//! retirement, restart, failover to a standby) with no gap and no duplicate, the feed against
//! `surge replay --export` and against a replay's derivation, retention telling a consumer
//! where the feed begins, a stalled consumer costing the server no memory, and
//! `surge sink postgres` through crashes.

#[path = "../replication/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../common/scratch.rs"]
mod scratch;

mod boundaries;
mod consumers;
mod derivation;
mod local_postgres;
mod sink;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use engine::feed::{FeedEvent, FeedItem};
use tools::feed_client::Subscription;
use tools::serve_process::ServeProcess;

/// The `--set`s of a node that keeps a feed: small files so a short run crosses many, and
/// orders that expire and retire within it.
pub fn feed_sets(extra: &[&str]) -> Vec<String> {
    let mut sets: Vec<String> = vec![
        "feed.listen=\"127.0.0.1:0\"".into(),
        "feed.segment_mib=1".into(),
        "snapshot.every_records=20000".into(),
        "snapshot.every_secs=1".into(),
        "journal.segment_mib=4".into(),
        "engine.payment_window_ms=400".into(),
        "engine.retire_after_ms=300".into(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    sets
}

/// Every event after `after` up to the node's head, in one subscription; and the `through`
/// it ended at.
pub fn read_all(addr: SocketAddr, after: u64) -> (Vec<FeedItem>, u64) {
    let mut sub = Subscription::open(addr, after, false).unwrap();
    let mut items = Vec::new();
    let mut through = after;
    while let Some(frame) = sub.next_frame().unwrap() {
        assert!(frame.through >= through, "through went back");
        // A sequence with more events than one frame holds ends a frame above `through`
        // (docs/FEED.md): only the sequence right after it may.
        let outside = frame
            .items
            .iter()
            .find(|i| i.seq <= through || i.seq > frame.through + 1 || i.seq > frame.head);
        assert!(
            outside.is_none(),
            "{outside:?} outside ({through}, {}] (head {}) from {addr}",
            frame.through,
            frame.head
        );
        through = frame.through;
        items.extend(frame.items);
    }
    (items, through)
}

/// The same, as a consumer that disconnects after every `frames` frames and resumes after
/// the `through` it had.
pub fn read_in_pieces(addr: SocketAddr, after: u64, frames: usize, head: u64) -> Vec<FeedItem> {
    let mut items = Vec::new();
    let mut through = after;
    let mut subscriptions = 0;
    while through < head {
        let mut sub = Subscription::open(addr, through, false).unwrap();
        subscriptions += 1;
        for _ in 0..frames {
            let Some(frame) = sub.next_frame().unwrap() else {
                break;
            };
            through = frame.through;
            items.extend(frame.items);
        }
        // Events above `through` come again after the resubscription.
        while items.last().is_some_and(|i| i.seq > through) {
            items.pop();
        }
    }
    assert!(subscriptions > 3, "only {subscriptions} subscriptions");
    items
}

/// Sequences must never go back, and each sequence's events come together.
pub fn assert_ordered(items: &[FeedItem]) {
    for pair in items.windows(2) {
        assert!(
            pair[0].seq <= pair[1].seq,
            "{:?} before {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// Each order's state as the feed last told it.
pub fn order_states(items: &[FeedItem]) -> HashMap<u64, &'static str> {
    let mut states = HashMap::new();
    for item in items {
        match &item.event {
            FeedEvent::Order { order, .. } => {
                states.insert(order.id.0, order.state.name());
            }
            FeedEvent::OrderRetired(r) => {
                states.insert(r.id.0, r.state.name());
            }
            _ => {}
        }
    }
    states
}

/// Each order's state in `surge replay --export` of a stopped node's directory.
pub fn exported_states(dir: &Path) -> HashMap<u64, String> {
    let export = dir.join("export.jsonl");
    let status = Command::new(harness::exe())
        .args(["replay", "--data-dir"])
        .arg(dir)
        .arg("--export")
        .arg(&export)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let mut states = HashMap::new();
    for line in std::fs::read_to_string(&export).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] == "order" {
            states.insert(
                v["order_id"].as_u64().unwrap(),
                v["state"].as_str().unwrap().to_string(),
            );
        }
    }
    states
}

/// Open-loop flash-sale load (waitlists, payments, failures, cancellations) for `secs`, then
/// until the feed has caught up with it.
pub fn load(node: &ServeProcess, rate: u32, secs: u32, seed: u32) {
    let out = Command::new(harness::exe())
        .args(["loadgen", "--server", &node.addr.to_string()])
        .args(["--rate", &rate.to_string(), "--duration", &secs.to_string()])
        .args(["--warmup", "0", "--connections", "2", "--quiet"])
        .args(["--seed", &seed.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_feed_caught_up(node);
}

/// Wait until the node's feed holds every sequence up to its release bound as it was when
/// asked. The feed stage trails the release gate, and a busy machine (CI runs the suites
/// side by side) can hold it back: a test reads the feed only once it has caught up, never
/// after a fixed sleep.
pub fn wait_feed_caught_up(node: &ServeProcess) {
    let bound = harness::metric(node, "surge_release_bound_seq");
    harness::wait_for(
        std::time::Duration::from_secs(120),
        "the feed to catch up with the release bound",
        || harness::metric(node, "surge_feed_through_seq") >= bound,
    );
}

/// Wait until the sale has settled: every order closed and retired, so nothing more will
/// happen to any of them (the feed caught up, then no new event for 1.2 s, and caught up
/// again).
pub fn wait_settled(node: &ServeProcess) {
    harness::wait_for(
        std::time::Duration::from_secs(60),
        "the sale to settle",
        || {
            wait_feed_caught_up(node);
            let (_, a) = read_all(feed_addr(node), 0);
            std::thread::sleep(std::time::Duration::from_millis(1_200));
            wait_feed_caught_up(node);
            read_all(feed_addr(node), a).0.is_empty()
        },
    );
}

pub fn feed_addr(node: &ServeProcess) -> SocketAddr {
    node.feed.expect("the node serves a feed")
}
