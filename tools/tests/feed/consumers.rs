//! Consumers at the edges: asking for events the retention removed, falling behind it while
//! reading, and stalling (which must cost the server no memory and lose nothing).

use std::time::Duration;

use engine::wire::feed::Subscribe;
use engine::wire::PROTOCOL_VERSION;
use engine::Code;
use tools::feed_client::{FeedRefused, Subscription};

use crate::harness::{self, primary, temp_dir};
use crate::*;

fn refusal(result: anyhow::Result<Subscription>) -> FeedRefused {
    match result {
        Ok(_) => panic!("the subscription was taken"),
        Err(e) => e.downcast::<FeedRefused>().expect("an ERROR frame"),
    }
}

#[test]
fn past_the_retention_a_consumer_is_told_where_the_feed_begins() {
    let dir = temp_dir("feed-truncated");
    let node = primary(&dir, &feed_sets(&["feed.max_mib=2"]));
    // A consumer that reads one frame and stops: its file will be retired under it.
    let mut stalled = Subscription::open(feed_addr(&node), 0, true).unwrap();
    stalled.limit_receive_buffer(16 << 10);
    stalled.next_frame().unwrap();
    load(&node, 8_000, 4, 3);

    let refused = refusal(Subscription::open(feed_addr(&node), 0, false));
    assert_eq!(refused.code, Code::FeedTruncated.number(), "{refused}");
    let begins_after = refused.begins_after.expect("FEED_BEGIN came first");
    assert!(begins_after > 0);
    assert_eq!(
        harness::metric(&node, "surge_feed_begins_after_seq"),
        begins_after
    );
    // From there on, the feed is whole.
    let (items, _) = read_all(feed_addr(&node), begins_after);
    assert!(!items.is_empty());
    assert!(items.iter().all(|i| i.seq > begins_after));

    // The stalled consumer reads on into the gap and is told, not skipped past it.
    stalled.set_timeout(Some(Duration::from_secs(30))).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let ended = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "never told of the gap"
        );
        match stalled.next_frame() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the subscription ended without a word"),
            Err(e) => break e.downcast::<FeedRefused>().expect("an ERROR frame"),
        }
    };
    assert_eq!(ended.code, Code::FeedTruncated.number(), "{ended}");
}

#[test]
fn a_stalled_consumer_costs_the_server_no_memory_and_loses_nothing() {
    let dir = temp_dir("feed-stalled");
    let node = primary(&dir, &feed_sets(&["feed.max_mib=512"]));
    // The same load first, so the engine's tables are at their working size: what grows
    // after this is what the stalled consumer costs.
    load(&node, 10_000, 5, 4);
    // Subscribed, following, and never reading while the sale goes on.
    let mut stalled = Subscription::open(feed_addr(&node), 0, true).unwrap();
    stalled.limit_receive_buffer(16 << 10);
    let anon_before = rss_anon_kib(node.pid());
    let bytes_before = harness::metric(&node, "surge_feed_bytes");
    load(&node, 10_000, 8, 5);
    let written = harness::metric(&node, "surge_feed_bytes") - bytes_before;
    let grown = rss_anon_kib(node.pid()).saturating_sub(anon_before) << 10;
    assert!(written > 8 << 20, "only {written} bytes of feed written");
    eprintln!("anonymous memory grew {grown} bytes; {written} bytes of feed written");
    assert!(
        grown < written / 2,
        "the server's anonymous memory grew {grown} bytes while {written} bytes of feed waited for a stalled consumer"
    );
    assert!(harness::metric(&node, "surge_feed_consumer_lag_seq") > 0);

    // When it reads again it gets everything, in order, as a fresh consumer does.
    let (expected, head) = read_all(feed_addr(&node), 0);
    stalled.set_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    while got
        .last()
        .is_none_or(|i: &engine::feed::FeedItem| i.seq < expected.last().unwrap().seq)
    {
        let frame = stalled.next_frame().unwrap().expect("following");
        got.extend(frame.items);
    }
    let got: Vec<_> = got.into_iter().filter(|i| i.seq <= head).collect();
    assert_eq!(got, expected);
}

#[test]
fn the_feed_port_refuses_what_is_not_a_subscription() {
    use std::io::{Read, Write};
    let dir = temp_dir("feed-refusals");
    let node = primary(&dir, &feed_sets(&["feed.max_subscribers=1"]));
    let code_of = |bytes: &[u8]| {
        let mut s = std::net::TcpStream::connect(feed_addr(&node)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert_eq!(got[4], engine::wire::frame_kind::ERROR, "{got:?}");
        u16::from_le_bytes([got[5], got[6]])
    };
    // A HELLO (the client port's first frame) is not a SUBSCRIBE.
    assert_eq!(code_of(&[1, 0, 0, 0, 1]), Code::UnknownFrameKind.number());
    let mut wrong_version = Vec::new();
    Subscribe {
        version: PROTOCOL_VERSION + 1,
        after: 0,
        follow: false,
    }
    .encode(&mut wrong_version);
    assert_eq!(code_of(&wrong_version), Code::UnsupportedVersion.number());
    // One subscription is all this node takes.
    harness::wait_for(Duration::from_secs(10), "the refused to be gone", || {
        harness::metric(&node, "surge_feed_subscribers") == 0
    });
    let _held = Subscription::open(feed_addr(&node), 0, true).unwrap();
    let refused = refusal(Subscription::open(feed_addr(&node), 0, true));
    assert_eq!(
        refused.code,
        Code::FeedSubscribersFull.number(),
        "{refused}"
    );
}

fn rss_anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/PID/status")
}
