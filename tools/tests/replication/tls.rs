//! TLS on the replication link (`replication.tls_*`): a pair streams and converges over it
//! with client certificates required; a standby without TLS, or with a certificate another CA
//! signed, is refused with 421 `TLS_REQUIRED` on both sides and never streams.

use std::path::Path;
use std::time::Duration;

use crate::harness::{self, temp_dir};
use crate::pki::{pki, Pki};

fn tls_sets(pki: &Pki) -> Vec<String> {
    vec![
        format!("replication.tls_cert={:?}", pki.cert),
        format!("replication.tls_key={:?}", pki.key),
        format!("replication.tls_ca={:?}", pki.ca),
        "replication.tls_client_auth=true".into(),
    ]
}

/// A standby run until its log has `want` (20 s at most): its log.
fn standby_log(dir: &Path, primary: std::net::SocketAddr, sets: &[String], want: &str) -> String {
    harness::log_until(
        &["standby", "--primary", &primary.to_string()],
        dir,
        sets,
        want,
    )
}

#[test]
fn a_pair_streams_over_tls_and_a_standby_without_it_is_refused_with_a_code() {
    let (p, s) = (temp_dir("tls-primary"), temp_dir("tls-standby"));
    let pair = pki(&p, "pair");
    let mut sets = harness::pair_sets("durable", "degrade", &[]);
    sets.extend(tls_sets(&pair));
    let first = harness::primary(&p, &sets);
    let second = harness::standby(&s, &first, &sets);
    harness::wait_streaming(&first);
    harness::add_sku(&first, 1, 5);
    harness::place_orders(&first, 2, 5, 2_000);
    harness::assert_converged(&first, &second);
    // An idle link for many heartbeats (the standby's reads time out between them), then
    // more writes: the TLS session carries on.
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(harness::health(&first)["standby"], "streaming");
    harness::place_orders(&first, 3, 5, 1_000);
    harness::assert_converged(&first, &second);
    drop(second);

    // A standby without TLS: the primary answers it in plaintext with 421, and says so.
    let plain = harness::pair_sets("durable", "degrade", &[]);
    let said = standby_log(
        &temp_dir("tls-plain"),
        first.replication.unwrap(),
        &plain,
        "421",
    );
    assert!(said.contains("TLS_REQUIRED"), "{said}");
    harness::wait_for(Duration::from_secs(10), "the primary's log line", || {
        first
            .logs()
            .iter()
            .any(|l| l.contains("event=replication_handshake_failed") && l.contains("code=421"))
    });

    // A standby whose certificate another CA signed: the handshake fails, nothing streams.
    let stranger = pki(&p, "stranger");
    let mut other = harness::pair_sets("durable", "degrade", &[]);
    other.extend(tls_sets(&Pki {
        ca: pair.ca.clone(),
        ..stranger
    }));
    let said = standby_log(
        &temp_dir("tls-stranger"),
        first.replication.unwrap(),
        &other,
        "421",
    );
    assert!(said.contains("421"), "{said}");
    assert_ne!(harness::health(&first)["standby"], "streaming");
}
