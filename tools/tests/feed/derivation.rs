//! The feed from the serving engine's own outcomes (the engine stage drafts each command's
//! events, the feed stage behind the release gate appends them) is the old derivation's,
//! event for event: a second engine replaying the journal and deriving after each record.
//! The run covers what could make them differ: speculative applies ahead of durability,
//! checkpoints of the serving engine, a SIGKILL (the restart's replay fills in what the log
//! missed), expiries, retirements and waitlists.

use std::time::Duration;

use engine::codec::{self, kind};
use engine::feed::{derive, FeedItem};
use engine::{Engine, Output};
use server::checkpoint::data_dir::DataDir;

use crate::harness::{self, primary, temp_dir};
use crate::*;

/// Every event the journal in `dir` gives when a fresh engine replays it and derives after
/// each command: the derivation the snapshotter's engine used to feed the log with.
fn derived_from_journal(dir: &std::path::Path) -> Vec<FeedItem> {
    let storage = DataDir::new(dir)
        .journal(journal::IoMode::Pwritev2)
        .unwrap();
    let mut engine: Option<Engine> = None;
    let mut out = Output::default();
    let mut events = Vec::new();
    let mut items = Vec::new();
    journal::scan_from(&storage, 1, |record, _| {
        if record.kind == kind::ENGINE_CONFIG {
            engine = Some(Engine::new(codec::decode_config(record.payload).unwrap()));
            return;
        }
        let engine = engine
            .as_mut()
            .expect("the journal opens with its configuration");
        let request = codec::decode_request(record.payload).unwrap();
        engine.apply(record.timestamp_ns, &request, &mut out);
        events.clear();
        derive(engine, &request, &out, &mut events);
        items.extend(events.drain(..).map(|event| FeedItem {
            seq: record.seq,
            at_ns: record.timestamp_ns,
            event,
        }));
    })
    .unwrap();
    items
}

#[test]
fn the_feed_from_the_serving_engine_is_the_journal_replays_derivation() {
    let dir = temp_dir("feed-derivation");
    // One engine: checkpoints on, no snapshotter; every journal segment kept for the replay.
    let sets = feed_sets(&[
        "snapshot.every_records=0",
        "snapshot.every_secs=0",
        "snapshot.retention=\"keep\"",
        "checkpoint.every_records=10000",
    ]);
    let mut node = primary(&dir, &sets);
    load(&node, 8_000, 3, 11);
    assert!(harness::metric(&node, "surge_checkpoints_total") >= 1);
    assert_eq!(harness::metric(&node, "surge_snapshots_total"), 0);

    // Killed under load: what was released but not yet in the log comes from the replay.
    let mut generator = std::process::Command::new(harness::exe())
        .args(["loadgen", "--server", &node.addr.to_string()])
        .args(["--rate", "8000", "--duration", "10", "--warmup", "0"])
        .args(["--connections", "2", "--quiet", "--seed", "12"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    node.signal(libc::SIGKILL);
    node.wait_exit(Duration::from_secs(10)).unwrap();
    let _ = generator.wait();
    let node = primary(&dir, &sets);
    load(&node, 8_000, 2, 13);
    wait_settled(&node);

    let (served, head) = read_all(feed_addr(&node), 0);
    assert_ordered(&served);
    let derived: Vec<FeedItem> = derived_from_journal(&dir)
        .into_iter()
        .filter(|i| i.seq <= head)
        .collect();
    assert!(derived.len() > 30_000, "only {} events", derived.len());
    assert_eq!(served.len(), derived.len(), "as many events");
    for (i, (got, want)) in served.iter().zip(&derived).enumerate() {
        assert_eq!(got, want, "event {i} of {}", derived.len());
    }
}
