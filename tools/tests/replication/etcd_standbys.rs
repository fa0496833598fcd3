//! Failover through etcd with two standbys in sync, "durable on 1 of 2", against a real etcd
//! the test starts: etcd names both; a standby that is lost is un-named once the other holds
//! everything released, and named again once it streams; SIGKILL of the primary: each
//! standby publishes how far it got, the furthest takes over with every acknowledged write,
//! and the other follows it to the same hash.
//!
//! Without etcd on the PATH these tests say so and pass, unless `SURGE_REQUIRE_ETCD=1`.

use std::time::{Duration, Instant};

use coordinator::local_etcd::LocalEtcd;
use coordinator::SyncRecord;

use crate::etcd_failover::{elected_sets, etcd_or_skip, node, surge_status, wait_role};
use crate::harness::*;

fn sets(etcd: &LocalEtcd, name: &str) -> Vec<String> {
    let mut sets = elected_sets(etcd, name, "durable");
    sets.push("replication.sync_standbys=1".into());
    sets
}

/// The members etcd names in sync now, sorted.
fn members(etcd: &LocalEtcd) -> Vec<String> {
    let mut members = etcd
        .client()
        .get("/surge/sync")
        .ok()
        .flatten()
        .and_then(|kv| SyncRecord::decode(&kv.value))
        .map(|r| r.members)
        .unwrap_or_default();
    members.sort();
    members
}

fn wait_members(etcd: &LocalEtcd, want: &[&str]) {
    wait_for(
        Duration::from_secs(15),
        &format!("{want:?} in sync"),
        || members(etcd) == want,
    );
}

#[test]
fn with_two_standbys_in_sync_the_furthest_takes_over_and_the_other_follows_it() {
    let dir = temp_dir("etcd-two-standbys");
    let Some(etcd) = etcd_or_skip(&dir) else {
        return;
    };
    let mut a = node(&dir.join("a"), &sets(&etcd, "a"));
    assert!(a.logged("elected"), "{:#?}", a.logs());
    let b = node(&dir.join("b"), &sets(&etcd, "b"));
    let c = node(&dir.join("c"), &sets(&etcd, "c"));
    wait_members(&etcd, &["b", "c"]);
    add_sku(&a, 1, 5);
    place_orders(&a, 2, 5, 300);

    // c lost: b alone acks, so c is un-named once b holds everything released; back, it is
    // named again.
    c.signal(libc::SIGSTOP);
    place_orders(&a, 3, 5, 300);
    wait_members(&etcd, &["b"]);
    c.signal(libc::SIGCONT);
    wait_members(&etcd, &["b", "c"]);
    let acknowledged = place_orders(&a, 4, 5, 300);
    let status = surge_status(&etcd);
    let listed = &status["nodes"][0]["health"]["standbys"];
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{status}");

    let killed = Instant::now();
    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(10)).unwrap();
    let lease = Duration::from_millis(2000);
    let (winner, (mut other, name)) = {
        let deadline = killed + lease + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "no one took over");
            if health(&b)["role"] == "primary" {
                break (b, (c, "c"));
            }
            if health(&c)["role"] == "primary" {
                break (c, (b, "b"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_role(&winner, "primary", Duration::from_secs(1));
    let applied = health(&winner)["applied_seq"].as_u64().unwrap();
    assert!(
        applied >= acknowledged,
        "{applied} < acknowledged {acknowledged}"
    );
    // Both published how far they got for the term that ended.
    let positions = surge_status(&etcd)["positions"].clone();
    assert_eq!(positions.as_array().map(Vec::len), Some(2), "{positions}");

    // The other standby rejoins the winner (it exits 75 and is started again, as its unit
    // would), and converges.
    let status = other.wait_exit(Duration::from_secs(15)).unwrap();
    assert_eq!(status.code(), Some(75), "{:#?}", other.logs());
    drop(other);
    let other = node(&dir.join(name), &sets(&etcd, name));
    assert!(other.logged("following_leader"), "{:#?}", other.logs());
    wait_for(
        Duration::from_secs(30),
        "the other standby streaming",
        || {
            health(&winner)["standbys"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["node"] == name && s["state"] == "streaming")
            })
        },
    );
    place_orders(&winner, 5, 5, 100);
    assert_converged(&winner, &other);
}
