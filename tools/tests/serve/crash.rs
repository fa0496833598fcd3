//! SIGKILL mid-load: a client pipelines orders and logs every answer it was given; the
//! server is killed and restarted (twice); every logged order is there exactly once, a
//! retry of everything that was in flight returns the original answers, and the rebuilt
//! state keeps the stock invariant (`surge replay` checks it).

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use engine::wire::Reply;
use engine::{Answer, Outcome, Query, RequestId};
use loadgen::client::Client;

use super::harness::*;

pub const CLIENT: u64 = 900;
const WINDOW: u64 = 256;

/// Pipeline orders until the connection dies; every (request id, order id) answered.
pub fn load(addr: std::net::SocketAddr, first_request: u64, acks: mpsc::Sender<(u64, u64)>) -> u64 {
    let mut c = Client::connect(addr, engine::ClientId(CLIENT)).unwrap();
    let mut next = first_request;
    let started = Instant::now();
    'outer: while started.elapsed() < Duration::from_secs(60) {
        for _ in 0..WINDOW {
            if c.send(RequestId(next), &place(next % 10_000, 1, 1, false))
                .is_err()
            {
                break 'outer;
            }
            next += 1;
        }
        if c.flush().is_err() {
            break;
        }
        for _ in 0..WINDOW {
            match c.recv_answer() {
                Ok(a) => match a.reply {
                    Reply::Outcome(Outcome::OrderPlaced { order, .. }) => {
                        acks.send((a.request.0, order.0)).unwrap();
                    }
                    other => panic!("unexpected answer {other:?}"),
                },
                Err(_) => break 'outer,
            }
        }
    }
    next
}

#[test]
fn every_acknowledged_order_survives_sigkill_exactly_once() {
    survives_sigkill("crash", &[]);
}

#[test]
fn with_the_stages_on_one_thread_every_acknowledged_order_survives_sigkill() {
    survives_sigkill("crash-shared", &["cores.layout=shared"]);
}

#[test]
fn with_every_stage_on_the_gateway_thread_every_acknowledged_order_survives_sigkill() {
    // Direct I/O too (the journal's write is the gateway thread's one wait), and frequent
    // checkpoints, which this thread steps between turns and while the node is quiet.
    survives_sigkill(
        "crash-single",
        &[
            "cores.layout=single",
            "journal.io=\"direct\"",
            "checkpoint.every_records=3000",
        ],
    );
}

/// Two cycles of load, SIGKILL and restart on `sets`; every answered request, retried, gets
/// its original order, and the rest are placed once.
fn survives_sigkill(name: &str, sets: &[&str]) {
    let dir = temp_dir(name);
    let mut acked: HashMap<u64, u64> = HashMap::new();
    let mut next_request = 1;
    let mut server = ServerProcess::start(&dir, sets);
    upsert(&mut server.client(1), 1, 10, 100_000_000, 0);
    for cycle in 0..2 {
        let (tx, rx) = mpsc::channel();
        let addr = server.addr;
        let start = next_request;
        let loader = std::thread::spawn(move || load(addr, start, tx));
        // Kill once a few thousand orders are answered, with more in flight.
        let mut seen = 0;
        while seen < 3000 {
            let (request, order) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
            acked.insert(request, order);
            seen += 1;
        }
        server.kill9();
        let sent_up_to = loader.join().unwrap();
        acked.extend(rx.try_iter());
        server = ServerProcess::start(&dir, sets);
        let mut c = server.client(CLIENT);
        // Everything this cycle sent, answered or not, is retried with its own request id:
        // the answered ones must come back with their original order, the others once.
        let requests: Vec<u64> = (start..sent_up_to).collect();
        for chunk in requests.chunks(1024) {
            for &request in chunk {
                c.send(RequestId(request), &place(request % 10_000, 1, 1, false))
                    .unwrap();
            }
            c.flush().unwrap();
            for _ in chunk {
                let answer = c.recv_answer().unwrap();
                let request = answer.request.0;
                let Reply::Outcome(Outcome::OrderPlaced { order, .. }) = answer.reply else {
                    panic!("retry of {request}: {answer:?}");
                };
                if let Some(original) = acked.get(&request) {
                    assert_eq!(
                        order.0, *original,
                        "cycle {cycle}: request {request} changed order"
                    );
                }
                acked.insert(request, order.0);
            }
        }
        next_request = sent_up_to;
        for (request, order) in acked.iter().take(200) {
            let view = c.call(engine::wire::Operation::Query(Query::Order {
                order: engine::OrderId(*order),
            }));
            match view.unwrap().reply {
                Reply::Answer(Answer::Order(o)) => assert_eq!(o.request.0, *request),
                other => panic!("order {order} lost: {other:?}"),
            }
        }
    }
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    drop(server);

    let (report, export) = replay_export(&dir, &dir.join("export.jsonl"));
    assert!(report.contains("invariants     hold"));
    let mut by_request: HashMap<u64, u64> = HashMap::new();
    let mut keys = HashSet::new();
    for line in export.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] == "order" && v["client_id"] == CLIENT {
            let request = v["request_id"].as_u64().unwrap();
            assert!(keys.insert(request), "request {request} made two orders");
            by_request.insert(request, v["order_id"].as_u64().unwrap());
        }
        if v["type"] == "sku" {
            let sum = v["available"].as_u64().unwrap()
                + v["reserved"].as_u64().unwrap()
                + v["sold"].as_u64().unwrap();
            assert_eq!(sum, v["stocked"].as_u64().unwrap());
        }
    }
    for (request, order) in &acked {
        assert_eq!(
            by_request.get(request),
            Some(order),
            "acknowledged request {request}"
        );
    }
    assert!(acked.len() >= 6000);
}
