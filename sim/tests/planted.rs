//! Each invariant catches a violation planted on purpose: the same scenario passes without
//! the plant and fails with it, naming the invariant.

use sim::faults::{Fault, Kind};
use sim::{Options, Plant, World};

const S: u64 = 1_000_000_000;

fn scenario(nodes: usize, faults: Vec<Fault>, plant: Option<Plant>) -> sim::Report {
    let options = Options {
        nodes,
        seconds: 10,
        scripted: Some(faults),
        plant,
        ..Options::for_seed(4242)
    };
    World::new(options).run()
}

fn fault(at_ms: u64, kind: Kind, node: usize, peer: usize, for_ms: u64) -> Fault {
    Fault {
        at_ns: at_ms * 1_000_000,
        kind,
        node,
        peer,
        for_ns: for_ms * 1_000_000,
    }
}

fn violated(report: &sim::Report, what: &str) -> bool {
    report.violations.iter().any(|v| v.contains(what))
}

#[test]
fn an_answer_released_before_the_standbys_ack_is_found_lost_after_failover() {
    // b hears nothing from a; a stops (paused past its lease, so a restart cannot win the
    // new term back first); b, in sync, takes over.
    let faults = vec![
        fault(6_000, Kind::OneWay, 0, 1, 5_000),
        fault(7_000, Kind::Pause, 0, 0, 4_000),
    ];
    let plain = scenario(2, faults.clone(), None);
    assert!(plain.passed(), "{}", plain.describe(20));
    let planted = scenario(2, faults, Some(Plant::ReleaseBeforeAck));
    assert!(
        violated(&planted, "acknowledged at seq") && violated(&planted, "missing"),
        "{}",
        planted.describe(20)
    );
}

#[test]
fn a_node_that_led_following_a_lower_epoch_is_caught() {
    // a paused past its lease while b's reconnect is under way; b is elected; a thaws (the
    // pause that broke the pair, and that b, fixed, survives).
    let faults = vec![fault(6_000, Kind::Pause, 0, 1, 3_300)];
    let plain = scenario(2, faults.clone(), None);
    assert!(plain.passed(), "{}", plain.describe(20));
    let planted = scenario(2, faults, Some(Plant::FollowLowerEpoch));
    assert!(
        violated(&planted, "follows a primary of epoch"),
        "{}",
        planted.describe(20)
    );
}

#[test]
fn a_gap_in_the_feed_is_caught() {
    let report = scenario(2, vec![], Some(Plant::DropFeedEvent));
    assert!(
        violated(&report, "the feed has a gap"),
        "{}",
        report.describe(10)
    );
    let plain = scenario(2, vec![], None);
    assert!(plain.passed(), "{}", plain.describe(10));
}

#[test]
fn a_standby_applying_another_record_is_caught() {
    let report = scenario(3, vec![], Some(Plant::CorruptRecord));
    assert!(
        violated(&report, "two histories") || violated(&report, "replication_diverged"),
        "{}",
        report.describe(10)
    );
}

#[test]
fn a_group_that_serves_no_write_after_the_heal_is_caught() {
    let report = scenario(2, vec![], Some(Plant::RefuseWrites));
    assert!(
        violated(&report, "liveness: no write was accepted after the heal"),
        "{}",
        report.describe(10)
    );
    assert!(
        violated(&report, "still waits for"),
        "{}",
        report.describe(10)
    );
}

#[test]
fn every_fault_kind_is_drawn_within_a_hundred_seeds() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..100 {
        let mut rng = sim::rng::Rng::new(seed);
        let _ = rng.fork();
        for f in sim::faults::schedule(&mut rng.fork(), &sim::faults::ALL, 3, 3 * S, 23 * S) {
            seen.insert(f.kind);
        }
    }
    assert_eq!(seen.len(), sim::faults::ALL.len(), "{seen:?}");
}
