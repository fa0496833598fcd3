//! The client against a real etcd (started here): leases expire unless kept alive, a key
//! under a lease goes with it, and the campaign transaction lets exactly one node take the
//! leader key and move the epoch counter. Needs `etcd` on the PATH: without it the test says
//! so and passes, unless `SURGE_REQUIRE_ETCD=1` (set in CI).

use std::time::{Duration, Instant};

use coordinator::local_etcd::{self, LocalEtcd};
use coordinator::{Kv, LeaderRecord};

fn etcd_or_skip(name: &str) -> Option<(LocalEtcd, std::path::PathBuf)> {
    if !local_etcd::installed_or_required() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("surge-etcd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Some((LocalEtcd::start(&dir).unwrap(), dir))
}

#[test]
fn one_campaign_wins_and_the_key_goes_with_its_lease() {
    let Some((etcd, dir)) = etcd_or_skip("campaign") else {
        return;
    };
    let client = etcd.client();
    let (a, b) = (client.grant(2).unwrap(), client.grant(2).unwrap());
    assert_eq!(client.keep_alive(a).unwrap(), Some(2));
    let record = |node: &str, epoch| {
        LeaderRecord {
            node: node.into(),
            epoch,
        }
        .encode()
    };
    assert!(client.get("/t/leader").unwrap().is_none());
    assert!(client
        .campaign(
            "/t/leader",
            &record("a", 1),
            a,
            "/t/epoch",
            None,
            &record("a", 1),
            &[("/t/sync", b"x")]
        )
        .unwrap());
    assert_eq!(client.get("/t/sync").unwrap().unwrap().value, b"x");
    // The loser: the key is held, and the counter moved under it.
    assert!(!client
        .campaign(
            "/t/leader",
            &record("b", 1),
            b,
            "/t/epoch",
            None,
            &record("b", 1),
            &[]
        )
        .unwrap());
    let held = client.get("/t/leader").unwrap().unwrap();
    assert_eq!(LeaderRecord::decode(&held.value).unwrap().node, "a");
    assert_eq!(held.lease, a);
    let epoch: Kv = client.get("/t/epoch").unwrap().unwrap();
    assert_eq!(
        LeaderRecord::decode(&epoch.value).unwrap(),
        LeaderRecord {
            node: "a".into(),
            epoch: 1
        }
    );

    // a stops renewing: within its TTL (plus etcd's own check interval) the key is gone,
    // and b's campaign, from the counter it saw, takes epoch 2.
    let started = Instant::now();
    while client.get("/t/leader").unwrap().is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "the key outlived its lease"
        );
        client.keep_alive(b).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        client.keep_alive(a).unwrap(),
        None,
        "an expired lease renews"
    );
    assert!(client
        .campaign(
            "/t/leader",
            &record("b", 2),
            b,
            "/t/epoch",
            Some(&epoch),
            &record("b", 2),
            &[]
        )
        .unwrap());
    // A campaign from a stale view of the counter fails even with the key free.
    assert!(client.delete_if_leased("/t/leader", b).unwrap());
    let c = client.grant(2).unwrap();
    assert!(!client
        .campaign(
            "/t/leader",
            &record("c", 2),
            c,
            "/t/epoch",
            Some(&epoch),
            &record("c", 2),
            &[]
        )
        .unwrap());
    assert!(client.time_to_live(b).unwrap().is_some_and(|ttl| ttl <= 2));
    client.put("/t/nodes/x", b"1", 0).unwrap();
    client.put("/t/nodes/y", b"2", 0).unwrap();
    client.put("/t/nodesz", b"3", 0).unwrap();
    let nodes: Vec<String> = client
        .get_prefix("/t/nodes/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(nodes, ["/t/nodes/x", "/t/nodes/y"]);
    client.revoke(c).unwrap();
    assert_eq!(client.keep_alive(c).unwrap(), None);
    drop(etcd);
    let _ = std::fs::remove_dir_all(&dir);
}
