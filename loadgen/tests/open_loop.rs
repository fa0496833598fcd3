//! The load generator, tested against a small in-test server that speaks surge's protocol
//! around an in-process engine, records what it receives, and can be told to stall. Each
//! test is bounded: runs of a second or two at a few thousand requests per second.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::wire::{self, frame_kind, CountedFrame, Hello, Operation, Role, Welcome};
use engine::{Engine, EngineConfig, Output, Request};
use loadgen::open_loop::{self, RunConfig, Spacing, System};

#[derive(Default)]
struct Seen {
    /// (arrival since the server started, client, request, operation), in arrival order.
    requests: Vec<(Duration, u64, u64, Operation)>,
    /// (client, request, seq) of every command the engine accepted.
    accepted: Vec<(u64, u64, u64)>,
}

struct FakeServer {
    addr: String,
    seen: Arc<Mutex<Seen>>,
}

struct Shared {
    engine: Engine,
    seq: u64,
    started: Instant,
    /// Stop answering for `.1` once the server has run for `.0`.
    stall: Option<(Duration, Duration)>,
}

impl FakeServer {
    fn start(stall: Option<(Duration, Duration)>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::new(Mutex::new(Shared {
            engine: Engine::new(EngineConfig::default()),
            seq: 0,
            started: Instant::now(),
            stall,
        }));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (seen, shared) = (seen2.clone(), shared.clone());
                std::thread::spawn(move || serve(stream, &seen, &shared));
            }
        });
        FakeServer { addr, seen }
    }
}

fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    loop {
        if let Ok(Some(frame)) = wire::split_frame(buf) {
            let out = (frame.kind, frame.body.to_vec());
            let len = frame.len;
            buf.drain(..len);
            return Some(out);
        }
        let mut chunk = [0u8; 65536];
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn serve(mut stream: TcpStream, seen: &Mutex<Seen>, shared: &Mutex<Shared>) {
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let Some((frame_kind::HELLO, body)) = read_frame(&mut stream, &mut buf) else {
        return;
    };
    let client = Hello::decode(&body).unwrap().client;
    let mut out = Vec::new();
    Welcome {
        version: wire::PROTOCOL_VERSION,
        role: Role::Primary,
        in_flight_max: 1 << 20,
        frame_len_max: wire::FRAME_LEN_MAX as u32,
        requests_per_frame_max: wire::REQUESTS_PER_FRAME_MAX,
        epoch: 0,
    }
    .encode(&mut out);
    stream.write_all(&out).unwrap();
    let mut output = Output::default();
    while let Some((kind, body)) = read_frame(&mut stream, &mut buf) {
        assert_eq!(kind, frame_kind::REQUESTS);
        let mut s = shared.lock().unwrap();
        if let Some((at, len)) = s.stall {
            if s.started.elapsed() >= at {
                s.stall = None;
                std::thread::sleep(len);
            }
        }
        let arrived = s.started.elapsed();
        let mut out = Vec::new();
        let mut frame = CountedFrame::begin(&mut out, frame_kind::ANSWERS);
        for r in wire::decode_requests(&body).unwrap() {
            let operation = r.operation.unwrap();
            seen.lock()
                .unwrap()
                .requests
                .push((arrived, client.0, r.request.0, operation.clone()));
            match operation {
                Operation::Command(command) => {
                    s.seq += 1;
                    let seq = s.seq;
                    // A logical clock (a millisecond per command) keeps runs deterministic.
                    s.engine.apply(
                        seq * 1_000_000,
                        &Request {
                            client,
                            request: r.request,
                            command,
                        },
                        &mut output,
                    );
                    if !matches!(output.outcome, engine::Outcome::Rejected { .. }) {
                        seen.lock()
                            .unwrap()
                            .accepted
                            .push((client.0, r.request.0, seq));
                    }
                    wire::encode_outcome(r.request, seq, &output.outcome, &mut out);
                }
                Operation::Query(query) => {
                    let answer = s.engine.query(&query);
                    wire::encode_answer(r.request, &answer, &mut out);
                }
            }
            frame.added();
        }
        frame.finish(&mut out);
        drop(s);
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

fn config(server: &FakeServer, rate: f64, seconds: f64) -> RunConfig {
    RunConfig {
        system: System::Surge,
        servers: vec![server.addr.clone()],
        workload: "flash-sale".into(),
        rate: Some(rate),
        spacing: Spacing::Constant,
        duration: Duration::from_secs_f64(seconds),
        warmup: Duration::ZERO,
        connections: 1,
        pipeline: 1024,
        seed: 1,
        ack_log: None,
        progress: false,
        id_base: Some(1 << 20),
        ..RunConfig::default()
    }
}

/// Requests that came from the load connections (not the catalog setup).
fn load_requests(seen: &Seen) -> Vec<(Duration, u64, u64, Operation)> {
    seen.requests
        .iter()
        .filter(|r| !matches!(r.3, Operation::Command(engine::Command::UpsertSku(_))))
        .cloned()
        .collect()
}

#[test]
fn the_schedule_is_kept() {
    let server = FakeServer::start(None);
    let report = open_loop::run(&config(&server, 2_000.0, 1.5)).unwrap();
    // A constant schedule at 2,000/s over 1.5 s: exactly 3,000 intended sends.
    assert_eq!(report.measured.sent, 3_000);
    assert_eq!(report.measured.answered, 3_000);
    let seen = server.seen.lock().unwrap();
    let requests = load_requests(&seen);
    assert_eq!(requests.len(), 3_000);
    // Sent as scheduled, not in a burst: the arrivals span the run, and each quarter of it
    // gets about a quarter of them (loose bounds: this machine may be busy with other tests).
    let first = requests[0].0;
    let span = requests[requests.len() - 1].0 - first;
    assert!(
        span >= Duration::from_millis(1_200),
        "arrivals span only {span:?}"
    );
    for quarter in 0..4u32 {
        let from = first + span * quarter / 4;
        let to = first + span * (quarter + 1) / 4;
        let n = requests.iter().filter(|r| r.0 >= from && r.0 < to).count();
        assert!(
            (300..=1_200).contains(&n),
            "quarter {quarter}: {n} of 3,000"
        );
    }
}

#[test]
fn a_server_stall_shows_in_the_tail() {
    let stall = Duration::from_millis(100);
    let server = FakeServer::start(Some((Duration::from_millis(1_000), stall)));
    // Few requests in flight: during the stall the generator soon cannot send, which is
    // exactly when a generator that measures from the actual send would hide the stall.
    let mut c = config(&server, 1_000.0, 2.0);
    c.pipeline = 8;
    let report = open_loop::run(&c).unwrap();
    let h = &report.measured.overall;
    assert!(h.max() >= 90_000_000, "max {} ns", h.max());
    // Every request meant to go out during the stall waited for its end: at 1,000/s that is
    // ~100 requests with latency from 100 ms down to 0, ~50 of them over 50 ms. Measured
    // from the actual send, only the 8 in flight would be.
    let over_50ms = h.count_between(50_000_000, h.max());
    assert!(over_50ms >= 30, "{over_50ms} requests over 50 ms");
    assert!(h.value_at_quantile(0.5) < 50_000_000, "{}", report.table());
    // Requests held back are still sent (late) and counted, even past the end of the run.
    assert_eq!(report.measured.sent, 2_000);
    assert_eq!(report.measured.answered, 2_000);
}

#[test]
fn the_ack_log_holds_every_accepted_answer() {
    let server = FakeServer::start(None);
    let dir = std::env::temp_dir().join(format!("surge-acklog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("acks.jsonl");
    let mut c = config(&server, 3_000.0, 1.0);
    c.connections = 3;
    c.ack_log = Some(path.clone());
    let report = open_loop::run(&c).unwrap();
    let mut logged: Vec<(u64, u64, u64)> = open_loop::read_ack_log(&path)
        .unwrap()
        .into_iter()
        .map(|a| (a.client_id, a.request_id, a.seq))
        .collect();
    let seen = server.seen.lock().unwrap();
    let setup_client = 1 << 20;
    let mut accepted: Vec<_> = seen
        .accepted
        .iter()
        .filter(|a| a.0 != setup_client)
        .copied()
        .collect();
    logged.sort_unstable();
    accepted.sort_unstable();
    assert!(accepted.len() > 500, "{} accepted", accepted.len());
    assert_eq!(logged, accepted);
    assert!(!report.measured.errors.contains_key("UNANSWERED"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_same_seed_sends_the_same_requests() {
    let run = |seed: u64| {
        let server = FakeServer::start(None);
        let mut c = config(&server, 1_000.0, 1.0);
        c.spacing = Spacing::Poisson;
        c.seed = seed;
        open_loop::run(&c).unwrap();
        let seen = server.seen.lock().unwrap();
        load_requests(&seen)
            .into_iter()
            .map(|r| (r.2, r.3))
            .collect::<Vec<_>>()
    };
    let a = run(7);
    let b = run(7);
    let c = run(8);
    assert!(a.len() > 500);
    // Poisson arrivals: the count varies with the seed, the stream is the seed's alone.
    let first_difference = a.iter().zip(&b).position(|(x, y)| x != y);
    assert_eq!(
        first_difference, None,
        "runs differ at {first_difference:?}"
    );
    assert_eq!(a.len(), b.len());
    assert!(a.iter().any(|r| matches!(
        r.1,
        Operation::Command(engine::Command::ConfirmPayment { .. })
    )));
    assert!(a[..100] != c[..100]);
}
