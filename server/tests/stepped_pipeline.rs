//! The pipeline driven by hand on a fake clock: the sequencer, the journal stage (on
//! in-memory storage), the engine stage and the gate, each stepped by this test in turn, no
//! thread and no sleep. Ticks come exactly when the clock says; a published request pushes the
//! next Tick back; every answer carries the sequence the sequencer stamped.

use std::sync::Arc;
use std::time::Duration;

use engine::ring::{RingBuilder, WaitStrategy};
use engine::wire::Operation;
use engine::{ClientId, Command, Engine, EngineConfig, Outcome, Query, RequestId, SkuId, SkuSpec};
use journal::FaultStorage;
use replicator::Epochs;
use server::config::ReplicationSection;
use server::group::node::Node;
use server::group::role::Role;
use server::pipeline::engine_stage::EngineStage;
use server::pipeline::gate::Gate;
use server::pipeline::journal_stage::JournalStage;
use server::pipeline::journaler::Journaler;
use server::pipeline::sequencer::Sequencer;
use server::pipeline::shared::{Shared, Wake};
use server::pipeline::slot::{ConnRef, Slot};
use server::pipeline::stage::Step;
use server::{Clock, ManualClock};

const TICK: Duration = Duration::from_millis(100);
const START_NS: u64 = 1_800_000_000_000_000_000;
const NOW: Option<Duration> = Some(Duration::ZERO);

struct Pipeline {
    clock: Arc<ManualClock>,
    sequencer: Sequencer,
    journal: JournalStage,
    engine: EngineStage,
    gate: Gate,
}

/// What left the gate: (sequence, timestamp, outcome) per command.
type Released = Vec<(u64, u64, Outcome)>;

impl Pipeline {
    fn new() -> Pipeline {
        let clock = Arc::new(ManualClock::new(START_NS));
        let shared = Arc::new(Shared::new(clock.clone() as Arc<dyn Clock>));
        let wake = Arc::new(Wake::none());
        let dir = std::env::temp_dir().join(format!("surge-stepped-{}", std::process::id()));
        let node = Arc::new(
            Node::new(
                Box::new(server::group::epochs::EpochDir(dir)),
                Role::Primary,
                Epochs::first(),
                &ReplicationSection::default(),
                false,
            )
            .unwrap(),
        );
        let config = EngineConfig::default();
        let storage = Arc::new(FaultStorage::new());
        let (journaler, _) =
            Journaler::open_on(storage, &config, journal::writer::SEGMENT_LEN_MIN, 1).unwrap();
        let next_seq = journaler.next_seq();
        assert_eq!(next_seq, 2, "record 1 is the engine configuration");
        let mut ring = RingBuilder::<Slot>::new(64, WaitStrategy::Block);
        let j = ring.stage(&[]);
        let e = ring.stage(&[]);
        let g = ring.stage(&[j, e]);
        let (producer, mut consumers) = ring.build();
        let gate = Gate::new(consumers.remove(g.index()));
        let engine_ring = consumers.remove(e.index());
        let journal_ring = consumers.remove(j.index());
        Pipeline {
            sequencer: Sequencer::new(producer, clock.clone(), next_seq, TICK, None),
            journal: JournalStage::new(
                journal_ring,
                journaler,
                1, // durable when `step` returns
                shared.clone(),
                wake.clone(),
                None,
            ),
            engine: EngineStage::new(
                engine_ring,
                Engine::new(config),
                next_seq,
                shared,
                wake,
                node,
            ),
            gate,
            clock,
        }
    }

    /// Both stages once, then the gate: what it released.
    fn turn(&mut self) -> Released {
        let journaled = self.journal.step(NOW);
        let applied = self.engine.step(NOW);
        assert_eq!(journaled, applied, "both stages see every slot");
        let mut released = Vec::new();
        self.gate.release(u64::MAX, |slot| {
            // SAFETY: the gate follows the engine stage, which wrote the output.
            let out = unsafe { slot.output.get() };
            released.push((slot.seq, slot.timestamp_ns, out.output.outcome));
        });
        released
    }
}

#[test]
fn ticks_come_exactly_when_the_clock_says() {
    let mut p = Pipeline::new();
    assert!(!p.sequencer.maybe_tick(), "nothing is due at the start");
    assert_eq!(p.turn(), vec![]);
    assert_eq!(p.journal.step(NOW), Step::Idle);

    p.clock.advance(TICK - Duration::from_nanos(1));
    assert_eq!(p.sequencer.until_next_tick(), Duration::from_nanos(1));
    assert!(!p.sequencer.maybe_tick());

    p.clock.advance(Duration::from_nanos(1));
    assert!(p.sequencer.maybe_tick());
    assert!(!p.sequencer.maybe_tick(), "one Tick per interval");
    let at = START_NS + TICK.as_nanos() as u64;
    assert_eq!(p.turn(), vec![(2, at, Outcome::Ticked { now_ns: at })]);
    assert_eq!(p.engine.engine().clock_ns(), at);

    // A request published half an interval later pushes the next Tick back to a full
    // interval after it.
    p.clock.advance(TICK / 2);
    let sku = SkuSpec {
        sku: SkuId(7),
        price: 100,
        stock: 5,
        per_user_limit: 0,
        sale_window: None,
    };
    p.sequencer.publish_requests(
        ConnRef::NONE,
        ClientId(9),
        at,
        [(RequestId(1), Operation::Command(Command::UpsertSku(sku)))].into_iter(),
    );
    let upserted_at = at + (TICK / 2).as_nanos() as u64;
    assert_eq!(
        p.turn(),
        vec![(3, upserted_at, Outcome::SkuUpserted { sku: SkuId(7) })]
    );
    p.clock.advance(TICK - Duration::from_nanos(1));
    assert!(!p.sequencer.maybe_tick());
    p.clock.advance(Duration::from_nanos(1));
    assert!(p.sequencer.maybe_tick());
    let ticked_at = upserted_at + TICK.as_nanos() as u64;
    assert_eq!(
        p.turn(),
        vec![(4, ticked_at, Outcome::Ticked { now_ns: ticked_at })]
    );
    assert_eq!(p.sequencer.next_seq(), 5);
}

#[test]
fn the_wall_clock_stepping_back_does_not_move_the_engine_back() {
    let mut p = Pipeline::new();
    p.clock.advance(TICK);
    assert!(p.sequencer.maybe_tick());
    let first = START_NS + TICK.as_nanos() as u64;
    assert_eq!(p.turn()[0].1, first);
    p.clock.set_wall(START_NS - 5_000_000_000); // NTP stepped the wall clock back 5 s
    p.clock.advance(TICK);
    assert!(p.sequencer.maybe_tick());
    let released = p.turn();
    assert_eq!(released[0].1, first, "timestamps never go back");
    assert_eq!(p.engine.engine().clock_ns(), first);
}

#[test]
fn queries_alone_do_not_hold_the_ticks_back() {
    // A halted primary under a crowd that polls stock: nothing but queries is published, and
    // the Ticks must still come (they are what a standby attached at the primary's last
    // sequence catches up on before it counts).
    let mut p = Pipeline::new();
    for i in 0..10u64 {
        p.clock.advance(TICK / 4);
        p.sequencer.publish_requests(
            ConnRef::NONE,
            ClientId(9),
            0,
            [(
                RequestId(i + 1),
                Operation::Query(Query::Stock { sku: SkuId(7) }),
            )]
            .into_iter(),
        );
        let due = (i + 1) % 4 == 0; // a whole interval since the last command (or Tick)
        assert_eq!(p.sequencer.maybe_tick(), due, "after {} quarters", i + 1);
        p.turn();
    }
    assert_eq!(p.sequencer.next_seq(), 4, "two Ticks, numbered 2 and 3");
}
