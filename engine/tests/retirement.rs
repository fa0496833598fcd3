//! One test per rule of retirement, capacity and holdings in docs/ENGINE.md, through the
//! public API: closed orders retire `retire_after` after they close and leave a retired
//! record; records past `orders_retired_max` are beyond history (for queries, commands and
//! statements); the book's room (`orders_max`) is what retirement frees; holdings outlive
//! retirement and are reset by a delist or a re-listing after the sale; and the table limits
//! `holdings_max` and `waitlist_entries_max`. The property tests (model_equivalence.rs) cover
//! the combinations; these pin each rule down by name.

use engine::{
    Answer, ClientId, Code, Command, DiscrepancyKind, Engine, EngineConfig, EngineSnapshot, Event,
    OrderId, OrderLine, OrderState, Outcome, Output, Query, Request, RequestId, RetiredOrder,
    SaleWindow, SkuId, SkuSpec, StatementEntry, StatementStatus, UserId,
};

const WINDOW_NS: u64 = 1_000;
const RETIRE_NS: u64 = 100;
const HOT: SkuId = SkuId(1);
const OTHER: SkuId = SkuId(2);

struct Sim {
    engine: Engine,
    out: Output,
    now_ns: u64,
    next_request: u64,
}

/// Small limits; closed orders retire `RETIRE_NS` after closing.
fn config() -> EngineConfig {
    EngineConfig {
        payment_window_ns: WINDOW_NS,
        waitlist_len_max: 3,
        idempotency_window: 1000,
        clients_max: 8,
        orders_max: 1000,
        skus_max: 10,
        orders_retired_max: 1000,
        retire_after_ns: RETIRE_NS,
        holdings_max: 1000,
        waitlist_entries_max: 1000,
    }
}

impl Sim {
    fn new() -> Sim {
        Sim::with_config(config())
    }

    fn with_config(config: EngineConfig) -> Sim {
        Sim {
            engine: Engine::new(config),
            out: Output::default(),
            now_ns: 1,
            next_request: 1,
        }
    }

    fn at(&mut self, now_ns: u64) -> &mut Sim {
        self.now_ns = now_ns;
        self
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

    fn upsert(&mut self, sku: SkuId, stock: u64, limit: u32, window: Option<(u64, u64)>) {
        let outcome = self.send(Command::UpsertSku(SkuSpec {
            sku,
            price: 10,
            stock,
            per_user_limit: limit,
            sale_window: window.map(|(start_ns, end_ns)| SaleWindow { start_ns, end_ns }),
        }));
        assert_eq!(outcome, Outcome::SkuUpserted { sku });
    }

    fn sku(&mut self, sku: SkuId, stock: u64, limit: u32) {
        self.upsert(sku, stock, limit, None);
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

    fn cancel(&mut self, order: OrderId) -> Outcome {
        self.send(Command::CancelOrder { order })
    }

    fn tick(&mut self, to_ns: u64) -> Vec<Event> {
        self.now_ns = to_ns;
        let outcome = self.send_as(0, 0, Command::Tick);
        assert_eq!(outcome, Outcome::Ticked { now_ns: to_ns });
        self.events()
    }

    fn query(&self, order: OrderId) -> Answer {
        self.engine.query(&Query::Order { order })
    }

    fn retired(&self, order: OrderId) -> RetiredOrder {
        match self.query(order) {
            Answer::RetiredOrder(r) => r,
            other => panic!("expected a retired order, got {other:?}"),
        }
    }

    fn statement(&mut self, entries: &[(OrderId, u64, StatementStatus)], close: Option<u64>) {
        let entries = entries
            .iter()
            .map(|&(order, amount, status)| StatementEntry {
                payment_ref: 900 + order.0,
                order,
                amount,
                status,
            })
            .collect();
        let outcome = self.send(Command::StatementBatch {
            entries,
            closes_through_ns: close,
        });
        assert_eq!(outcome.code(), Code::StatementApplied, "{outcome:?}");
    }

    /// (kind, order, expected, captured) of each discrepancy of the last command.
    fn discrepancies(&self) -> Vec<(DiscrepancyKind, u64, u64, u64)> {
        self.out
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Discrepancy(d) => Some((d.kind, d.order.0, d.expected, d.captured)),
                _ => None,
            })
            .collect()
    }

    fn held(&self, user: u64, sku: SkuId) -> u32 {
        self.engine.held(UserId(user), sku)
    }
}

fn rejected(outcome: Outcome) -> (Code, u64) {
    match outcome {
        Outcome::Rejected { code, subject } => (code, subject),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn retired_event(order: OrderId, state: OrderState) -> Event {
    Event::OrderRetired { order, state }
}

// ---- Retirement ---------------------------------------------------------------------------

#[test]
fn an_order_retires_exactly_retire_after_it_closed_and_leaves_a_record() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 0);
    s.sku(OTHER, 10, 0);
    s.at(10);
    let Outcome::OrderPlaced { order, total, .. } = s.place(7, &[(HOT, 2), (OTHER, 1)], false)
    else {
        panic!()
    };
    s.at(20);
    assert_eq!(s.pay(order, total), Outcome::PaymentConfirmed { order });
    assert!(s.tick(20 + RETIRE_NS - 1).is_empty(), "not before");
    assert!(matches!(s.query(order), Answer::Order(ref o) if o.state == OrderState::Paid));
    assert_eq!(s.engine.orders().len(), 1);
    assert_eq!(
        s.tick(20 + RETIRE_NS),
        vec![retired_event(order, OrderState::Paid)],
        "at closed + retire_after exactly"
    );
    assert_eq!(s.engine.orders().len(), 0, "gone from the book");
    assert_eq!(s.engine.orders().next_id(), OrderId(2));
    assert_eq!(s.engine.retired().len(), 1);
    let answer = s.query(order);
    assert_eq!(answer.code(), Code::RetiredOrderInfo);
    assert_eq!(
        s.retired(order),
        RetiredOrder {
            id: order,
            client: ClientId(1),
            request: RequestId(4),
            user: UserId(7),
            total: 30,
            created_ns: 10,
            closed_ns: 20,
            payment_ref: 900 + order.0,
            first_sku: HOT,
            first_qty: 2,
            line_count: 2,
            state: OrderState::Paid,
            reconciled: false,
        }
    );
    assert!(s.tick(10_000).is_empty(), "retires once");
}

#[test]
fn retirement_follows_closing_order_and_comes_after_expiry() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 0);
    let (a, b, c) = (s.place_one(1, 1), s.place_one(2, 1), s.place_one(3, 1));
    s.at(5);
    s.cancel(b);
    s.at(6);
    s.send(Command::FailPayment { order: a });
    // `c` expires at its deadline; `b` and `a` retire in the order they closed, after it.
    let events = s.tick(1 + WINDOW_NS + RETIRE_NS);
    assert_eq!(
        events,
        vec![
            Event::OrderExpired {
                order: c,
                client: ClientId(1),
                user: UserId(3)
            },
            retired_event(b, OrderState::Cancelled),
            retired_event(a, OrderState::PaymentFailed),
        ]
    );
    assert!(
        matches!(s.query(c), Answer::Order(ref o) if o.state == OrderState::Expired),
        "it closed just now: it retires {RETIRE_NS} later"
    );
}

#[test]
fn a_backlog_retires_a_few_per_command_in_closing_order() {
    let per_command = engine::state_machine::RETIRE_PER_COMMAND;
    let backlog = 2 * per_command + 3;
    let mut s = Sim::new();
    s.sku(HOT, 1_000, 0);
    let orders: Vec<OrderId> = (0..backlog).map(|i| s.place_one(i as u64 + 1, 1)).collect();
    for &order in &orders {
        assert_eq!(s.cancel(order), Outcome::OrderCancelled { order });
    }
    // All are due at once: each command retires the next few, oldest closure first.
    let mut retired = Vec::new();
    let due = s.now_ns + RETIRE_NS;
    for (at, expected) in (due..).zip([per_command, per_command, 3, 0]) {
        let events = s.tick(at);
        assert_eq!(events.len(), expected, "{events:?}");
        retired.extend(events);
    }
    let in_order: Vec<Event> = orders
        .iter()
        .map(|&o| retired_event(o, OrderState::Cancelled))
        .collect();
    assert_eq!(retired, in_order);
}

#[test]
fn with_no_delay_an_order_retires_at_the_next_command() {
    let mut s = Sim::with_config(EngineConfig {
        retire_after_ns: 0,
        ..config()
    });
    s.sku(HOT, 10, 0);
    let order = s.place_one(1, 1);
    assert_eq!(s.cancel(order), Outcome::OrderCancelled { order });
    assert!(
        s.events().is_empty(),
        "not during the command that closed it"
    );
    assert_eq!(s.tick(1), vec![retired_event(order, OrderState::Cancelled)]);
    // An order that expires in a clock step retires in that same step.
    let late = s.place_one(2, 1);
    assert_eq!(
        s.tick(1 + WINDOW_NS),
        vec![
            Event::OrderExpired {
                order: late,
                client: ClientId(1),
                user: UserId(2)
            },
            retired_event(late, OrderState::Expired),
        ]
    );
}

#[test]
fn a_retired_order_keeps_the_codes_of_its_final_state() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 0);
    let (paid, cancelled, expired) = (s.place_one(1, 1), s.place_one(2, 1), s.place_one(3, 1));
    s.pay(paid, 10);
    s.cancel(cancelled);
    s.tick(1 + WINDOW_NS); // `expired` closes
    s.tick(1 + WINDOW_NS + RETIRE_NS);
    for (order, code) in [
        (paid, Code::AlreadyPaid),
        (cancelled, Code::OrderAlreadyCancelled),
        (expired, Code::OrderAlreadyExpired),
    ] {
        assert_eq!(s.retired(order).id, order);
        assert_eq!(rejected(s.pay(order, 10)), (code, order.0));
        assert_eq!(rejected(s.cancel(order)), (code, order.0));
        let fail = s.send(Command::FailPayment { order });
        assert_eq!(rejected(fail), (code, order.0));
    }
}

#[test]
fn past_the_retired_ring_an_order_is_beyond_history() {
    let mut s = Sim::with_config(EngineConfig {
        orders_retired_max: 2,
        ..config()
    });
    s.sku(HOT, 10, 0);
    let orders: Vec<OrderId> = (1..=3).map(|user| s.place_one(user, 1)).collect();
    for &order in &orders {
        s.pay(order, 10);
    }
    s.tick(1 + RETIRE_NS);
    assert_eq!(s.engine.retired().len(), 2);
    assert_eq!(s.engine.retired().retired_total(), 3);
    let oldest = orders[0];
    let beyond = (Code::OrderBeyondHistory, oldest.0);
    assert_eq!(
        s.query(oldest),
        Answer::Rejected {
            code: beyond.0,
            subject: beyond.1
        }
    );
    assert_eq!(s.retired(orders[1]).state, OrderState::Paid);
    assert_eq!(s.retired(orders[2]).state, OrderState::Paid);
    assert_eq!(rejected(s.pay(oldest, 10)), beyond);
    assert_eq!(rejected(s.cancel(oldest)), beyond);
    assert_eq!(
        rejected(s.send(Command::FailPayment { order: oldest })),
        beyond
    );
    // Never assigned: still unknown.
    for never in [OrderId(0), OrderId(4), OrderId(99)] {
        assert_eq!(s.query(never).code(), Code::UnknownOrder);
        assert_eq!(rejected(s.cancel(never)), (Code::UnknownOrder, never.0));
    }
    // A statement can only say so, captured or declined; the close skips it.
    s.statement(
        &[
            (oldest, 10, StatementStatus::Captured),
            (oldest, 10, StatementStatus::Declined),
        ],
        Some(s.now_ns),
    );
    assert_eq!(
        s.discrepancies(),
        vec![
            (DiscrepancyKind::BeyondHistory, oldest.0, 0, 10),
            (DiscrepancyKind::BeyondHistory, oldest.0, 0, 0),
            (DiscrepancyKind::MissingFromStatement, orders[1].0, 10, 0),
            (DiscrepancyKind::MissingFromStatement, orders[2].0, 10, 0),
        ]
    );
    assert_eq!(
        s.out.events[0].code(),
        Code::DiscrepancyBeyondHistory,
        "its own event code"
    );
}

#[test]
fn with_no_ring_every_retired_order_is_beyond_history_at_once() {
    let mut s = Sim::with_config(EngineConfig {
        orders_retired_max: 0,
        ..config()
    });
    s.sku(HOT, 10, 0);
    let order = s.place_one(1, 1);
    s.cancel(order);
    assert_eq!(s.query(order).code(), Code::OrderInfo);
    s.tick(1 + RETIRE_NS);
    assert_eq!(s.query(order).code(), Code::OrderBeyondHistory);
    assert_eq!(s.engine.retired().len(), 0);
}

#[test]
fn statements_still_reconcile_retired_orders() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 0);
    let (seen, missing, mismatched, cancelled) = (
        s.place_one(1, 1),
        s.place_one(2, 1),
        s.place_one(3, 1),
        s.place_one(4, 1),
    );
    s.at(5);
    for order in [seen, missing, mismatched] {
        s.pay(order, 10);
    }
    s.cancel(cancelled);
    s.tick(5 + RETIRE_NS);
    assert_eq!(s.engine.orders().len(), 0, "all retired");
    s.statement(
        &[
            (seen, 10, StatementStatus::Captured),
            (mismatched, 12, StatementStatus::Captured),
            (cancelled, 10, StatementStatus::Captured),
        ],
        None,
    );
    assert_eq!(
        s.discrepancies(),
        vec![
            (DiscrepancyKind::AmountMismatch, mismatched.0, 10, 12),
            (DiscrepancyKind::RefundDue, cancelled.0, 10, 10),
        ]
    );
    assert!(s.retired(seen).reconciled, "seen in its record");
    assert!(!s.retired(missing).reconciled);
    // Captured twice; and the close reports the one paid order the statement never had.
    s.statement(&[(seen, 10, StatementStatus::Captured)], Some(5));
    assert_eq!(
        s.discrepancies(),
        vec![
            (DiscrepancyKind::RefundDue, seen.0, 10, 10),
            (DiscrepancyKind::MissingFromStatement, missing.0, 10, 0),
        ]
    );
    assert!(s.retired(missing).reconciled);
    s.statement(&[], Some(5));
    assert_eq!(s.discrepancies(), vec![], "reported once");
}

#[test]
fn a_close_walks_retired_records_then_the_book_in_payment_order() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 0);
    let (a, b, c) = (s.place_one(1, 1), s.place_one(2, 1), s.place_one(3, 1));
    s.at(10);
    s.pay(a, 10);
    s.at(20);
    s.pay(b, 10);
    s.at(10 + RETIRE_NS); // `a` retires, `b` not yet
    s.pay(c, 10);
    assert_eq!(s.retired(a).id, a);
    assert_eq!(s.query(b).code(), Code::OrderInfo);
    s.statement(&[], Some(20));
    let missing = |order: OrderId| (DiscrepancyKind::MissingFromStatement, order.0, 10, 0);
    assert_eq!(s.discrepancies(), vec![missing(a), missing(b)]);
    s.statement(&[], Some(s.now_ns));
    assert_eq!(s.discrepancies(), vec![missing(c)]);
}

#[test]
fn retirement_makes_room_in_the_book() {
    let mut s = Sim::with_config(EngineConfig {
        orders_max: 2,
        ..config()
    });
    s.sku(HOT, 10, 0);
    let (a, _b) = (s.place_one(1, 1), s.place_one(2, 1));
    assert_eq!(
        rejected(s.place(3, &[(HOT, 1)], false)),
        (Code::OrderCapacityFull, 0)
    );
    s.at(50);
    s.cancel(a);
    assert_eq!(
        rejected(s.place(3, &[(HOT, 1)], false)),
        (Code::OrderCapacityFull, 0),
        "a closed order holds its place until it retires"
    );
    s.at(50 + RETIRE_NS - 1);
    assert_eq!(
        rejected(s.place(3, &[(HOT, 1)], false)).0,
        Code::OrderCapacityFull
    );
    s.at(50 + RETIRE_NS);
    assert_eq!(
        s.place(3, &[(HOT, 1)], false),
        Outcome::OrderPlaced {
            order: OrderId(3),
            total: 10,
            deadline_ns: 50 + RETIRE_NS + WINDOW_NS
        }
    );
    assert_eq!(
        s.events(),
        vec![retired_event(a, OrderState::Cancelled)],
        "retired in the same command's clock step"
    );
}

#[test]
fn a_full_book_holds_the_waitlist_head_back_until_it_is_served_again() {
    let mut s = Sim::with_config(EngineConfig {
        orders_max: 2,
        ..config()
    });
    s.sku(HOT, 2, 0);
    let (a, _b) = (s.place_one(1, 1), s.place_one(2, 1));
    assert!(matches!(
        s.place(3, &[(HOT, 1)], true),
        Outcome::WaitlistJoined { position: 1, .. }
    ));
    s.at(10);
    s.cancel(a);
    assert!(s.events().is_empty(), "the head fits, but the book is full");
    let queued = Query::WaitlistPosition {
        sku: HOT,
        user: UserId(3),
    };
    assert!(matches!(
        s.engine.query(&queued),
        Answer::WaitlistPosition(_)
    ));
    // Retirement makes room but serves nothing; the next serving of the SKU does.
    assert_eq!(
        s.tick(10 + RETIRE_NS),
        vec![retired_event(a, OrderState::Cancelled)]
    );
    assert!(matches!(
        s.send(Command::Restock { sku: HOT, units: 1 }),
        Outcome::SkuRestocked { available: 1, .. }
    ));
    assert!(
        matches!(
            s.events()[..],
            [Event::WaitlistOrderCreated {
                user: UserId(3),
                order: OrderId(3),
                ..
            }]
        ),
        "{:?}",
        s.events()
    );
}

#[test]
fn a_retry_of_a_retired_orders_request_gets_its_original_outcome() {
    let mut s = Sim::with_config(EngineConfig {
        orders_retired_max: 0,
        ..config()
    });
    s.sku(HOT, 10, 0);
    let place = Command::PlaceOrder {
        user: UserId(5),
        lines: vec![OrderLine { sku: HOT, qty: 2 }],
        join_waitlist: false,
    };
    let first = s.send_as(3, 7, place.clone());
    let Outcome::OrderPlaced { order, .. } = first else {
        panic!("{first:?}")
    };
    s.cancel(order);
    s.tick(1 + RETIRE_NS);
    assert_eq!(s.query(order).code(), Code::OrderBeyondHistory);
    assert_eq!(s.send_as(3, 7, place), first);
    assert!(s.events().is_empty());
    assert_eq!(s.engine.orders().next_id(), OrderId(2), "no second order");
}

// ---- Holdings -----------------------------------------------------------------------------

#[test]
fn a_paid_order_counts_toward_the_limit_after_it_retires() {
    let mut s = Sim::with_config(EngineConfig {
        orders_retired_max: 0,
        ..config()
    });
    s.sku(HOT, 10, 3);
    let order = s.place_one(1, 2);
    s.pay(order, 20);
    s.tick(1 + RETIRE_NS);
    assert_eq!(s.query(order).code(), Code::OrderBeyondHistory);
    assert_eq!(s.held(1, HOT), 2);
    assert_eq!(
        rejected(s.place(1, &[(HOT, 2)], false)),
        (Code::PerUserLimit, HOT.0)
    );
    s.place_one(1, 1);
    // A cancelled one stops counting when it closes, retired or not.
    let other = s.place_one(2, 3);
    s.cancel(other);
    assert_eq!(s.held(2, HOT), 0);
    s.place_one(2, 3);
}

#[test]
fn units_bought_without_a_limit_never_count() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 0);
    s.place_one(1, 5);
    s.sku(HOT, 10, 2); // the limit comes in (no reset: the sale has no window)
    assert_eq!(s.held(1, HOT), 0);
    s.place_one(1, 2);
    assert_eq!(s.held(1, HOT), 2);
    assert_eq!(
        rejected(s.place(1, &[(HOT, 1)], false)).0,
        Code::PerUserLimit
    );
}

#[test]
fn delisting_resets_holdings() {
    let mut s = Sim::new();
    s.sku(HOT, 10, 2);
    let (paid, open) = (s.place_one(1, 1), s.place_one(1, 1));
    s.pay(paid, 10);
    assert_eq!(
        rejected(s.place(1, &[(HOT, 1)], false)).0,
        Code::PerUserLimit
    );
    s.send(Command::Delist { sku: HOT });
    s.sku(HOT, 10, 2);
    assert_eq!(
        s.held(1, HOT),
        0,
        "what was held before the delist no longer counts"
    );
    let fresh = s.place_one(1, 2);
    // Releasing an order from before the reset takes nothing from what counts now.
    s.cancel(open);
    assert_eq!(s.held(1, HOT), 2);
    assert_eq!(
        rejected(s.place(1, &[(HOT, 1)], false)).0,
        Code::PerUserLimit
    );
    s.cancel(fresh);
    assert_eq!(s.held(1, HOT), 0);
}

#[test]
fn listing_again_after_the_sale_window_resets_holdings() {
    let mut s = Sim::new();
    s.upsert(HOT, 10, 2, Some((0, 100)));
    s.at(20);
    let order = s.place_one(1, 2);
    s.pay(order, 20);
    s.at(50);
    // Changed while the sale is on: not a new sale.
    s.upsert(HOT, 10, 2, Some((0, 200)));
    assert_eq!(
        rejected(s.place(1, &[(HOT, 1)], false)).0,
        Code::PerUserLimit
    );
    s.at(200);
    assert_eq!(rejected(s.place(1, &[(HOT, 1)], false)).0, Code::SaleEnded);
    // Listed again once it has ended: a new sale, counted afresh.
    s.upsert(HOT, 10, 2, Some((200, 400)));
    assert_eq!(s.held(1, HOT), 0);
    s.place_one(1, 2);
    assert_eq!(
        rejected(s.place(1, &[(HOT, 1)], false)).0,
        Code::PerUserLimit
    );
}

#[test]
fn a_waitlist_order_inherits_its_entrys_holdings_across_a_reset() {
    let mut s = Sim::new();
    s.upsert(HOT, 1, 2, Some((0, 100)));
    let first = s.place_one(1, 1);
    assert!(matches!(
        s.place(2, &[(HOT, 1)], true),
        Outcome::WaitlistJoined { .. }
    ));
    assert_eq!(s.held(2, HOT), 1, "a queued entry counts");
    s.at(100);
    s.upsert(HOT, 1, 2, Some((100, 300))); // a new sale: user 2's entry stops counting
    assert_eq!(s.held(2, HOT), 0);
    s.cancel(first);
    assert!(
        matches!(
            s.events()[..],
            [Event::WaitlistOrderCreated {
                user: UserId(2),
                ..
            }]
        ),
        "{:?}",
        s.events()
    );
    assert_eq!(s.held(2, HOT), 0, "made from an entry of the old sale");
    s.send(Command::Restock { sku: HOT, units: 2 });
    s.place_one(2, 2);
    assert_eq!(s.held(2, HOT), 2);
}

#[test]
fn the_holdings_table_is_bounded_and_the_sweep_frees_reset_entries() {
    let mut s = Sim::with_config(EngineConfig {
        holdings_max: 2,
        ..config()
    });
    s.sku(HOT, 100, 5);
    s.sku(OTHER, 100, 0);
    s.place_one(1, 1);
    s.place_one(2, 1);
    assert_eq!(
        rejected(s.place(3, &[(HOT, 1)], false)),
        (Code::HoldingsCapacityFull, 0)
    );
    s.place_one(1, 1); // an entry it has already
    assert!(
        matches!(
            s.place(3, &[(OTHER, 1)], false),
            Outcome::OrderPlaced { .. }
        ),
        "no limit, no holding"
    );
    s.send(Command::Delist { sku: HOT });
    // The table for 2 has `next_pow2(2 * 10 / 7 + 1).max(16)` = 16 slots and the sweep
    // visits 4 per command: a lap in 4 commands. Two laps, as a removal can pull an entry
    // back into a slot the lap has passed.
    for n in 0..8 {
        s.tick(10 + n);
    }
    let holdings = s
        .engine
        .limits()
        .into_iter()
        .find(|l| l.name == "holdings_max");
    assert_eq!(
        holdings.map(|l| l.used),
        Some(0),
        "the stale entries are gone"
    );
    s.sku(HOT, 100, 5);
    assert!(matches!(
        s.place(3, &[(HOT, 1)], false),
        Outcome::OrderPlaced { .. }
    ));
    assert!(matches!(
        s.place(4, &[(HOT, 1)], false),
        Outcome::OrderPlaced { .. }
    ));
    assert_eq!(
        rejected(s.place(5, &[(HOT, 1)], false)).0,
        Code::HoldingsCapacityFull
    );
}

#[test]
fn a_waitlist_entry_that_needs_a_holding_is_bounded_by_the_table_too() {
    let mut s = Sim::with_config(EngineConfig {
        holdings_max: 1,
        ..config()
    });
    s.sku(HOT, 1, 5);
    s.place_one(1, 1);
    assert_eq!(
        rejected(s.place(2, &[(HOT, 1)], true)),
        (Code::HoldingsCapacityFull, 0)
    );
    assert!(matches!(
        s.place(1, &[(HOT, 1)], true),
        Outcome::WaitlistJoined { .. }
    ));
}

#[test]
fn all_waitlists_together_are_bounded() {
    let mut s = Sim::with_config(EngineConfig {
        waitlist_len_max: 1,
        waitlist_entries_max: 2,
        ..config()
    });
    let third = SkuId(3);
    for sku in [HOT, OTHER, third] {
        s.sku(sku, 1, 0);
        assert!(matches!(
            s.place(1, &[(sku, 1)], false),
            Outcome::OrderPlaced { .. }
        ));
    }
    assert!(matches!(
        s.place(2, &[(HOT, 1)], true),
        Outcome::WaitlistJoined { .. }
    ));
    assert!(matches!(
        s.place(2, &[(OTHER, 1)], true),
        Outcome::WaitlistJoined { .. }
    ));
    assert_eq!(
        rejected(s.place(3, &[(third, 1)], true)),
        (Code::WaitlistCapacityFull, third.0)
    );
    // The per-SKU checks come first.
    assert_eq!(
        rejected(s.place(2, &[(HOT, 1)], true)).0,
        Code::AlreadyWaitlisted
    );
    assert_eq!(
        rejected(s.place(3, &[(HOT, 1)], true)).0,
        Code::WaitlistFull
    );
    // An entry leaving makes room.
    s.send(Command::Delist { sku: HOT });
    assert!(matches!(
        s.place(3, &[(third, 1)], true),
        Outcome::WaitlistJoined { .. }
    ));
}

// ---- Replay -------------------------------------------------------------------------------

/// A deterministic stream of commands on a small, retiring engine: places (some joining a
/// waitlist), payments, cancels, statements, restocks, delists and re-listings, with time
/// moving on.
fn busy_requests(n: usize) -> Vec<(u64, Request)> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut now = 1;
    let mut requests = Vec::new();
    for i in 0..n as u64 {
        now += next(30);
        let order = OrderId(1 + next(i / 2 + 2));
        let sku = SkuId(1 + next(3));
        let command = match next(20) {
            0..=8 => Command::PlaceOrder {
                user: UserId(1 + next(5)),
                lines: vec![OrderLine {
                    sku,
                    qty: 1 + next(2) as u32,
                }],
                join_waitlist: next(2) == 0,
            },
            9..=11 => Command::ConfirmPayment {
                order,
                amount: 10 * (1 + next(2)),
                payment_ref: i,
            },
            12 => Command::CancelOrder { order },
            13 => Command::StatementBatch {
                entries: vec![StatementEntry {
                    payment_ref: i,
                    order,
                    amount: 10,
                    status: StatementStatus::Captured,
                }],
                closes_through_ns: (next(2) == 0).then_some(now),
            },
            14 if next(3) == 0 => Command::Delist { sku },
            15..=16 => Command::UpsertSku(SkuSpec {
                sku,
                price: 10,
                stock: next(6),
                per_user_limit: next(3) as u32,
                sale_window: (next(4) == 0).then_some(SaleWindow {
                    start_ns: now,
                    end_ns: now + 600,
                }),
            }),
            17 => Command::Restock {
                sku,
                units: 1 + next(3),
            },
            _ => Command::Tick,
        };
        requests.push((
            now,
            Request {
                client: ClientId(1),
                request: RequestId(i + 1),
                command,
            },
        ));
    }
    requests
}

#[test]
fn replay_with_retirement_is_deterministic_and_survives_a_snapshot() {
    let config = EngineConfig {
        payment_window_ns: 300,
        orders_max: 8,
        orders_retired_max: 5,
        retire_after_ns: 50,
        holdings_max: 6,
        waitlist_entries_max: 1,
        ..config()
    };
    let requests = busy_requests(3_000);
    let (mut a, mut b) = (Engine::new(config), Engine::new(config));
    let mut out = Output::default();
    let mut restored = None;
    let mut seen = std::collections::BTreeSet::new();
    for (n, (now, request)) in requests.iter().enumerate() {
        a.apply(*now, request, &mut out);
        seen.insert(out.outcome.code());
        seen.extend(out.events.iter().map(Event::code));
        let first = (out.outcome, out.events.clone());
        b.apply(*now, request, &mut out);
        assert_eq!((out.outcome, out.events.clone()), first, "request {n}");
        if let Some(c) = restored.as_mut() {
            Engine::apply(c, *now, request, &mut out);
            assert_eq!(
                (out.outcome, out.events.clone()),
                first,
                "restored, request {n}"
            );
        }
        if n == requests.len() / 2 {
            let bytes = a.snapshot().to_bytes();
            let snapshot = EngineSnapshot::from_bytes(&bytes).expect("decodes");
            restored = Some(Engine::restore(snapshot).expect("restores"));
        }
        assert_eq!(a.check_invariants(), Ok(()), "request {n}");
    }
    let restored = restored.expect("taken");
    assert_eq!(a.hash(), b.hash());
    assert_eq!(restored.hash(), a.hash());
    assert_eq!(
        &restored.snapshot().to_bytes()[..],
        &a.snapshot().to_bytes()[..]
    );
    // The stream exercised what it is for.
    for code in [
        Code::OrderRetired,
        Code::DiscrepancyBeyondHistory,
        Code::OrderBeyondHistory,
        Code::OrderCapacityFull,
        Code::WaitlistCapacityFull,
        Code::HoldingsCapacityFull,
        Code::PerUserLimit,
        Code::WaitlistOrderCreated,
        Code::DiscrepancyMissingFromStatement,
    ] {
        assert!(seen.contains(&code), "never produced {code:?}: {seen:?}");
    }
}
