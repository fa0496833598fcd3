//! A primary with more than one standby, as real processes: "durable on 1 of 2" goes on
//! with one standby lost and halts with both; "2 of 2" halts with one; a disaster-recovery
//! standby in `async` streams everything but never holds a write back, nor keeps one going;
//! one standby more than `max_standbys` is refused with STANDBYS_FULL.

use std::path::Path;
use std::time::Duration;

use engine::Code;
use tools::serve_process::ServeProcess;

use crate::harness::{
    add_sku, assert_converged, health, metric, pair_sets, place_orders, primary, standby, temp_dir,
    wait_for, write_code,
};

/// The sets of the node named `name` in a group with these sets.
fn named(sets: &[String], name: &str) -> Vec<String> {
    let mut sets = sets.to_vec();
    sets.push(format!("replication.node={name}"));
    sets
}

/// Until the primary streams to `n` standbys.
fn wait_streaming_to(primary: &ServeProcess, n: usize) {
    wait_for(Duration::from_secs(30), "the standbys to stream", || {
        let h = health(primary);
        h["standbys"]
            .as_array()
            .is_some_and(|s| s.iter().filter(|s| s["state"] == "streaming").count() == n)
    });
}

fn kill(node: &mut ServeProcess) {
    node.signal(libc::SIGKILL);
    node.wait_exit(Duration::from_secs(10)).unwrap();
}

/// Until the primary has noticed a standby is gone (it refuses or accepts by then).
fn wait_attached(primary: &ServeProcess, n: usize) {
    wait_for(Duration::from_secs(10), "a standby loss noticed", || {
        let h = health(primary);
        h["standbys"]
            .as_array()
            .is_some_and(|s| s.iter().filter(|s| s["state"] != "detached").count() == n)
    });
}

struct Group {
    a: ServeProcess,
    standbys: Vec<ServeProcess>,
}

fn group(dirs: &[&Path], sets: &[String], names: &[&str]) -> Group {
    let a = primary(dirs[0], &named(sets, "a"));
    let standbys: Vec<ServeProcess> = names
        .iter()
        .zip(&dirs[1..])
        .map(|(name, dir)| standby(dir, &a, &named(sets, name)))
        .collect();
    wait_streaming_to(&a, standbys.len());
    add_sku(&a, 1, 1);
    place_orders(&a, 2, 1, 500);
    for s in &standbys {
        assert_converged(&a, s);
    }
    Group { a, standbys }
}

#[test]
fn durable_on_one_of_two_goes_on_without_one_and_halts_without_both() {
    let dirs = [temp_dir("k1-a"), temp_dir("k1-b"), temp_dir("k1-c")];
    let sets = pair_sets("durable", "halt", &["replication.sync_standbys=1"]);
    let paths: Vec<&Path> = dirs.iter().map(|d| d.as_ref()).collect();
    let Group { a, mut standbys } = group(&paths, &sets, &["b", "c"]);
    let epoch = health(&a)["epoch"].as_u64().unwrap();
    assert_eq!(
        tools::admin_client::metric(
            &tools::admin_client::get(&a.http.to_string(), "/metrics")
                .unwrap()
                .1,
            "surge_standby_state{standby=\"c\",ack=\"durable\"}"
        ),
        Some(2.0)
    );

    // One lost: the other still acks, writes go on, and it holds every one of them.
    kill(&mut standbys[0]);
    wait_attached(&a, 1);
    let last = place_orders(&a, 3, 1, 500);
    assert_eq!(metric(&a, "surge_replication_halted"), 0);
    assert!(metric(&a, "surge_replication_acked_seq") >= last);
    assert_converged(&a, &standbys[1]);

    // Both lost: halt.
    kill(&mut standbys[1]);
    wait_attached(&a, 0);
    assert_eq!(write_code(a.addr, 4, epoch, 1), Code::StandbyUnavailable);
    assert_eq!(metric(&a, "surge_replication_halted"), 1);

    // One back: writes go on again.
    let c = standby(&dirs[2], &a, &named(&sets, "c"));
    wait_streaming_to(&a, 1);
    assert_eq!(write_code(a.addr, 5, epoch, 1), Code::OrderPlaced);
    assert_converged(&a, &c);
}

#[test]
fn durable_on_two_of_two_halts_without_one() {
    let dirs = [temp_dir("k2-a"), temp_dir("k2-b"), temp_dir("k2-c")];
    let sets = pair_sets("durable", "halt", &["replication.sync_standbys=2"]);
    let paths: Vec<&Path> = dirs.iter().map(|d| d.as_ref()).collect();
    let Group { a, mut standbys } = group(&paths, &sets, &["b", "c"]);
    let epoch = health(&a)["epoch"].as_u64().unwrap();
    kill(&mut standbys[0]);
    wait_attached(&a, 1);
    assert_eq!(write_code(a.addr, 4, epoch, 1), Code::StandbyUnavailable);
    assert_eq!(health(&a)["standby"], "detached", "{}", health(&a));
}

#[test]
fn an_async_dr_standby_streams_everything_but_never_holds_a_write_back() {
    let dirs = [temp_dir("dr-a"), temp_dir("dr-b"), temp_dir("dr-dr")];
    let sets = pair_sets(
        "durable",
        "halt",
        &[
            "replication.standby_ack.dr=\"async\"",
            "replication.max_standbys=2",
        ],
    );
    let paths: Vec<&Path> = dirs.iter().map(|d| d.as_ref()).collect();
    let Group { a, mut standbys } = group(&paths, &sets, &["b", "dr"]);
    let epoch = health(&a)["epoch"].as_u64().unwrap();
    let listed = health(&a)["standbys"].clone();
    let modes: Vec<(&str, &str, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["node"].as_str().unwrap(),
                s["ack"].as_str().unwrap(),
                s["counted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(modes.contains(&("b", "durable", true)), "{listed}");
    assert!(modes.contains(&("dr", "async", false)), "{listed}");

    // A third standby finds both slots taken.
    let extra_dir = temp_dir("dr-extra");
    let extra = standby(&extra_dir, &a, &named(&sets, "e"));
    wait_for(Duration::from_secs(10), "STANDBYS_FULL", || {
        a.logs().iter().any(|l| l.contains("STANDBYS_FULL"))
    });
    drop(extra);

    // The synchronous standby lost: the DR standby streams on, but does not keep writes
    // going (it acks nothing that counts).
    kill(&mut standbys[0]);
    wait_attached(&a, 1);
    assert_eq!(write_code(a.addr, 4, epoch, 1), Code::StandbyUnavailable);
    assert_converged(&a, &standbys[1]);
}
