//! Ring tests: ordering, wrap-around, gating between stages, every wait strategy, and no lost
//! or duplicated slot with real threads. Small counts under Miri, which runs these too:
//! `cargo +nightly miri test -p engine ring`.

use std::thread;
use std::time::Duration;

use super::*;

const STRATEGIES: [WaitStrategy; 3] = [
    WaitStrategy::BusySpin,
    WaitStrategy::Yield,
    WaitStrategy::Block,
];

/// Messages per concurrent test: enough laps to wrap a small ring many times.
const MESSAGES: u64 = if cfg!(miri) { 200 } else { 200_000 };
const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));

fn publish(producer: &mut Producer<u64>, values: &[u64]) {
    let mut claim = producer.try_claim(values.len()).expect("room to claim");
    for (i, v) in values.iter().enumerate() {
        *claim.slot_mut(i) = *v;
    }
    claim.publish();
}

fn drain(consumer: &mut Consumer<u64>) -> Vec<(u64, u64)> {
    match consumer.try_read() {
        Some(batch) => batch.iter().map(|(s, v)| (s, *v)).collect(),
        None => Vec::new(),
    }
}

#[test]
fn sequences_arrive_in_order_and_wrap_around() {
    let mut ring = RingBuilder::<u64>::new(4, WaitStrategy::Block);
    let only = ring.stage(&[]);
    let (mut producer, mut stages) = ring.build();
    let consumer = &mut stages[only.index()];
    let mut expected = 1;
    for round in 0..10u64 {
        publish(&mut producer, &[round * 10, round * 10 + 1, round * 10 + 2]);
        let got = drain(consumer);
        assert_eq!(
            got,
            vec![
                (expected, round * 10),
                (expected + 1, round * 10 + 1),
                (expected + 2, round * 10 + 2)
            ]
        );
        expected += 3;
    }
    assert_eq!(consumer.processed(), 30);
}

#[test]
fn producer_cannot_lap_the_slowest_consumer() {
    let mut ring = RingBuilder::<u64>::new(4, WaitStrategy::Block);
    let fast = ring.stage(&[]);
    let slow = ring.stage(&[]);
    let (mut producer, mut stages) = ring.build();
    publish(&mut producer, &[1, 2, 3, 4]);
    assert!(producer.try_claim(1).is_none(), "ring is full");
    assert_eq!(drain(&mut stages[fast.index()]).len(), 4);
    assert!(
        producer.try_claim(1).is_none(),
        "the slow stage still holds every slot"
    );
    assert_eq!(producer.free_slots(), 0);
    {
        let batch = stages[slow.index()].try_read_up_to(2).unwrap();
        assert_eq!((batch.first_sequence(), batch.last_sequence()), (1, 2));
    }
    assert_eq!(producer.free_slots(), 2);
    assert!(producer.try_claim(3).is_none());
    publish(&mut producer, &[5, 6]);
    assert!(producer.claim(1, Some(Duration::from_millis(20))).is_none());
}

#[test]
fn a_later_stage_waits_for_every_stage_before_it() {
    let mut ring = RingBuilder::<u64>::new(8, WaitStrategy::Block);
    let journal = ring.stage(&[]);
    let engine = ring.stage(&[]);
    let gate = ring.stage(&[journal, engine]);
    let (mut producer, mut stages) = ring.build();
    publish(&mut producer, &[7, 8, 9]);
    assert!(stages[gate.index()].try_read().is_none());
    drop(stages[journal.index()].try_read_up_to(2));
    assert!(
        stages[gate.index()].try_read().is_none(),
        "engine has not seen any"
    );
    drop(stages[engine.index()].try_read());
    assert_eq!(drain(&mut stages[gate.index()]), vec![(1, 7), (2, 8)]);
    drop(stages[journal.index()].try_read());
    assert_eq!(drain(&mut stages[gate.index()]), vec![(3, 9)]);
    // The producer gates on the gate alone, which trails both.
    publish(&mut producer, &[0; 8]);
    assert!(producer.try_claim(1).is_none());
}

#[test]
fn an_abandoned_claim_publishes_nothing() {
    let mut ring = RingBuilder::<u64>::new(4, WaitStrategy::Block);
    let only = ring.stage(&[]);
    let (mut producer, mut stages) = ring.build();
    {
        let mut claim = producer.try_claim(2).unwrap();
        *claim.slot_mut(0) = 99;
    }
    assert!(stages[only.index()].try_read().is_none());
    publish(&mut producer, &[5]);
    assert_eq!(drain(&mut stages[only.index()]), vec![(1, 5)]);
}

#[test]
fn read_times_out_when_nothing_is_published() {
    for strategy in STRATEGIES {
        let mut ring = RingBuilder::<u64>::new(4, strategy);
        let only = ring.stage(&[]);
        let (_producer, mut stages) = ring.build();
        assert!(stages[only.index()]
            .read(Some(Duration::from_millis(5)))
            .is_none());
    }
}

#[test]
fn strategy_choice_fits_the_cores() {
    assert_eq!(WaitStrategy::for_threads(4, 16), WaitStrategy::BusySpin);
    assert_eq!(WaitStrategy::for_threads(2, 2), WaitStrategy::Yield);
    assert_eq!(WaitStrategy::for_threads(4, 2), WaitStrategy::Block);
    assert_eq!("block".parse(), Ok(WaitStrategy::Block));
    assert!("nap".parse::<WaitStrategy>().is_err());
}

/// One producer, a diamond of three consumers (two side by side, one after both), real
/// threads, a ring much smaller than the message count: every stage sees every value once,
/// in order, and the last stage never sees a value before both stages ahead of it have.
fn pipeline_delivers_everything(strategy: WaitStrategy, messages: u64) {
    let mut ring = RingBuilder::<u64>::new(64, strategy);
    let a = ring.stage(&[]);
    let b = ring.stage(&[]);
    let c = ring.stage(&[a, b]);
    let (mut producer, stages) = ring.build();
    let handles: Vec<_> = stages
        .into_iter()
        .enumerate()
        .map(|(index, mut consumer)| {
            thread::spawn(move || {
                let mut next = 1u64;
                let mut sum = 0u64;
                while next <= messages {
                    let batch = consumer.read(TIMEOUT).expect("producer stalled");
                    for (seq, value) in batch.iter() {
                        assert_eq!(seq, next, "stage {index} skipped or repeated");
                        assert_eq!(*value, seq * 3, "stage {index} read a stale slot");
                        sum += value;
                        next += 1;
                    }
                }
                sum
            })
        })
        .collect();
    let mut sent = 0u64;
    while sent < messages {
        let n = (1 + sent % 7).min(messages - sent) as usize;
        let mut claim = producer.claim(n, TIMEOUT).expect("consumers stalled");
        for i in 0..n {
            let seq = claim.first_sequence() + i as u64;
            *claim.slot_mut(i) = seq * 3;
        }
        claim.publish();
        sent += n as u64;
    }
    let expected: u64 = (1..=messages).map(|s| s * 3).sum();
    let _ = (a, b, c);
    for handle in handles {
        assert_eq!(handle.join().unwrap(), expected);
    }
}

#[test]
fn pipeline_busy_spin() {
    // Four spinning threads on fewer cores crawl (which is why the server does not spin
    // there); keep the count small enough to stay quick anyway.
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let messages = if cores > 4 { MESSAGES } else { MESSAGES / 100 };
    pipeline_delivers_everything(WaitStrategy::BusySpin, messages);
}

#[test]
fn pipeline_yield() {
    pipeline_delivers_everything(WaitStrategy::Yield, MESSAGES);
}

#[test]
fn pipeline_block() {
    pipeline_delivers_everything(WaitStrategy::Block, MESSAGES);
}
