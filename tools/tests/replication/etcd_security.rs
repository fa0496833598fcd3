//! Failover through a secured etcd, started by the test: HTTPS only on its client port, a
//! client certificate required (`--client-cert-auth`), and etcd's authentication on with a
//! user that may read and write under `/surge` only. The coordinator's client reaches it
//! only with the CA, its certificate and the password; it buys a token again when the old
//! one expires; and `surge serve` with `[coordinator]` TLS and credentials becomes the
//! primary through it, as `surge status --config` then shows.
//!
//! Without etcd on the PATH these tests say so and pass, unless `SURGE_REQUIRE_ETCD=1`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use coordinator::local_etcd::{self, LocalEtcd, Secured};
use coordinator::{Credentials, Etcd, EtcdAccess, EtcdError};

use crate::etcd_failover::{node, wait_role};
use crate::harness::*;
use crate::pki::{pki_with_client, Pki};

const USER: &str = "surge";
const PASSWORD: &str = "correct horse battery staple";
/// etcd's `--auth-token-ttl`: short, so that a test sees a token expire.
const TOKEN_TTL_SECS: u64 = 2;

/// etcd's CA, certificate and key, and a client certificate (no CommonName: etcd 3.4's
/// gateway refuses one with a CN under `--client-cert-auth`) with its key.
struct Certificates {
    etcd: Pki,
    client: (String, String),
}

fn client_tls(certs: &Certificates, with_certificate: bool) -> Arc<rustls::ClientConfig> {
    let (cert, key) = &certs.client;
    server::config::tls::client_config(
        Path::new(&certs.etcd.ca),
        with_certificate.then(|| (Path::new(cert), Path::new(key))),
        "test",
    )
    .unwrap()
}

fn secured_etcd(dir: &Path) -> Option<(LocalEtcd, Certificates)> {
    if !local_etcd::installed_or_required() {
        return None;
    }
    let (etcd, client) = pki_with_client(dir, "etcd");
    let pki = Certificates { etcd, client };
    let mut etcd = LocalEtcd::start_secured(
        &dir.join("etcd"),
        Secured {
            ca: pki.etcd.ca.clone().into(),
            cert: pki.etcd.cert.clone().into(),
            key: pki.etcd.key.clone().into(),
            client_certs: true,
            token_ttl_secs: TOKEN_TTL_SECS,
            client_tls: client_tls(&pki, true),
        },
    )
    .unwrap();
    etcd.enable_auth("/surge", USER, PASSWORD).unwrap();
    Some((etcd, pki))
}

fn client(
    etcd: &LocalEtcd,
    tls: Option<Arc<rustls::ClientConfig>>,
    password: Option<&str>,
) -> Etcd {
    Etcd::with_access(
        vec![etcd.endpoint.clone()],
        Duration::from_secs(2),
        EtcdAccess {
            tls,
            credentials: password.map(|p| Credentials {
                user: USER.into(),
                password: p.into(),
            }),
        },
    )
}

#[test]
fn a_secured_etcd_answers_only_tls_with_a_certificate_and_the_password() {
    let dir = temp_dir("etcd-secured");
    let Some((etcd, pki)) = secured_etcd(&dir) else {
        return;
    };
    // Plain HTTP to the TLS port: no HTTP answer.
    assert!(client(&etcd, None, Some(PASSWORD)).grant(2).is_err());
    // TLS without a client certificate: the handshake is refused.
    let e = client(&etcd, Some(client_tls(&pki, false)), Some(PASSWORD))
        .grant(2)
        .unwrap_err();
    assert!(matches!(e, EtcdError::Unreachable(_)), "{e}");
    // TLS and a certificate, but a wrong password, or none.
    let e = client(&etcd, Some(client_tls(&pki, true)), Some("wrong"))
        .grant(2)
        .unwrap_err();
    assert!(e.to_string().contains("authentication failed"), "{e}");
    let e = client(&etcd, Some(client_tls(&pki, true)), None)
        .put("/surge/x", b"1", 0)
        .unwrap_err();
    assert!(matches!(e, EtcdError::Refused(_)), "{e}");

    // Everything right: a lease, keys under the prefix; nothing outside it.
    let etcd_ok = client(&etcd, Some(client_tls(&pki, true)), Some(PASSWORD));
    let lease = etcd_ok.grant(2).unwrap();
    etcd_ok.put("/surge/leased", b"yes", lease).unwrap();
    etcd_ok.put("/surge/probe", b"yes", 0).unwrap();
    assert_eq!(etcd_ok.get("/surge/probe").unwrap().unwrap().value, b"yes");
    let e = etcd_ok.put("/elsewhere", b"no", 0).unwrap_err();
    assert!(e.to_string().contains("permission denied"), "{e}");
    assert_eq!(etcd_ok.authentications(), 1);

    // Idle past the token's TTL: the next call is answered 401, a new token is bought, and
    // the call goes through.
    std::thread::sleep(Duration::from_secs(TOKEN_TTL_SECS * 2 + 1));
    assert_eq!(etcd_ok.get("/surge/probe").unwrap().unwrap().value, b"yes");
    assert_eq!(etcd_ok.authentications(), 2);
}

#[test]
fn surge_serve_leads_through_a_secured_etcd() {
    let dir = temp_dir("etcd-secured-serve");
    let Some((etcd, pki)) = secured_etcd(&dir) else {
        return;
    };
    let password_file = dir.join("etcd-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let coordinator = [
        format!("coordinator.endpoints=[\"{}\"]", etcd.endpoint),
        format!("coordinator.tls_ca={:?}", pki.etcd.ca),
        format!("coordinator.tls_cert={:?}", pki.client.0),
        format!("coordinator.tls_key={:?}", pki.client.1),
        format!("coordinator.username=\"{USER}\""),
        format!(
            "coordinator.password_file={:?}",
            password_file.display().to_string()
        ),
    ];
    let sets = |name: &str| {
        let mut sets = pair_sets(
            "durable",
            "halt",
            &[
                "replication.failover=\"etcd\"",
                &format!("replication.node=\"{name}\""),
                "coordinator.lease_ms=2000",
                "coordinator.margin_ms=500",
            ],
        );
        sets.extend(coordinator.iter().cloned());
        sets
    };
    let a = node(&dir.join("a"), &sets("a"));
    wait_role(&a, "primary", Duration::from_secs(10));
    assert!(
        a.logs()
            .iter()
            .any(|l| l.contains("event=coordinator_connected") && l.contains("tls+auth(surge)")),
        "{:#?}",
        a.logs()
    );
    // A node with a wrong password does not start serving: it says etcd refused it, and why.
    let wrong_file = dir.join("wrong-password");
    std::fs::write(&wrong_file, "not it\n").unwrap();
    let mut wrong = sets("c");
    wrong.push(format!(
        "coordinator.password_file={:?}",
        wrong_file.display().to_string()
    ));
    let log = log_until(
        &["serve"],
        &dir.join("c"),
        &wrong,
        "event=coordinator_refused",
    );
    assert!(!log.contains("event=serving"), "{log}");
    let refused = log
        .lines()
        .find(|l| l.contains("event=coordinator_refused"))
        .unwrap_or_else(|| panic!("not refused: {log}"));
    assert!(
        refused.contains("code=418") && refused.contains("authentication failed"),
        "{refused}"
    );

    let b = node(&dir.join("b"), &sets("b"));
    assert!(b.logged("following_leader"), "{:#?}", b.logs());
    wait_streaming(&a);
    add_sku(&a, 1, 5);
    assert!(place_orders(&a, 2, 5, 20) > 0);
    assert_eq!(metric(&a, "surge_coordinator_leader"), 1);
    // Renewals outlive the token's TTL: the node still leads after several of them, and
    // since every renewal uses the token, it did not expire.
    std::thread::sleep(Duration::from_secs(TOKEN_TTL_SECS * 2));
    assert_eq!(metric(&a, "surge_coordinator_leader"), 1);
    assert_eq!(metric(&a, "surge_coordinator_authentications_total"), 1);
    assert_eq!(metric(&a, "surge_coordinator_reachable"), 1);
    assert_eq!(metric(&b, "surge_coordinator_reachable"), 1);

    // `surge status` reaches the same etcd with the node's [coordinator] settings.
    let mut status = std::process::Command::new(exe());
    status.args(["status", "--json"]);
    for set in &coordinator {
        status.args(["--set", set]);
    }
    let out = status.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["leader"]["node"], "a", "{status}");
    // Without them it gets no answer, and says what may be missing.
    let out = std::process::Command::new(exe())
        .args(["status", "--etcd", &etcd.endpoint])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("coordinator.tls_ca"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
