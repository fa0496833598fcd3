//! One test per rule of docs/ENGINE.md, through the public API: catalog admin, placing,
//! limits, windows, payment outcomes, expiry, waitlists, reconciliation, idempotency, the
//! rolling hash and snapshots. The property tests (model_equivalence.rs) cover the
//! combinations; these pin each rule down by name.

use engine::{
    Answer, ClientId, Code, Command, Discrepancy, DiscrepancyKind, Engine, EngineConfig,
    EngineSnapshot, Event, OrderId, OrderLine, OrderState, Outcome, Output, Query, Request,
    RequestId, SaleWindow, SkuId, SkuSpec, StatementEntry, StatementStatus, UserId,
};

const WINDOW_NS: u64 = 1_000;
const HOT: SkuId = SkuId(1);
const OTHER: SkuId = SkuId(2);

struct Sim {
    engine: Engine,
    out: Output,
    now_ns: u64,
    next_request: u64,
}

/// The default limits, with closed orders kept in full for ever: these rules are about
/// orders, not their retirement (`retirement.rs`).
fn no_retirement() -> EngineConfig {
    EngineConfig {
        retire_after_ns: u64::MAX,
        ..EngineConfig::default()
    }
}

impl Sim {
    fn new() -> Sim {
        Sim::with_config(EngineConfig {
            payment_window_ns: WINDOW_NS,
            waitlist_len_max: 3,
            idempotency_window: 1000,
            clients_max: 8,
            orders_max: 1000,
            skus_max: 10,
            ..no_retirement()
        })
    }

    fn with_config(config: EngineConfig) -> Sim {
        Sim {
            engine: Engine::new(config),
            out: Output::default(),
            now_ns: 1,
            next_request: 1,
        }
    }

    fn send_as(&mut self, client: u64, request: u64, command: Command) -> Outcome {
        let request = Request {
            client: ClientId(client),
            request: RequestId(request),
            command,
        };
        self.engine.apply(self.now_ns, &request, &mut self.out);
        self.engine.check_invariants().expect("invariants hold");
        self.out.outcome
    }

    fn send(&mut self, command: Command) -> Outcome {
        self.next_request += 1;
        self.send_as(1, self.next_request, command)
    }

    fn events(&self) -> Vec<Event> {
        self.out.events.clone()
    }

    fn sku(&mut self, sku: SkuId, price: u64, stock: u64, limit: u32) {
        let outcome = self.send(Command::UpsertSku(SkuSpec {
            sku,
            price,
            stock,
            per_user_limit: limit,
            sale_window: None,
        }));
        assert_eq!(outcome, Outcome::SkuUpserted { sku });
    }

    fn place(&mut self, user: u64, lines: &[(SkuId, u32)], waitlist: bool) -> Outcome {
        self.send(Command::PlaceOrder {
            user: UserId(user),
            lines: lines
                .iter()
                .map(|&(sku, qty)| OrderLine { sku, qty })
                .collect(),
            join_waitlist: waitlist,
        })
    }

    fn place_one(&mut self, user: u64, qty: u32) -> OrderId {
        match self.place(user, &[(HOT, qty)], false) {
            Outcome::OrderPlaced { order, .. } => order,
            other => panic!("expected an order, got {other:?}"),
        }
    }

    fn pay(&mut self, order: OrderId, amount: u64) -> Outcome {
        self.send(Command::ConfirmPayment {
            order,
            amount,
            payment_ref: 900 + order.0,
        })
    }

    fn stock(&self, sku: SkuId) -> (u64, u64, u64, u32) {
        match self.engine.query(&Query::Stock { sku }) {
            Answer::Stock(s) => (s.available, s.reserved, s.sold, s.waitlist_len),
            other => panic!("{other:?}"),
        }
    }

    fn state(&self, order: OrderId) -> OrderState {
        match self.engine.query(&Query::Order { order }) {
            Answer::Order(o) => o.state,
            other => panic!("{other:?}"),
        }
    }

    fn tick(&mut self, to_ns: u64) -> Vec<Event> {
        self.now_ns = to_ns;
        let outcome = self.send_as(0, 0, Command::Tick);
        assert_eq!(outcome, Outcome::Ticked { now_ns: to_ns });
        self.events()
    }
}

fn rejected(outcome: Outcome) -> Code {
    match outcome {
        Outcome::Rejected { code, .. } => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn place_reserves_stock_and_sets_a_deadline() {
    let mut s = Sim::new();
    s.sku(HOT, 250, 10, 0);
    let outcome = s.place(7, &[(HOT, 3)], false);
    assert_eq!(
        outcome,
        Outcome::OrderPlaced {
            order: OrderId(1),
            total: 750,
            deadline_ns: 1 + WINDOW_NS
        }
    );
    assert_eq!(s.stock(HOT), (7, 3, 0, 0));
    assert_eq!(s.state(OrderId(1)), OrderState::PendingPayment);
}

#[test]
fn multi_line_orders_are_all_or_nothing() {
    let mut s = Sim::new();
    s.sku(HOT, 100, 5, 0);
    s.sku(OTHER, 40, 1, 0);
    assert_eq!(
        s.place(1, &[(HOT, 2), (OTHER, 2)], false),
        Outcome::Rejected {
            code: Code::OutOfStock,
            subject: OTHER.0
        }
    );
    assert_eq!(
        s.stock(HOT),
        (5, 0, 0, 0),
        "nothing reserved on the line that fit"
    );
    let Outcome::OrderPlaced { total, .. } = s.place(1, &[(HOT, 2), (OTHER, 1)], false) else {
        panic!()
    };
    assert_eq!(total, 240);
    assert_eq!(s.stock(HOT), (3, 2, 0, 0));
    assert_eq!(s.stock(OTHER), (0, 1, 0, 0));
}

#[test]
fn malformed_orders_are_rejected_with_their_own_codes() {
    let mut s = Sim::new();
    s.sku(HOT, 100, 5, 0);
    assert_eq!(rejected(s.place(1, &[], false)), Code::BadLineCount);
    let many: Vec<_> = (0..17).map(|i| (SkuId(100 + i), 1)).collect();
    assert_eq!(rejected(s.place(1, &many, false)), Code::BadLineCount);
    assert_eq!(rejected(s.place(1, &[(HOT, 0)], false)), Code::BadQuantity);
    assert_eq!(
        rejected(s.place(1, &[(HOT, 1), (HOT, 1)], false)),
        Code::DuplicateSku
    );
    assert_eq!(
        rejected(s.place(1, &[(SkuId(99), 1)], false)),
        Code::UnknownSku
    );
    s.sku(OTHER, u64::MAX / 2, 5, 0);
    assert_eq!(
        rejected(s.place(1, &[(OTHER, 3)], false)),
        Code::BadQuantity
    );
    assert_eq!(s.engine.orders().len(), 0);
}

#[test]
fn sale_window_is_half_open() {
    let mut s = Sim::new();
    let spec = SkuSpec {
        sku: HOT,
        price: 1,
        stock: 10,
        per_user_limit: 0,
        sale_window: Some(SaleWindow {
            start_ns: 100,
            end_ns: 200,
        }),
    };
    s.send(Command::UpsertSku(spec.clone()));
    s.now_ns = 99;
    assert_eq!(
        rejected(s.place(1, &[(HOT, 1)], false)),
        Code::SaleNotStarted
    );
    s.now_ns = 100;
    s.place_one(1, 1);
    s.now_ns = 199;
    s.place_one(2, 1);
    s.now_ns = 200;
    assert_eq!(rejected(s.place(3, &[(HOT, 1)], false)), Code::SaleEnded);
    let bad = SkuSpec {
        sale_window: Some(SaleWindow {
            start_ns: 5,
            end_ns: 5,
        }),
        ..spec
    };
    assert_eq!(
        rejected(s.send(Command::UpsertSku(bad))),
        Code::BadSkuDefinition
    );
}

#[test]
fn per_user_limit_counts_open_and_paid_units() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 100, 3);
    let first = s.place_one(1, 2);
    assert_eq!(rejected(s.place(1, &[(HOT, 2)], false)), Code::PerUserLimit);
    assert_eq!(s.pay(first, 20), Outcome::PaymentConfirmed { order: first });
    assert_eq!(rejected(s.place(1, &[(HOT, 2)], false)), Code::PerUserLimit);
    s.place_one(1, 1);
    s.place_one(2, 3); // another user has their own allowance
    let open = s.place_one(3, 3);
    s.send(Command::CancelOrder { order: open });
    s.place_one(3, 3); // released units no longer count
}

#[test]
fn payment_outcomes_each_have_their_own_code() {
    let mut s = Sim::new();
    s.sku(HOT, 50, 10, 0);
    let order = s.place_one(1, 2);
    assert_eq!(
        s.pay(order, 99),
        Outcome::Rejected {
            code: Code::WrongAmount,
            subject: 100
        }
    );
    assert_eq!(s.state(order), OrderState::PendingPayment);
    assert_eq!(rejected(s.pay(OrderId(42), 100)), Code::UnknownOrder);
    assert_eq!(rejected(s.pay(OrderId(0), 100)), Code::UnknownOrder);
    assert_eq!(s.pay(order, 100), Outcome::PaymentConfirmed { order });
    assert_eq!(s.stock(HOT), (8, 0, 2, 0));
    assert_eq!(rejected(s.pay(order, 100)), Code::AlreadyPaid);
    assert_eq!(
        rejected(s.send(Command::CancelOrder { order })),
        Code::AlreadyPaid
    );

    let cancelled = s.place_one(2, 1);
    assert_eq!(
        s.send(Command::CancelOrder { order: cancelled }),
        Outcome::OrderCancelled { order: cancelled }
    );
    assert_eq!(rejected(s.pay(cancelled, 50)), Code::OrderAlreadyCancelled);

    let failed = s.place_one(3, 1);
    assert_eq!(
        s.send(Command::FailPayment { order: failed }),
        Outcome::PaymentFailed { order: failed }
    );
    assert_eq!(rejected(s.pay(failed, 50)), Code::OrderAlreadyFailed);
    assert_eq!(
        s.stock(HOT),
        (8, 0, 2, 0),
        "failed and cancelled units are back"
    );

    let late = s.place_one(4, 1);
    s.now_ns += WINDOW_NS;
    assert_eq!(rejected(s.pay(late, 50)), Code::OrderAlreadyExpired);
    assert_eq!(
        s.events(),
        vec![Event::OrderExpired {
            order: late,
            client: ClientId(1),
            user: UserId(4)
        }],
        "the expiry happens first, in the same command"
    );
}

#[test]
fn ticks_expire_orders_at_their_deadline_oldest_first() {
    let mut s = Sim::new();
    s.sku(HOT, 5, 10, 0);
    let a = s.place_one(1, 1);
    s.now_ns = 50;
    let b = s.place_one(2, 2);
    assert!(s.tick(WINDOW_NS).is_empty(), "a's deadline is 1 + window");
    let expired = s.tick(WINDOW_NS + 50);
    assert_eq!(
        expired,
        vec![
            Event::OrderExpired {
                order: a,
                client: ClientId(1),
                user: UserId(1)
            },
            Event::OrderExpired {
                order: b,
                client: ClientId(1),
                user: UserId(2)
            },
        ]
    );
    assert_eq!(s.stock(HOT), (10, 0, 0, 0));
    assert_eq!(s.state(a), OrderState::Expired);
}

#[test]
fn the_clock_never_goes_back() {
    let mut s = Sim::new();
    s.sku(HOT, 5, 10, 0);
    s.now_ns = 500;
    s.place_one(1, 1);
    s.now_ns = 10;
    let Outcome::OrderPlaced { deadline_ns, .. } = s.place(2, &[(HOT, 1)], false) else {
        panic!()
    };
    assert_eq!(deadline_ns, 500 + WINDOW_NS);
    assert_eq!(s.engine.clock_ns(), 500);
}

#[test]
fn waitlist_joins_when_units_are_only_reserved_and_is_served_fifo() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 3, 0);
    let a = s.place_one(1, 2);
    let b = s.place_one(2, 1);
    assert_eq!(rejected(s.place(3, &[(HOT, 1)], false)), Code::OutOfStock);
    assert_eq!(
        s.place(3, &[(HOT, 1)], true),
        Outcome::WaitlistJoined {
            sku: HOT,
            position: 1,
            units_ahead: 0
        }
    );
    assert_eq!(
        s.place(4, &[(HOT, 2)], true),
        Outcome::WaitlistJoined {
            sku: HOT,
            position: 2,
            units_ahead: 1
        }
    );
    assert_eq!(
        rejected(s.place(3, &[(HOT, 1)], true)),
        Code::AlreadyWaitlisted
    );
    // Multi-line orders never wait.
    s.sku(OTHER, 1, 10, 0);
    assert_eq!(
        rejected(s.place(5, &[(HOT, 1), (OTHER, 1)], true)),
        Code::OutOfStock
    );

    // b's unit goes to user 3, the head.
    s.send(Command::CancelOrder { order: b });
    let created = s.events();
    assert_eq!(created.len(), 1);
    let Event::WaitlistOrderCreated {
        user, order, qty, ..
    } = created[0]
    else {
        panic!("{created:?}")
    };
    assert_eq!((user, qty, order), (UserId(3), 1, OrderId(3)));
    assert_eq!(s.stock(HOT), (0, 3, 0, 1));
    match s.engine.query(&Query::WaitlistPosition {
        sku: HOT,
        user: UserId(4),
    }) {
        Answer::WaitlistPosition(p) => assert_eq!((p.position, p.units_ahead, p.qty), (1, 0, 2)),
        other => panic!("{other:?}"),
    }
    // a's two units are sold: only order 3's one unit can come back, user 4 wants two.
    assert_eq!(s.pay(a, 20), Outcome::PaymentConfirmed { order: a });
    assert!(matches!(
        s.events()[..],
        [Event::WaitlistDropped {
            user: UserId(4),
            ..
        }]
    ));
    assert_eq!(s.stock(HOT), (0, 1, 2, 0));
}

#[test]
fn newcomers_queue_behind_a_non_empty_waitlist() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 2, 0);
    let a = s.place_one(1, 1);
    s.place_one(2, 1);
    s.place(3, &[(HOT, 2)], true);
    s.send(Command::CancelOrder { order: a });
    assert_eq!(s.stock(HOT), (1, 1, 0, 1), "head wants two, one is back");
    // A newcomer wanting the one free unit may not jump the queue.
    assert_eq!(rejected(s.place(4, &[(HOT, 1)], false)), Code::OutOfStock);
}

#[test]
fn hopeless_waitlist_heads_are_dropped_and_sold_out_means_no_waitlist() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 2, 0);
    let a = s.place_one(1, 1);
    let b = s.place_one(2, 1);
    s.place(3, &[(HOT, 2)], true);
    s.place(4, &[(HOT, 1)], true);
    s.pay(a, 10);
    // Only one unit can ever come back now; user 3 wants two and is dropped, user 4 stays.
    assert_eq!(
        s.events(),
        vec![Event::WaitlistDropped {
            client: ClientId(1),
            request: RequestId(5),
            user: UserId(3),
            sku: HOT
        }]
    );
    s.pay(b, 10);
    assert_eq!(s.stock(HOT), (0, 0, 2, 0), "user 4 dropped too: sold out");
    assert_eq!(rejected(s.place(5, &[(HOT, 1)], true)), Code::OutOfStock);
}

#[test]
fn waitlist_is_bounded() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 1, 0);
    s.place_one(1, 1);
    for user in 2..5 {
        assert!(matches!(
            s.place(user, &[(HOT, 1)], true),
            Outcome::WaitlistJoined { .. }
        ));
    }
    assert_eq!(rejected(s.place(9, &[(HOT, 1)], true)), Code::WaitlistFull);
}

#[test]
fn waitlisted_units_count_toward_the_per_user_limit() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 2, 2);
    s.place_one(1, 2);
    assert!(matches!(
        s.place(2, &[(HOT, 2)], true),
        Outcome::WaitlistJoined { .. }
    ));
    assert_eq!(s.engine.held(UserId(2), HOT), 2);
    assert_eq!(rejected(s.place(2, &[(HOT, 1)], true)), Code::PerUserLimit);
}

#[test]
fn waitlist_eta_follows_the_release_rate() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 3, 0);
    let orders: Vec<_> = (1..=3).map(|u| s.place_one(u, 1)).collect();
    s.place(10, &[(HOT, 1)], true);
    s.place(11, &[(HOT, 1)], true);
    let position = |s: &Sim, user| match s.engine.query(&Query::WaitlistPosition {
        sku: HOT,
        user: UserId(user),
    }) {
        Answer::WaitlistPosition(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(position(&s, 11).eta_ns, None, "no releases yet");
    s.now_ns = 100;
    s.send(Command::CancelOrder { order: orders[0] }); // → user 10
    s.now_ns = 300;
    s.send(Command::CancelOrder { order: orders[1] }); // → user 11
    s.place(12, &[(HOT, 1)], true);
    s.place(13, &[(HOT, 1)], true);
    // One unit per 200 ns; user 13 waits for two units.
    assert_eq!(position(&s, 13).eta_ns, Some(400));
    assert_eq!(position(&s, 13).position, 2);
    assert!(matches!(
        s.engine.query(&Query::WaitlistPosition {
            sku: HOT,
            user: UserId(99)
        }),
        Answer::Rejected {
            code: Code::NotWaitlisted,
            ..
        }
    ));
}

#[test]
fn restock_serves_the_waitlist_first_and_delist_drops_it() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 1, 0);
    s.place_one(1, 1);
    s.place(2, &[(HOT, 1)], true);
    s.place(3, &[(HOT, 1)], true);
    assert_eq!(
        s.send(Command::Restock { sku: HOT, units: 1 }),
        Outcome::SkuRestocked {
            sku: HOT,
            available: 0
        }
    );
    assert!(matches!(
        s.events()[..],
        [Event::WaitlistOrderCreated {
            user: UserId(2),
            ..
        }]
    ));
    assert_eq!(
        rejected(s.send(Command::Restock { sku: HOT, units: 0 })),
        Code::BadQuantity
    );
    assert_eq!(
        rejected(s.send(Command::Restock {
            sku: HOT,
            units: u64::MAX
        })),
        Code::StockOverflow
    );
    assert_eq!(
        s.send(Command::Delist { sku: HOT }),
        Outcome::SkuDelisted {
            sku: HOT,
            waitlist_dropped: 1
        }
    );
    assert_eq!(rejected(s.place(4, &[(HOT, 1)], false)), Code::SkuNotListed);
    assert_eq!(s.engine.held(UserId(3), HOT), 0);
    s.sku(HOT, 10, 5, 0); // listed again
    s.place_one(4, 1);
}

#[test]
fn upsert_cannot_take_away_committed_stock() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 5, 0);
    let order = s.place_one(1, 2);
    s.pay(order, 20);
    s.place_one(2, 1);
    assert_eq!(
        rejected(s.send(Command::UpsertSku(SkuSpec {
            sku: HOT,
            price: 12,
            stock: 2,
            per_user_limit: 0,
            sale_window: None
        }))),
        Code::StockBelowCommitted
    );
    s.sku(HOT, 12, 3, 0);
    assert_eq!(s.stock(HOT), (0, 1, 2, 0));
}

#[test]
fn catalog_and_orders_are_bounded() {
    let mut s = Sim::with_config(EngineConfig {
        payment_window_ns: WINDOW_NS,
        waitlist_len_max: 1,
        idempotency_window: 100,
        clients_max: 8,
        orders_max: 2,
        skus_max: 1,
        ..no_retirement()
    });
    s.sku(HOT, 1, 10, 0);
    assert_eq!(
        rejected(s.send(Command::UpsertSku(SkuSpec {
            sku: OTHER,
            price: 1,
            stock: 1,
            per_user_limit: 0,
            sale_window: None
        }))),
        Code::SkuCapacityFull
    );
    s.place_one(1, 1);
    s.place_one(2, 1);
    assert_eq!(
        rejected(s.place(3, &[(HOT, 1)], false)),
        Code::OrderCapacityFull
    );
}

#[test]
fn a_retried_request_gets_the_original_outcome_and_no_second_order() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 1, 0);
    let place = Command::PlaceOrder {
        user: UserId(1),
        lines: vec![OrderLine { sku: HOT, qty: 1 }],
        join_waitlist: false,
    };
    let first = s.send_as(5, 77, place.clone());
    assert!(matches!(first, Outcome::OrderPlaced { .. }));
    assert_eq!(s.send_as(5, 77, place.clone()), first);
    assert_eq!(s.engine.orders().len(), 1);
    // Same request id from another client is another request.
    assert_eq!(rejected(s.send_as(6, 77, place.clone())), Code::OutOfStock);
    // A rejection is remembered too: stock coming back does not change the old answer.
    s.send(Command::CancelOrder { order: OrderId(1) });
    assert_eq!(rejected(s.send_as(6, 77, place)), Code::OutOfStock);
}

#[test]
fn requests_older_than_the_window_are_refused_not_reapplied() {
    let mut s = Sim::with_config(EngineConfig {
        payment_window_ns: WINDOW_NS,
        waitlist_len_max: 1,
        idempotency_window: 16,
        clients_max: 2,
        orders_max: 100,
        skus_max: 1,
        ..no_retirement()
    });
    s.sku(HOT, 10, 100, 0);
    let place = |user| Command::PlaceOrder {
        user: UserId(user),
        lines: vec![OrderLine { sku: HOT, qty: 1 }],
        join_waitlist: false,
    };
    for r in 1..=20 {
        s.send_as(9, r, place(r));
    }
    assert_eq!(s.engine.orders().len(), 20);
    assert!(matches!(
        s.send_as(9, 5, place(5)),
        Outcome::OrderPlaced {
            order: OrderId(5),
            ..
        }
    ));
    assert_eq!(
        s.send_as(9, 4, place(4)),
        Outcome::Rejected {
            code: Code::RequestTooOld,
            subject: 4
        }
    );
    assert_eq!(s.engine.orders().len(), 20, "neither retry made an order");
    // Past `clients_max` clients, the least recently active is forgotten.
    s.send_as(10, 1, place(30));
    s.send_as(11, 1, place(31));
    assert_eq!(s.engine.orders().len(), 22);
    s.send_as(9, 20, place(20));
    assert_eq!(s.engine.orders().len(), 23, "client 9 was forgotten");
}

fn statement(s: &mut Sim, entries: &[(u64, u64, StatementStatus)], close: Option<u64>) -> Outcome {
    s.send(Command::StatementBatch {
        entries: entries
            .iter()
            .map(|&(order, amount, status)| StatementEntry {
                payment_ref: 5000 + order,
                order: OrderId(order),
                amount,
                status,
            })
            .collect(),
        closes_through_ns: close,
    })
}

fn discrepancies(s: &Sim) -> Vec<(DiscrepancyKind, u64)> {
    s.out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Discrepancy(Discrepancy { kind, order, .. }) => Some((*kind, order.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn reconciliation_reports_each_kind_of_mismatch() {
    use DiscrepancyKind::*;
    use StatementStatus::*;
    let mut s = Sim::new();
    s.sku(HOT, 10, 100, 0);
    let paid_ok = s.place_one(1, 1); // 1: paid, captured, agrees
    let paid_short = s.place_one(2, 1); // 2: paid, captured for less
    let paid_missing = s.place_one(3, 1); // 3: paid, absent from the statement
    let cancelled = s.place_one(4, 1); // 4: cancelled but captured
    let pending = s.place_one(5, 1); // 5: never confirmed but captured
    for order in [paid_ok, paid_short, paid_missing] {
        s.pay(order, 10);
    }
    s.send(Command::CancelOrder { order: cancelled });
    s.now_ns = 50;
    let outcome = statement(
        &mut s,
        &[
            (1, 10, Captured),
            (2, 7, Captured),
            (4, 10, Captured),
            (5, 10, Captured),
            (77, 10, Captured),
            (1, 10, Captured),
        ],
        Some(40),
    );
    assert_eq!(
        discrepancies(&s),
        vec![
            (AmountMismatch, 2),
            (RefundDue, 4),
            (SettledFromStatement, 5),
            (RefundDue, 77),
            (RefundDue, 1),
            (MissingFromStatement, 3),
        ]
    );
    assert_eq!(
        outcome,
        Outcome::StatementApplied {
            entries: 6,
            matched: 1,
            discrepancies: 6
        }
    );
    assert_eq!(
        s.state(pending),
        OrderState::Paid,
        "settled from the statement"
    );
    assert_eq!(s.stock(HOT), (96, 0, 4, 0));
    // Everything has been seen once; closing again reports nothing new.
    statement(&mut s, &[], Some(1_000));
    assert!(discrepancies(&s).is_empty());
    assert_eq!(rejected(statement(&mut s, &[], None)), Code::BadStatement);
}

#[test]
fn a_statement_closes_only_through_its_cutoff() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 100, 0);
    let early = s.place_one(1, 1);
    s.pay(early, 10);
    s.now_ns = 500;
    let late = s.place_one(2, 1);
    s.pay(late, 10);
    statement(
        &mut s,
        &[(late.0, 10, StatementStatus::Declined)],
        Some(100),
    );
    assert_eq!(
        discrepancies(&s),
        vec![
            (DiscrepancyKind::MissingFromStatement, late.0),
            (DiscrepancyKind::MissingFromStatement, early.0)
        ]
    );
}

#[test]
fn same_requests_same_hash_and_snapshots_continue_identically() {
    fn script(s: &mut Sim, from: usize, to: usize) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for step in from..to {
            s.now_ns = 1 + step as u64 * 37;
            let user = step as u64 % 5;
            let outcome = match step % 4 {
                0 | 1 => s.place(user, &[(HOT, 1)], true),
                2 => s.pay(OrderId(step as u64 / 2), 10),
                _ => s.send(Command::CancelOrder {
                    order: OrderId(step as u64 / 3),
                }),
            };
            outcomes.push(outcome);
        }
        outcomes
    }
    let run = || {
        let mut s = Sim::new();
        s.sku(HOT, 10, 4, 2);
        s
    };
    let (mut a, mut b) = (run(), run());
    assert_eq!(script(&mut a, 0, 120), script(&mut b, 0, 120));
    assert_eq!(a.engine.hash(), b.engine.hash());

    let mut whole = run();
    script(&mut whole, 0, 120);
    let mut half = run();
    script(&mut half, 0, 60);
    let bytes = half.engine.snapshot().to_bytes();
    let restored = Engine::restore(EngineSnapshot::from_bytes(&bytes).unwrap()).unwrap();
    assert_eq!(restored.hash(), half.engine.hash());
    half.engine = restored;
    script(&mut half, 60, 120);
    assert_eq!(half.engine.hash(), whole.engine.hash());
    assert_eq!(
        &half.engine.snapshot().to_bytes()[..],
        &whole.engine.snapshot().to_bytes()[..]
    );
}

#[test]
fn a_damaged_snapshot_is_refused() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 4, 0);
    s.place_one(1, 1);
    let bytes = s.engine.snapshot().to_bytes();
    assert!(EngineSnapshot::from_bytes(&bytes[..bytes.len() / 2]).is_err());
    let mut snapshot = s.engine.snapshot();
    snapshot.skus[0].available += 1; // stock appears from nowhere
    assert!(Engine::restore(snapshot).is_err());
    let mut snapshot = s.engine.snapshot();
    snapshot.format_version += 1;
    assert!(Engine::restore(snapshot).is_err());
}

#[test]
fn errors_md_lists_every_code() {
    let doc = include_str!("../../docs/ERRORS.md");
    for &code in Code::ALL {
        let row = format!("| {} | `{}` |", code.number(), code.name());
        assert!(doc.contains(&row), "docs/ERRORS.md lacks {row}");
    }
}
