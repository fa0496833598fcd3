use std::time::Duration;

use engine::wire::{Operation, Reply};
use engine::{Answer, ClientId, Code, Query, SkuId};
use loadgen::client::Client;
use tools::serve_process::log_field;

use crate::harness::*;

fn stock(node: &tools::serve_process::ServeProcess, sku: u64) -> engine::outcome::StockView {
    let mut c = Client::connect(node.addr, ClientId(900)).unwrap();
    match c
        .call(Operation::Query(Query::Stock { sku: SkuId(sku) }))
        .unwrap()
        .reply
    {
        Reply::Answer(Answer::Stock(s)) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_standby_catches_up_from_an_empty_directory_and_from_behind() {
    let dir = temp_dir("catch-up");
    // A 1 MiB backlog: most of what the standby needs comes from the journal files.
    let sets = pair_sets("durable", "degrade", &["replication.backlog_mib=1"]);
    let a = primary(&dir.join("a"), &sets);
    add_sku(&a, 1, 77);
    place_orders(&a, 2, 77, 20_000);

    let mut b = standby(&dir.join("b"), &a, &sets);
    assert!(b.logged("bootstrapped"), "{:#?}", b.logs());
    wait_streaming(&a);
    assert_converged(&a, &b);
    // The standby answers queries with the primary's state, and refuses writes.
    assert_eq!(stock(&b, 77).sold + stock(&b, 77).reserved, 20_000);
    assert_eq!(write_code(b.addr, 3, 0, 77), Code::NotPrimary);

    b.terminate(Duration::from_secs(30)).unwrap();
    place_orders(&a, 4, 77, 20_000);
    let b = standby(&dir.join("b"), &a, &sets);
    wait_for(Duration::from_secs(10), "following", || {
        b.logged("following")
    });
    let following = b.log_line("following").unwrap();
    let from: u64 = log_field(&following, "from_seq").unwrap().parse().unwrap();
    assert!(from > 20_000, "resumed at {from}: {following}");
    wait_streaming(&a);
    assert_converged(&a, &b);
    assert_eq!(stock(&b, 77).reserved, 40_000);
}

/// Retention removed the journal's first segments, so a new standby cannot start from
/// sequence 1: it takes the primary's newest snapshot over the stream, then the records after
/// it, and reaches the primary's rolling hash. A standby that falls behind what the primary
/// still holds starts over from a snapshot the same way.
#[test]
fn a_standby_joins_after_retention_from_a_snapshot() {
    join_late(
        "join-late",
        &["snapshot.every_records=4000", "snapshot.keep=1"],
        "snapshot",
    );
}

/// The same with one engine per node: no snapshotter, checkpoints of the serving engine. The
/// primary sends its newest checkpoint chain (full and deltas, as a bundle); the standby
/// checks every file, starts from the chain, and checkpoints on its own from there.
#[test]
fn a_standby_joins_after_retention_from_a_checkpoint_chain() {
    join_late(
        "join-late-chain",
        &[
            "snapshot.every_records=0",
            "snapshot.every_secs=0",
            "checkpoint.every_records=4000",
            "checkpoint.full_every=3",
            "checkpoint.keep_chains=1",
        ],
        "checkpoint chain",
    );
}

fn join_late(name: &str, extra: &[&str], image: &str) {
    let dir = temp_dir(name);
    let mut sets_extra = vec!["replication.backlog_mib=1", "journal.segment_mib=1"];
    sets_extra.extend_from_slice(extra);
    let sets = pair_sets("async", "degrade", &sets_extra);
    let a = primary(&dir.join("a"), &sets);
    add_sku(&a, 1, 88);
    place_orders(&a, 2, 88, 30_000);
    wait_for(Duration::from_secs(30), "segments retired", || {
        metric(&a, "surge_journal_segments_retired_total") >= 2
    });

    let mut b = standby(&dir.join("b"), &a, &sets);
    let bootstrapped = b.log_line("bootstrapped").unwrap();
    let from: u64 = log_field(&bootstrapped, "snapshot_seq")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        from > 4_000,
        "bootstrapped without a {image}: {bootstrapped}"
    );
    assert!(a.logged("standby_sent_snapshot"), "{:#?}", a.logs());
    eprintln!("{bootstrapped}");
    let recovered = b.log_line("recovered").unwrap();
    let from_checkpoint: u64 = log_field(&recovered, "checkpoint")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        from_checkpoint > 0,
        image == "checkpoint chain",
        "started from a {image}: {recovered}"
    );
    wait_streaming(&a);
    assert_converged(&a, &b);
    assert_eq!(stock(&b, 88).reserved, 30_000);

    // Away while the primary moves on and retires what it would need.
    b.terminate(Duration::from_secs(30)).unwrap();
    let retired = metric(&a, "surge_journal_segments_retired_total");
    place_orders(&a, 3, 88, 30_000);
    let more = || metric(&a, "surge_journal_segments_retired_total") >= retired + 2;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !more() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(more(), "no more segments retired: {:#?}", a.logs());
    let b = standby(&dir.join("b"), &a, &sets);
    let restarted = || b.logged("restarting_from_snapshot");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !restarted() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(restarted(), "{:#?}\n{:#?}", b.logs(), a.logs());
    wait_streaming(&a);
    assert_converged(&a, &b);
    assert_eq!(stock(&b, 88).reserved, 60_000);
}
