//! The client port over TLS (`gateway.tls_cert`, `gateway.tls_key`): the Rust client with the
//! CA that signed the node's certificate handshakes, pipelines thousands of orders and gets
//! every answer; a plain client gets no WELCOME; a certificate from another CA is refused by
//! the client; a key that is not the certificate's stops the start, naming the keys.

#[path = "common/pki.rs"]
mod pki;
#[path = "common/scratch.rs"]
mod scratch;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use engine::wire::Operation;
use engine::{ClientId, Code, Command as EngineCommand, OrderLine, SkuId, SkuSpec, UserId};
use loadgen::client::{Client, ClientTls};
use rustls::pki_types::ServerName;
use tools::serve_process::ServeProcess;

const SURGE: &str = env!("CARGO_BIN_EXE_surge");

fn client_tls(ca: &str) -> ClientTls {
    let roots = replicator::tls::pem_roots(Path::new(ca)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    ClientTls {
        config: Arc::new(config),
        server_name: ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into()),
    }
}

#[test]
fn the_client_port_speaks_tls_only_with_a_certificate() {
    let dir = scratch::ScratchDir::new("client-tls", "port");
    let pki::Pki { ca, cert, key } = pki::pki(&dir, "node");
    let other_ca = pki::pki(&dir, "other").ca;
    let sets = [
        format!("gateway.tls_cert={cert:?}"),
        format!("gateway.tls_key={key:?}"),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let node = ServeProcess::start(Path::new(SURGE), &dir.join("data"), &sets).unwrap();
    assert!(node.logs().iter().any(|l| l.contains("client_tls=true")));
    let timeout = Duration::from_secs(5);

    let tls = client_tls(&ca);
    let mut c = Client::connect_with(node.addr, ClientId(1), timeout, 0, Some(&tls)).unwrap();
    let upsert = c
        .call(Operation::Command(EngineCommand::UpsertSku(SkuSpec {
            sku: SkuId(1),
            price: 100,
            stock: 2_000,
            per_user_limit: 1_000_000,
            sale_window: None,
        })))
        .unwrap();
    assert_eq!(upsert.reply.code(), Code::SkuUpserted, "{upsert:?}");
    // Enough pipelined at once that answers and requests cross the session's buffers.
    let n = 3_000u64;
    for user in 0..n {
        let id = c.next_request_id();
        let place = Operation::Command(EngineCommand::PlaceOrder {
            user: UserId(user),
            lines: vec![OrderLine {
                sku: SkuId(1),
                qty: 1,
            }],
            join_waitlist: false,
        });
        c.send(id, &place).unwrap();
    }
    c.flush().unwrap();
    let mut placed = 0;
    for _ in 0..n {
        if c.recv_answer().unwrap().reply.code() == Code::OrderPlaced {
            placed += 1;
        }
    }
    assert_eq!(placed, 2_000);

    // Without TLS the port sends nothing a client can read as a WELCOME.
    let plain = Client::connect_timeout(node.addr, ClientId(2), Duration::from_secs(2));
    assert!(plain.is_err(), "a plain client was welcomed");
    // A CA that did not sign the node's certificate: the client refuses the handshake.
    let wrong = Client::connect_with(
        node.addr,
        ClientId(3),
        timeout,
        0,
        Some(&client_tls(&other_ca)),
    );
    assert!(wrong.is_err(), "a certificate from another CA was taken");
    // The node still serves TLS clients after both.
    let mut again = Client::connect_with(node.addr, ClientId(4), timeout, 0, Some(&tls)).unwrap();
    let id = again.next_request_id();
    let query = Operation::Query(engine::Query::Stock { sku: SkuId(1) });
    again.send(id, &query).unwrap();
    again.flush().unwrap();
    assert!(again.recv_answer().is_ok());
}

#[test]
fn a_client_port_key_that_is_not_the_certificates_is_refused_by_name() {
    let dir = scratch::ScratchDir::new("client-tls", "mismatch");
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
        .args(["--set", &format!("gateway.tls_cert={cert:?}")])
        .args(["--set", &format!("gateway.tls_key={key:?}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("gateway.tls_cert"), "{said}");
}
