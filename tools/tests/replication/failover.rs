use tools::drill::{drill, Args};

fn args(failover: &str) -> Args {
    Args {
        rounds: 1,
        duration: 3.0,
        rate: 2_000.0,
        connections: 2,
        ack: "durable".into(),
        stop: "kill".into(),
        failover: failover.into(),
        heartbeat_ms: 20,
        timeout_ms: 200,
        json: None,
        keep: false,
        sets: Vec::new(),
        lease_ms: 2000,
    }
}

/// SIGKILL of the primary under load, `durable` acks: after promotion every order in the
/// load generator's ack log is on the new primary exactly once, the stock adds up, and the
/// old primary rejoins as a standby with the same rolling hash.
#[test]
fn sigkill_under_load_loses_no_acknowledged_order_and_the_old_primary_rejoins() {
    let rounds = drill(&args("manual")).unwrap();
    let r = &rounds[0];
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert!(r.acked > 500, "{r:?}");
    assert_eq!((r.lost, r.duplicates), (0, 0));
    assert!(r.failovers > 0, "the load generator never moved: {r:?}");
    assert!(r.rejoined_same_hash);
    assert!(r.promote_us.is_some());
}

/// The same with both nodes checkpointing their engines every 500 records and no snapshots:
/// the old primary restarts from its checkpoints, its failback cut removes those past the
/// cut, and it rejoins with the same hash.
#[test]
fn with_checkpoints_a_sigkilled_primary_rejoins_through_its_cut_with_the_same_hash() {
    let mut a = args("manual");
    a.sets = [
        "checkpoint.every_records=500",
        "checkpoint.full_every=3",
        "snapshot.every_records=0",
        "snapshot.every_secs=0",
    ]
    .map(String::from)
    .to_vec();
    let rounds = drill(&a).unwrap();
    let r = &rounds[0];
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert!(r.acked > 500, "{r:?}");
    assert_eq!((r.lost, r.duplicates), (0, 0));
    assert!(r.rejoined_same_hash, "{r:?}");
}

/// With `failover = "auto"` the standby promotes itself once the primary is silent.
#[test]
fn auto_failover_promotes_the_standby_when_the_primary_dies() {
    let rounds = drill(&args("auto")).unwrap();
    let r = &rounds[0];
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!((r.lost, r.duplicates), (0, 0));
    // Nobody called promote: the standby promoted itself and took the probe's write.
    assert!(r.promote_us.is_none() && r.stop_to_write_us > 0, "{r:?}");
    assert!(r.failovers > 0, "{r:?}");
}

/// `surge drill --failover etcd`: two rounds of SIGKILL under load with an etcd the drill
/// starts itself; the standby takes over by itself, nothing acknowledged is lost, and the old
/// primary rejoins (run by the same `surge serve`) with the same hash. Needs etcd (skipped
/// without it unless `SURGE_REQUIRE_ETCD=1`).
#[test]
fn the_drill_fails_over_through_etcd() {
    if !coordinator::local_etcd::installed_or_required() {
        return;
    }
    let mut a = args("etcd");
    a.rounds = 2;
    a.duration = 1.0;
    let rounds = drill(&a).unwrap();
    for r in &rounds {
        assert!(r.problems.is_empty(), "{:#?}", r.problems);
        assert!(r.acked > 100, "{r:?}");
        assert_eq!((r.lost, r.duplicates), (0, 0));
        assert!(r.promote_us.is_none() && r.stop_to_write_us > 0, "{r:?}");
        assert!(r.rejoined_same_hash, "{r:?}");
    }
}
