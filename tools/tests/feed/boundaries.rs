//! Resuming across every boundary the feed has: feed files rolling, snapshots, orders
//! retiring, a SIGKILL and restart, and a failover to the standby.

use std::time::Duration;

use engine::feed::FeedItem;

use crate::harness::{self, primary, temp_dir};
use crate::*;

/// The events at or below `seq`.
fn through(items: &[FeedItem], seq: u64) -> Vec<FeedItem> {
    items.iter().filter(|i| i.seq <= seq).cloned().collect()
}

#[test]
fn the_feed_resumes_at_rolls_snapshots_retirements_and_restarts_exactly_once() {
    let dir = temp_dir("feed-boundaries");
    let sets = feed_sets(&[]);
    let mut node = primary(&dir, &sets);
    load(&node, 8_000, 4, 1);

    let (full, head) = read_all(feed_addr(&node), 0);
    assert_ordered(&full);
    assert!(full.len() > 20_000, "only {} events", full.len());
    let types: std::collections::HashSet<_> = full.iter().map(|i| i.event.type_name()).collect();
    for wanted in [
        "sku_upserted",
        "order_placed",
        "order_paid",
        "order_payment_failed",
        "order_cancelled",
        "order_retired",
        "waitlist_joined",
    ] {
        assert!(types.contains(wanted), "no {wanted} in {types:?}");
    }
    let files = std::fs::read_dir(dir.join("feed")).unwrap().count();
    assert!(files > 3, "the feed rolled into only {files} files");
    assert!(harness::metric(&node, "surge_snapshots_total") >= 2);

    // A consumer that keeps disconnecting gets the same events, none twice.
    let pieces = read_in_pieces(feed_addr(&node), 0, 2, head);
    assert_eq!(through(&pieces, head), full, "read in pieces");

    // SIGKILL: the restarted node's feed starts with the same events, and goes on.
    node.signal(libc::SIGKILL);
    node.wait_exit(Duration::from_secs(10)).unwrap();
    let node = primary(&dir, &sets);
    let (again, _) = read_all(feed_addr(&node), 0);
    assert_eq!(through(&again, head), full, "after the restart");
    load(&node, 8_000, 2, 2);
    let (tail, head2) = read_all(feed_addr(&node), head);
    assert!(tail.iter().all(|i| i.seq > head));
    assert!(!tail.is_empty());
    let (whole, _) = read_all(feed_addr(&node), 0);
    let mut joined = full.clone();
    joined.extend(tail);
    assert_eq!(through(&whole, head2), joined, "resumed after the restart");

    // Once every order has closed and retired, the feed's last word on each order is the
    // state `surge replay --export` finds.
    wait_settled(&node);
    let (settled, _) = read_all(feed_addr(&node), 0);
    let mut node = node;
    node.terminate(Duration::from_secs(30)).unwrap();
    let feed_states = order_states(&settled);
    let exported = exported_states(&dir);
    assert_eq!(
        feed_states.len(),
        exported.len(),
        "orders in the feed and the export"
    );
    for (order, state) in &exported {
        assert_eq!(
            feed_states.get(order).copied(),
            Some(state.as_str()),
            "order {order}"
        );
    }
}

#[test]
fn a_consumer_moves_to_the_standby_and_misses_nothing() {
    let (pdir, sdir) = (temp_dir("feed-fo-primary"), temp_dir("feed-fo-standby"));
    let mut sets = harness::pair_sets("durable", "degrade", &[]);
    sets.extend(feed_sets(&[]));
    let mut first = primary(&pdir, &sets);
    let second = harness::standby(&sdir, &first, &sets);
    harness::wait_streaming(&first);
    harness::add_sku(&first, 8, 1);
    harness::place_orders(&first, 9, 1, 5_000);
    harness::assert_converged(&first, &second);
    wait_feed_caught_up(&first);

    // Both nodes serve the same feed.
    let (on_primary, head) = read_all(feed_addr(&first), 0);
    harness::wait_for(Duration::from_secs(30), "the standby's feed", || {
        read_all(feed_addr(&second), 0).1 >= head
    });
    let (on_standby, _) = read_all(feed_addr(&second), 0);
    assert_eq!(through(&on_standby, head), on_primary);

    // The consumer has read half, the primary dies, the standby is promoted: it resumes
    // there after what it had.
    let half = on_primary[on_primary.len() / 2].seq;
    let had = through(&on_primary, half);
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(10)).unwrap();
    harness::promote(&second);
    harness::add_sku(&second, 10, 2);
    harness::place_orders(&second, 11, 2, 2_000);
    wait_feed_caught_up(&second);
    let (rest, _) = read_all(feed_addr(&second), half);
    let (whole, _) = read_all(feed_addr(&second), 0);
    let mut joined = had;
    joined.extend(rest);
    assert_eq!(joined, through(&whole, joined.last().unwrap().seq));
    assert!(
        whole.len() >= on_primary.len() + 2_000,
        "{} events",
        whole.len()
    );
}
