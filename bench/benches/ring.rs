//! The ring against crossbeam-channel doing the same work in the same run:
//! - 1 producer → 1 consumer;
//! - 1 producer → 3 consumers in a pipeline (each stage after the previous one), the LMAX
//!   shape; with crossbeam that is three channels and each stage forwards what it got.
//!
//! Each consumer sums what it sees (the work), and the last stage's sum is checked. The wait
//! strategy is the one surge would pick for this many threads on this machine's cores
//! (`WaitStrategy::for_threads`), and crossbeam blocks as it always does.
//!
//! `cargo bench -p bench --bench ring`

use std::thread;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_channel::bounded;
use engine::ring::{RingBuilder, WaitStrategy};

const MESSAGES: u64 = 2_000_000;
const CAPACITY: usize = 4096;

fn expected_sum() -> u64 {
    (1..=MESSAGES).sum()
}

/// `SURGE_RING_WAIT=busy-spin|yield|block` overrides the choice, to compare strategies.
fn strategy(threads: usize) -> WaitStrategy {
    if let Ok(name) = std::env::var("SURGE_RING_WAIT") {
        return name.parse().expect("SURGE_RING_WAIT");
    }
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    WaitStrategy::for_threads(threads, cores)
}

/// Producer claims `claim` slots at a time; `stages` consumers in a chain.
fn ring_pipeline(stages: usize, claim: usize) -> u64 {
    let mut builder = RingBuilder::<u64>::new(CAPACITY, strategy(stages + 1));
    let mut previous = None;
    for _ in 0..stages {
        let after: Vec<_> = previous.into_iter().collect();
        previous = Some(builder.stage(&after));
    }
    let (mut producer, consumers) = builder.build();
    let handles: Vec<_> = consumers
        .into_iter()
        .map(|mut consumer| {
            thread::spawn(move || {
                let mut sum = 0u64;
                while consumer.processed() < MESSAGES {
                    let batch = consumer.read(None).expect("no timeout");
                    for (_, value) in batch.iter() {
                        sum += *value;
                    }
                }
                sum
            })
        })
        .collect();
    let mut next = 1u64;
    while next <= MESSAGES {
        let n = claim.min((MESSAGES - next + 1) as usize);
        let mut batch = producer.claim(n, None).expect("no timeout");
        for i in 0..n {
            *batch.slot_mut(i) = next + i as u64;
        }
        batch.publish();
        next += n as u64;
    }
    let sums: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(sums.iter().all(|&s| s == expected_sum()));
    sums[0]
}

fn channel_pipeline(stages: usize) -> u64 {
    let (first_tx, mut rx) = bounded::<u64>(CAPACITY);
    let mut handles = Vec::new();
    for stage in 0..stages {
        let last = stage + 1 == stages;
        let (tx, next_rx) = bounded::<u64>(CAPACITY);
        let input = std::mem::replace(&mut rx, next_rx);
        handles.push(thread::spawn(move || {
            let mut sum = 0u64;
            for value in input.iter() {
                sum += value;
                if !last {
                    tx.send(value).unwrap();
                }
            }
            sum
        }));
    }
    for value in 1..=MESSAGES {
        first_tx.send(value).unwrap();
    }
    drop(first_tx);
    let sums: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(sums.iter().all(|&s| s == expected_sum()));
    sums[0]
}

fn ring_benches(c: &mut Criterion) {
    for stages in [1, 3] {
        let mut group = c.benchmark_group(format!("ring_1p{stages}c"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(MESSAGES));
        group.bench_function("surge_ring_claim_1", |b| {
            b.iter(|| ring_pipeline(stages, 1))
        });
        group.bench_function("surge_ring_claim_64", |b| {
            b.iter(|| ring_pipeline(stages, 64))
        });
        group.bench_function("crossbeam_channel", |b| b.iter(|| channel_pipeline(stages)));
        group.finish();
    }
}

criterion_group!(benches, ring_benches);
criterion_main!(benches);
