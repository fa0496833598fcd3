//! The configuration's tests: keys and flags, the example file, refusals by key.

use super::*;

fn load(text: &str, overrides: &[&str]) -> Result<ServerConfig> {
    static FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("surge-config-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let loaded = ServerConfig::load(Some(&path), &overrides);
    let _ = std::fs::remove_file(&path);
    loaded
}

#[test]
fn keys_flags_and_unknown_keys() {
    let c = load(
        "listen = \"127.0.0.1:9000\"\n[gateway]\ntick_ms = 50\n",
        &["gateway.tick_ms=20", "ring.wait=block"],
    )
    .unwrap();
    assert_eq!(c.listen.port(), 9000);
    assert_eq!(c.gateway.tick_ms, 20);
    assert_eq!(c.wait_strategy(3).unwrap(), WaitStrategy::Block);
    let e = load("[gateway]\ntick_msec = 5\n", &[]).unwrap_err();
    assert!(format!("{e:#}").contains("tick_msec"), "{e:#}");
    let e = load("colour = 1\n", &[]).unwrap_err();
    assert!(format!("{e:#}").contains("colour"), "{e:#}");
    assert!(load("[ring]\nslots = 1000\n", &[]).is_err());
    assert!(load("", &["ring.wait=sometimes"]).is_err());
}

#[test]
fn the_example_config_is_valid_and_holds_the_defaults() {
    let text = include_str!("../../../deploy/surge.toml");
    let c = load(text, &[]).unwrap();
    let d = ServerConfig::default();
    assert_eq!(c.gateway.in_flight_max, d.gateway.in_flight_max);
    assert_eq!(c.ring.slots, d.ring.slots);
    // The limits and the snapshot keys a sale day depends on, as the defaults have them.
    assert_eq!(c.engine_config(), d.engine_config());
    assert_eq!(c.engine.fault_in, d.engine.fault_in);
    let (ck, dk) = (&c.checkpoint, &d.checkpoint);
    assert_eq!(
        (
            ck.every_records,
            ck.every_secs,
            ck.full_every,
            ck.keep_chains
        ),
        (
            dk.every_records,
            dk.every_secs,
            dk.full_every,
            dk.keep_chains
        )
    );
    assert_eq!((ck.step_kib, ck.queue_mib), (dk.step_kib, dk.queue_mib));
    let (cs, ds) = (&c.snapshot, &d.snapshot);
    assert_eq!(
        (
            cs.every_records,
            cs.every_secs,
            cs.keep,
            &cs.retention,
            &cs.archive_dir
        ),
        (
            ds.every_records,
            ds.every_secs,
            ds.keep,
            &ds.retention,
            &ds.archive_dir
        )
    );
    assert_eq!(
        (cs.write_piece_kib, cs.write_pause_ms),
        (ds.write_piece_kib, ds.write_pause_ms)
    );
    // The feed is on in the example (a port to name); its sizes are the defaults.
    let (cf, df) = (&c.feed, &d.feed);
    assert!(c.feed.listen_addr().unwrap().is_some());
    assert_eq!(
        (cf.segment_mib, cf.max_mib, cf.max_subscribers, cf.batch_kib),
        (df.segment_mib, df.max_mib, df.max_subscribers, df.batch_kib)
    );
}

#[test]
fn a_secured_etcd_needs_whole_settings() {
    let etcd = [
        "replication.failover=\"etcd\"",
        "replication.listen=\"127.0.0.1:7700\"",
        "replication.node=\"a\"",
        "coordinator.endpoints=[\"127.0.0.1:2379\"]",
    ];
    let with = |extra: &[&str]| {
        let mut sets = etcd.to_vec();
        sets.extend_from_slice(extra);
        load("", &sets)
    };
    assert!(with(&[]).is_ok());
    for (extra, key) in [
        (
            &["coordinator.endpoints=[\"https://127.0.0.1:2379\"]"][..],
            "coordinator.endpoints",
        ),
        (
            &["coordinator.tls_cert=\"c.pem\""][..],
            "coordinator.tls_key",
        ),
        (
            &[
                "coordinator.tls_cert=\"c.pem\"",
                "coordinator.tls_key=\"k.pem\"",
            ][..],
            "coordinator.tls_ca",
        ),
        (
            &["coordinator.username=\"surge\""][..],
            "coordinator.password_file",
        ),
        (
            &["coordinator.password_file=\"pw\""][..],
            "coordinator.username",
        ),
    ] {
        let e = with(extra).unwrap_err();
        assert!(format!("{e:#}").contains(key), "{extra:?}: {e:#}");
    }
    // Files are read when the access is built: a missing one is named.
    let c = with(&[
        "coordinator.username=\"surge\"",
        "coordinator.password_file=\"/nonexistent/pw\"",
    ])
    .unwrap();
    let e = c.etcd_access().err().expect("no password file");
    assert!(format!("{e:#}").contains("/nonexistent/pw"), "{e:#}");
    let c = with(&["coordinator.tls_ca=\"/nonexistent/ca.pem\""]).unwrap();
    let e = c.etcd_access().err().expect("no CA file");
    assert!(format!("{e:#}").contains("coordinator.tls_ca"), "{e:#}");
    assert!(ServerConfig::default().etcd_access().unwrap().tls.is_none());
}

#[test]
fn a_feed_needs_sane_sizes_and_no_snapshots() {
    let on = "feed.listen=\"127.0.0.1:0\"";
    assert!(load("", &[on]).is_ok());
    // The feed stage writes it, from the serving engine: no second engine is needed.
    let one_engine = [on, "snapshot.every_records=0", "snapshot.every_secs=0"];
    assert!(load("", &one_engine).is_ok());
    for (set, key) in [
        ("feed.max_mib=1", "feed.max_mib"),
        ("feed.batch_kib=4096", "feed.batch_kib"),
        ("feed.max_subscribers=0", "feed.max_subscribers"),
    ] {
        let e = load("", &[on, set]).unwrap_err();
        assert!(format!("{e:#}").contains(key), "{set}: {e:#}");
    }
    let e = load("", &["replication.tls_cert=\"/etc/surge/cert.pem\""]).unwrap_err();
    assert!(format!("{e:#}").contains("replication.tls_ca"), "{e:#}");
    let e = load("", &["admin.tls_cert=\"/etc/surge/cert.pem\""]).unwrap_err();
    assert!(format!("{e:#}").contains("admin.tls_key"), "{e:#}");
    let e = load("", &["feed.listen=\"nowhere\""]).unwrap_err();
    assert!(format!("{e:#}").contains("feed.listen"), "{e:#}");
}

#[test]
fn bad_limits_and_snapshot_keys_are_refused_by_name() {
    let cases: &[(&str, &str)] = &[
        ("engine.orders_max=0", "engine.orders_max"),
        ("engine.orders_max=4294967296", "engine.orders_max"),
        (
            "engine.orders_retired_max=4294967295",
            "engine.orders_retired_max",
        ),
        ("engine.fault_in=later", "engine.fault_in"),
        ("snapshot.keep=0", "snapshot.keep"),
        ("checkpoint.keep_chains=0", "checkpoint.keep_chains"),
        ("cores.layout=spread", "cores.layout"),
        ("checkpoint.step_kib=0", "checkpoint.step_kib"),
        ("checkpoint.queue_mib=100000", "checkpoint.queue_mib"),
        ("snapshot.write_piece_kib=0", "snapshot.write_piece_kib"),
        ("snapshot.retention=shred", "snapshot.retention"),
        ("journal.commits_in_flight=0", "journal.commits_in_flight"),
        ("journal.commits_in_flight=5", "journal.commits_in_flight"),
        ("journal.io=\"fast\"", "journal.io"),
        (
            "replication.listen=\"10.0.0.1:7700\"",
            "replication.allow_plaintext",
        ),
    ];
    for &(set, key) in cases {
        let e = load("", &[set]).expect_err(set);
        assert!(format!("{e:#}").contains(key), "{set}: {e:#}");
    }
    // One commit at a time only, and not quietly turned into something else.
    for io in ["uring", "direct"] {
        let io = format!("journal.io=\"{io}\"");
        load("", &[&io]).unwrap();
        let e = load("", &[&io, "journal.commits_in_flight=2"]).expect_err(&io);
        assert!(
            format!("{e:#}").contains("journal.commits_in_flight"),
            "{e:#}"
        );
    }
}
