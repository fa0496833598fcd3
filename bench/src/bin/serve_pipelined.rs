//! A simple pipelined client against a running `surge serve`: C connections, each keeping
//! W PlaceOrder requests in flight (sent in frames of up to W), for D seconds. Reports the
//! answered rate and the latency from sending a request to reading its answer (closed loop:
//! the full open-loop generator, which also counts the time a request waited to be sent, is
//! `surge loadgen`).
//!
//! ```sh
//! cargo build --release -p tools -p bench
//! target/release/surge serve --data-dir /tmp/surge-bench --listen 127.0.0.1:7600 &
//! target/release/serve-pipelined --server 127.0.0.1:7600 --connections 4 --window 256 --seconds 10
//! ```

use std::time::{Duration, Instant};

use engine::wire::{Operation, Reply};
use engine::{ClientId, Command, OrderLine, RequestId, SkuId, SkuSpec, UserId};
use hdrhistogram::Histogram;
use loadgen::client::Client;

struct Args {
    server: String,
    connections: u64,
    window: u64,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        server: "127.0.0.1:7600".into(),
        connections: 4,
        window: 256,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().expect("a value after each flag");
        match flag.as_str() {
            "--server" => a.server = value,
            "--connections" => a.connections = value.parse().expect("a number"),
            "--window" => a.window = value.parse().expect("a number"),
            "--seconds" => a.seconds = value.parse().expect("a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn main() -> anyhow::Result<()> {
    let args = args();
    // Client ids from the clock, so reruns against the same data directory never collide
    // with earlier request ids.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        * 1000;
    let sku = SkuId(base);
    let mut admin = Client::connect(args.server.as_str(), ClientId(base))?;
    let answer = admin.call(Operation::Command(Command::UpsertSku(SkuSpec {
        sku,
        price: 100,
        stock: 1 << 40,
        per_user_limit: 0,
        sale_window: None,
    })))?;
    anyhow::ensure!(
        answer.reply.code() == engine::Code::SkuUpserted,
        "{answer:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..args.connections)
        .map(|i| {
            let server = args.server.clone();
            let window = args.window;
            std::thread::spawn(move || run(&server, ClientId(base + 1 + i), sku, window, deadline))
        })
        .collect();
    let mut latency = Histogram::<u64>::new(3)?;
    let mut answered = 0;
    for worker in workers {
        let (h, n) = worker.join().expect("worker")?;
        latency.add(h)?;
        answered += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let us = |q: f64| latency.value_at_quantile(q) as f64 / 1e3;
    println!(
        "{answered} orders in {elapsed:.2} s = {:.0} orders/s ({} connections × {} in flight)",
        answered as f64 / elapsed,
        args.connections,
        args.window
    );
    println!(
        "latency µs: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        latency.max() as f64 / 1e3
    );
    Ok(())
}

/// One connection: keep `window` orders in flight until the deadline.
fn run(
    server: &str,
    client: ClientId,
    sku: SkuId,
    window: u64,
    deadline: Instant,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let mut c = Client::connect(server, client)?;
    let mut latency = Histogram::<u64>::new(3)?;
    let mut sent_at = std::collections::VecDeque::new();
    let mut next = 1u64;
    let mut answered = 0u64;
    let order = |user: u64| {
        Operation::Command(Command::PlaceOrder {
            user: UserId(user),
            lines: vec![OrderLine { sku, qty: 1 }],
            join_waitlist: false,
        })
    };
    let mut top_up = |c: &mut Client,
                      sent_at: &mut std::collections::VecDeque<(u64, Instant)>,
                      n: u64|
     -> anyhow::Result<()> {
        let now = Instant::now();
        for _ in 0..n {
            c.send(RequestId(next), &order(next % 100_000))?;
            sent_at.push_back((next, now));
            next += 1;
        }
        c.flush()?;
        Ok(())
    };
    top_up(&mut c, &mut sent_at, window)?;
    while Instant::now() < deadline {
        // Answers come back in order on one connection (one ring, one gate).
        let answer = c.recv_answer()?;
        let (request, at) = sent_at.pop_front().expect("an answer for a sent request");
        anyhow::ensure!(answer.request == RequestId(request), "answers out of order");
        anyhow::ensure!(
            !matches!(answer.reply, Reply::Rejected { .. }),
            "refused: {answer:?}"
        );
        latency.record(at.elapsed().as_nanos() as u64)?;
        answered += 1;
        // Refill in chunks of an eighth of the window, so frames carry many requests.
        if sent_at.len() as u64 <= window - window.div_ceil(8) {
            let n = window - sent_at.len() as u64;
            top_up(&mut c, &mut sent_at, n)?;
        }
    }
    Ok((latency, answered))
}
