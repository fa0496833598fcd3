//! The HTTP port over TLS (`admin.tls_cert`, `admin.tls_key`): `/health`, `/metrics` and an
//! admin call over HTTPS with the CA that signed the node's certificate; plain HTTP and an
//! unknown CA refused; a key that does not match its certificate refused at start, by name.
//! Its own test binary: the admin client's CA is chosen once per process.

#[path = "common/pki.rs"]
mod pki;
#[path = "common/scratch.rs"]
mod scratch;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tools::serve_process::ServeProcess;

const SURGE: &str = env!("CARGO_BIN_EXE_surge");

#[test]
fn the_http_port_speaks_https_only_with_a_certificate() {
    let dir = scratch::ScratchDir::new("https", "port");
    let pki::Pki { ca, cert, key } = pki::pki(&dir, "node");
    let other_ca = pki::pki(&dir, "other").ca;
    let sets = [
        format!("admin.tls_cert={cert:?}"),
        format!("admin.tls_key={key:?}"),
        "admin.token=t0ken".to_string(),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let node = ServeProcess::start(Path::new(SURGE), &dir.join("data"), &sets).unwrap();
    let http = node.http.to_string();

    // Plain HTTP gets no answer: the port expects a TLS handshake.
    let mut plain = std::net::TcpStream::connect(node.http).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/1.1"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );

    // A CA that did not sign the node's certificate: the call fails, the token never sent.
    let refused = Command::new(SURGE)
        .args([
            "fence", "--http", &http, "--token", "t0ken", "--ca", &other_ca,
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");

    // With the right CA: every call works over HTTPS.
    tools::admin_client::trust_ca(Path::new(&ca)).unwrap();
    let (status, body) = tools::admin_client::get(&http, "/health").unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = tools::admin_client::get(&http, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("surge_durable_seq"));
    let fenced = Command::new(SURGE)
        .args(["fence", "--http", &http, "--token", "t0ken", "--ca", &ca])
        .output()
        .unwrap();
    assert!(fenced.status.success(), "{fenced:?}");
    assert!(String::from_utf8_lossy(&fenced.stdout).contains("\"epoch\":2"));
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_by_name() {
    let dir = scratch::ScratchDir::new("https", "mismatch");
    let cert = pki::pki(&dir, "one").cert;
    let key = pki::pki(&dir, "two").key;
    let out = Command::new(SURGE)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .args(["--set", &format!("admin.tls_cert={cert:?}")])
        .args(["--set", &format!("admin.tls_key={key:?}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("admin.tls_cert"), "{said}");
}
