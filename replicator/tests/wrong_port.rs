//! A standby pointed at something that is not a primary's replication port says so. The fake
//! "servers" here answer the HELLO with the bytes a surge client port sends (the client
//! protocol's ERROR frame, docs/PROTOCOL.md, laid out by hand: this crate does not depend on
//! `engine`), or with what an HTTP server sends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use replicator::clock::SystemClock;
use replicator::follower::{AckSignal, Ended, Follower, Link, Sink, StandbyNode, Standing};
use replicator::{Epochs, ReplicationCode, Settings};

/// Each case's handshake must end within this (the handshake's own read timeout is 5 s).
const CASE_TIMEOUT: Duration = Duration::from_secs(20);

/// The client protocol's ERROR frame: `u32 len, u8 kind = 6, u16 code, u16 n, n bytes`.
fn client_error_frame(code: u16, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((1 + 2 + 2 + message.len()) as u32).to_le_bytes());
    out.push(6);
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(message.len() as u16).to_le_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

/// One connection on 127.0.0.1: read the standby's HELLO frame, answer `answer`, close.
fn answering(answer: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(CASE_TIMEOUT)).unwrap();
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).unwrap();
        let mut frame = vec![0u8; u32::from_le_bytes(len) as usize];
        stream.read_exact(&mut frame).unwrap();
        assert_eq!(frame[0], 1, "the standby sends a HELLO first");
        stream.write_all(&answer).unwrap();
    });
    addr
}

/// A new standby as a session sees it: nothing held, any primary's epochs taken.
struct NewStandby;

impl StandbyNode for NewStandby {
    fn standing(&self) -> Standing {
        Standing {
            epochs: Epochs {
                epoch: 0,
                history: Vec::new(),
            },
            follows: true,
            received: 0,
            durable: 0,
            applied: 0,
            hash: 0,
        }
    }
    fn adopt(&self, _: u64, _: &[(u64, u64)], _: &[u8]) -> std::io::Result<Result<(), String>> {
        panic!("not a primary, yet the handshake passed")
    }
    fn following(&self, _: u64, _: u64, _: u64) {}
}

struct NoSink;

impl Sink for NoSink {
    fn records(&mut self, _: u64, _: u64, _: &[u8]) -> Result<(), (ReplicationCode, String)> {
        unreachable!()
    }
    fn checkpoint(&mut self, _: u64, _: u64) -> Result<(), (ReplicationCode, String)> {
        unreachable!()
    }
    fn snapshot_piece(&mut self, _: u64, _: &[u8]) -> Result<(), (ReplicationCode, String)> {
        unreachable!()
    }
}

/// The standby's first session with `addr`, bounded by `CASE_TIMEOUT`.
fn handshake(addr: SocketAddr) -> Ended {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let settings = Settings {
            secret: b"s3cret".to_vec(),
            heartbeat: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
        };
        let follower = Follower::new(
            settings,
            "standby".into(),
            Vec::new(),
            Arc::new(Link::default()),
            Arc::new(SystemClock::new()),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AckSignal::default()),
        );
        let ended = follower.session(&replicator::net::TcpDialer, addr, &NewStandby, &mut NoSink);
        let _ = done.send(ended);
    });
    result
        .recv_timeout(CASE_TIMEOUT)
        .expect("the handshake ended in time")
}

fn refused(ended: Ended) -> (ReplicationCode, String) {
    match ended {
        Ended::Refused(code, message) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_client_ports_error_frame_is_not_taken_for_a_replication_message() {
    // What surge's client port sends for a replication HELLO (209 MALFORMED_FRAME, "frame
    // kind 1": a 16-byte body, which also reads as a replication CHECKPOINT), and another
    // length of message.
    for (code, message) in [
        (209, "frame kind 1"),
        (203, "not a surge client: bad magic"),
    ] {
        let addr = answering(client_error_frame(code, message));
        let (got, why) = refused(handshake(addr));
        assert_eq!(got, ReplicationCode::NotAReplicationPort, "{why}");
        assert!(
            why.contains(&format!("{addr} answered but is not a replication port")),
            "{why}"
        );
        assert!(why.contains("surge client port"), "{why}");
        assert!(why.contains("--primary"), "{why}");
        assert!(why.contains("replication.listen"), "{why}");
        assert!(why.contains(message), "{why}");
    }
}

#[test]
fn an_answer_that_is_no_replication_frame_at_all_is_refused_too() {
    let addr = answering(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec());
    let (got, why) = refused(handshake(addr));
    assert_eq!(got, ReplicationCode::NotAReplicationPort, "{why}");
    assert!(why.contains("replication.listen"), "{why}");
    assert!(!why.contains("client port"), "{why}");
}
