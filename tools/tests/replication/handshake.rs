//! The replication handshake is a challenge–response: the secret never crosses the link (the
//! bytes are captured by a forwarding proxy), a recorded handshake replayed on a new
//! connection is refused (the primary checks the standby's proof), and with different secrets
//! the standby finds the primary's proof wrong and follows nothing.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use replicator::wire::{self, kind, Message};
use replicator::ReplicationCode;

use crate::harness::*;

const SECRET: &str = "test-secret";

/// Forward one connection at a time from a local port to `to`, keeping every byte each way:
/// `(standby → primary, primary → standby)`.
#[allow(clippy::type_complexity)]
fn recording_proxy(to: SocketAddr) -> (SocketAddr, Arc<Mutex<(Vec<u8>, Vec<u8>)>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(to) else {
                continue;
            };
            let pump = |mut from: TcpStream, mut to: TcpStream, upstream: bool| {
                let seen = kept.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64 << 10];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        let mut seen = seen.lock().unwrap();
                        let side = if upstream { &mut seen.0 } else { &mut seen.1 };
                        side.extend_from_slice(&buf[..n]);
                    }
                    let _ = to.shutdown(Shutdown::Both);
                });
            };
            pump(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                true,
            );
            pump(server, client, false);
        }
    });
    (addr, seen)
}

/// The first `n` frames of a captured stream, each whole (length prefix included).
fn frames(bytes: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while out.len() < n {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(bytes[at..at + 4 + len].to_vec());
        at += 4 + len;
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_secret_never_crosses_the_link_and_a_replayed_handshake_is_refused() {
    let dir = temp_dir("handshake");
    let sets = pair_sets("durable", "degrade", &[]);
    let a = primary(&dir.join("a"), &sets);
    let (proxy, seen) = recording_proxy(a.replication.unwrap());
    let _b = tools::serve_process::ServeProcess::start_standby(
        exe(),
        &dir.join("b"),
        proxy,
        &refs(&sets),
    )
    .unwrap();
    wait_streaming(&a);
    add_sku(&a, 1, 5);
    place_orders(&a, 2, 5, 100);

    let (upstream, downstream) = seen.lock().unwrap().clone();
    assert!(upstream.len() > 100 && downstream.len() > 1000);
    assert!(
        !contains(&upstream, SECRET.as_bytes()),
        "the standby sent the secret"
    );
    assert!(
        !contains(&downstream, SECRET.as_bytes()),
        "the primary sent the secret"
    );
    assert_eq!(upstream[4], kind::HELLO);

    // The bootstrap connection came first (HELLO, PROOF), then the session's: replay the
    // session's HELLO and PROOF on a new connection.
    let mut replay = TcpStream::connect(a.replication.unwrap()).unwrap();
    replay
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let recorded = frames(&upstream, 2);
    assert_eq!(recorded[1][4], kind::PROOF);
    replay.write_all(&recorded[0]).unwrap();
    let mut buf = Vec::new();
    let challenge = wire::receive(&mut replay, &mut buf).unwrap();
    assert!(
        matches!(challenge, Message::Challenge { .. }),
        "{challenge:?}"
    );
    replay.write_all(&recorded[1]).unwrap();
    match wire::receive(&mut replay, &mut buf).unwrap() {
        Message::Refuse { code, .. } => assert_eq!(code, ReplicationCode::BadSecret.number()),
        other => panic!("a replayed handshake was answered {other:?}"),
    }
    wait_for(Duration::from_secs(5), "the refusal logged", || {
        a.logs()
            .iter()
            .any(|l| l.contains("event=standby_refused") && l.contains("code=400"))
    });
}

#[test]
fn a_standby_with_another_secret_refuses_the_primary_and_does_not_start() {
    let dir = temp_dir("wrong-secret");
    let sets = pair_sets("async", "degrade", &[]);
    let a = primary(&dir.join("a"), &sets);
    let mut wrong = sets.clone();
    wrong.push("replication.secret=not-the-secret".into());
    // A new standby: it finds the primary's proof wrong, refuses it, and does not start.
    let refused = tools::serve_process::ServeProcess::start_standby(
        exe(),
        &dir.join("b"),
        a.replication.unwrap(),
        &refs(&wrong),
    )
    .err()
    .expect("a standby with the wrong secret started");
    let said = format!("{refused:#}");
    assert!(
        said.contains("400 BAD_SECRET")
            && said.contains("could not prove it knows replication.secret"),
        "{said}"
    );
    // The primary got the standby's refusal instead of a proof.
    wait_for(
        Duration::from_secs(5),
        "the primary to log the refusal",
        || {
            a.logs()
                .iter()
                .any(|l| l.contains("event=standby_refused") && l.contains("code=400"))
        },
    );
    assert_eq!(health(&a)["standby"], "detached", "{}", health(&a));
}
