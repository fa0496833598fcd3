//! Clients that misbehave: garbage, impossible lengths, half a frame then silence, a client
//! that never reads, a storm of connects, one connection too many. The server stays up,
//! its memory stays bounded, and a well-behaved client keeps being served throughout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use engine::wire::{self, frame_kind, ErrorFrame};
use engine::Code;

use super::harness::*;

/// Read until the server closes; the code of the ERROR frame it sent first, if any.
fn closing_code(stream: &mut TcpStream) -> Option<u16> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let mut at = 0;
    while let Ok(Some(frame)) = wire::split_frame(&bytes[at..]) {
        if frame.kind == frame_kind::ERROR {
            return Some(ErrorFrame::decode(frame.body).unwrap().code);
        }
        at += frame.len;
    }
    None
}

fn still_served(server: &ServerProcess, id: u64) {
    // A full connection table turns a newcomer away (TOO_MANY_CONNECTIONS) until the
    // server has reaped the hung-up ones: retry for a while, as a client would.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = loop {
        match loadgen::client::Client::connect(server.addr, engine::ClientId(id)) {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "not served: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let answer = c.call(place(id, 1, 1, false)).unwrap();
    assert_eq!(answer.reply.code(), Code::OrderPlaced);
}

fn hello_bytes(client: u64) -> Vec<u8> {
    let mut out = Vec::new();
    wire::Hello {
        version: wire::PROTOCOL_VERSION,
        client: engine::ClientId(client),
        epoch: 0,
    }
    .encode(&mut out);
    out
}

#[test]
fn bad_frames_close_only_their_own_connection() {
    let dir = temp_dir("hostile-frames");
    let server = ServerProcess::start(&dir, &["gateway.frame_timeout_ms=400"]);
    upsert(&mut server.client(1), 1, 10, 1_000_000, 0);
    let cases: Vec<(&str, Vec<u8>, Code)> = vec![
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Code::FrameTooLarge,
        ),
        ("zero length", vec![0, 0, 0, 0, 1], Code::FrameTooShort),
        (
            "oversized",
            vec![0xff, 0xff, 0xff, 0x7f, 3],
            Code::FrameTooLarge,
        ),
        (
            "requests before hello",
            vec![5, 0, 0, 0, 3, 1, 0, 0, 0],
            Code::HelloRequired,
        ),
        (
            "bad magic",
            {
                let mut b = hello_bytes(5);
                b[5] ^= 0xff;
                b
            },
            Code::BadMagic,
        ),
        (
            "wrong version",
            {
                let mut b = hello_bytes(5);
                b[9] = 99;
                b
            },
            Code::UnsupportedVersion,
        ),
        ("client zero", hello_bytes(0), Code::BadClientId),
        (
            "second hello",
            [hello_bytes(5), hello_bytes(5)].concat(),
            Code::DuplicateHello,
        ),
        (
            "unknown kind",
            [hello_bytes(5), vec![1, 0, 0, 0, 77]].concat(),
            Code::UnknownFrameKind,
        ),
        (
            "requests that do not add up",
            [hello_bytes(5), vec![9, 0, 0, 0, 3, 2, 0, 0, 0, 1, 2, 3, 4]].concat(),
            Code::MalformedFrame,
        ),
        (
            "half a frame, then silence",
            [hello_bytes(5), vec![100, 0, 0, 0, 3, 1]].concat(),
            Code::FrameTimeout,
        ),
        ("connect, then silence", vec![], Code::FrameTimeout),
    ];
    for (what, bytes, code) in cases {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(&bytes).unwrap();
        assert_eq!(closing_code(&mut s), Some(code.number()), "{what}");
        still_served(&server, 2);
    }
    let logs = server.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("code=215") && l.contains("FRAME_TIMEOUT")),
        "closes are logged with their code: {logs:#?}"
    );
}

#[test]
fn a_client_that_never_reads_cannot_grow_the_server() {
    let dir = temp_dir("hostile-reader");
    let server = ServerProcess::start(&dir, &["gateway.write_buffer_max=1048576"]);
    upsert(&mut server.client(1), 1, 10, 100_000_000, 0);
    let rss_before = server.rss_kib();
    // Pipeline as fast as the socket takes it and never read a byte back.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(&hello_bytes(66)).unwrap();
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut frame = Vec::new();
    let mut builder = wire::RequestsFrameBuilder::begin(&mut frame);
    for i in 0..1000u64 {
        builder.push(
            engine::RequestId(i),
            &wire::Operation::Query(engine::Query::Stock {
                sku: engine::SkuId(1),
            }),
            &mut frame,
        );
    }
    builder.finish(&mut frame);
    let started = Instant::now();
    let mut frames = 0u64;
    while started.elapsed() < Duration::from_secs(5) && frames < 100_000 {
        match s.write_all(&frame) {
            Ok(()) => frames += 1,
            Err(_) => break, // the socket is full: TCP backpressure reached the client
        }
    }
    // Others are still served while that connection sits stalled.
    for id in 0..20 {
        still_served(&server, 100 + id);
    }
    let grown = server.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 64 * 1024,
        "server grew {grown} KiB for a client that never reads"
    );
    drop(s);
    still_served(&server, 200);
}

#[test]
fn a_storm_of_connections_leaves_the_server_serving() {
    let dir = temp_dir("hostile-storm");
    let server = ServerProcess::start(&dir, &["gateway.connections_max=64"]);
    upsert(&mut server.client(1), 1, 10, 1_000_000, 0);
    let started = Instant::now();
    for i in 0..3000u64 {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let mut s = TcpStream::connect(server.addr).unwrap();
        match i % 3 {
            0 => {}
            1 => {
                let _ = s.write_all(&hello_bytes(1000 + i));
            }
            _ => {
                let _ = s.write_all(&hello_bytes(1000 + i)[..7]);
            }
        }
        drop(s);
    }
    still_served(&server, 2);
    // Every one of them is closed (the server notices each hang-up on its own time).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.http_get("/health").1.contains("\"connections\":0") {
        assert!(
            Instant::now() < deadline,
            "connections left open: {:?}",
            server.http_get("/health")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The limit: past 64 open connections the next is turned away with its code. (A few
    // storm connections may still be arriving late: a full accept queue makes the kernel
    // retransmit their handshakes, so count until the first refusal.)
    let mut held = Vec::new();
    let refusal = loop {
        match loadgen::client::Client::connect(
            server.addr,
            engine::ClientId(5000 + held.len() as u64),
        ) {
            Ok(c) => held.push(c),
            Err(e) => break e,
        }
        assert!(held.len() <= 64, "more than connections_max accepted");
    };
    assert!(held.len() >= 48, "refused after only {}", held.len());
    assert!(
        matches!(
            refusal,
            loadgen::client::ClientError::Server { code: 212, .. }
        ),
        "{refusal}"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match loadgen::client::Client::connect(server.addr, engine::ClientId(3)) {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "never served again: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn frames_held_back_by_the_in_flight_limit_are_taken_once_answers_go_out() {
    let dir = temp_dir("hostile-in-flight");
    let server = ServerProcess::start(&dir, &["gateway.in_flight_max=4"]);
    let mut c = server.client(1);
    upsert(&mut c, 1, 10, 1_000_000, 0);
    // Twelve frames of four in one write: only one frame fits in flight at a time, and the
    // socket has nothing more to say once they are all buffered.
    let mut bytes = Vec::new();
    for f in 0..12u64 {
        let mut frame = wire::RequestsFrameBuilder::begin(&mut bytes);
        for i in 0..4 {
            frame.push(
                engine::RequestId(100 + f * 4 + i),
                &place(f, 1, 1, false),
                &mut bytes,
            );
        }
        frame.finish(&mut bytes);
    }
    c.send_raw(&bytes).unwrap();
    for _ in 0..48 {
        assert_eq!(c.recv_answer().unwrap().reply.code(), Code::OrderPlaced);
    }
}
