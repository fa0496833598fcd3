//! The engine's rules, end to end over TCP against a real `surge serve`: place, pay,
//! cancel, expiry by deadline, a waitlist hand-off pushed to the waiting buyer,
//! reconciliation, an idempotent retry, and requests refused one by one.

use std::time::Duration;

use engine::wire::{Operation, Reply};
use engine::*;

use super::harness::*;

fn stock(client: &mut loadgen::client::Client, sku: u64) -> outcome::StockView {
    match client
        .call(Operation::Query(Query::Stock { sku: SkuId(sku) }))
        .unwrap()
        .reply
    {
        Reply::Answer(Answer::Stock(view)) => view,
        other => panic!("{other:?}"),
    }
}

fn order(client: &mut loadgen::client::Client, order: OrderId) -> outcome::OrderView {
    match client
        .call(Operation::Query(Query::Order { order }))
        .unwrap()
        .reply
    {
        Reply::Answer(Answer::Order(view)) => view,
        other => panic!("{other:?}"),
    }
}

#[test]
fn place_pay_cancel_and_query() {
    let dir = temp_dir("e2e-basic");
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client(1);
    upsert(&mut c, 7, 1000, 5, 0);
    let first = c.call(place(100, 7, 2, false)).unwrap();
    let paid = placed(&first);
    assert!(
        first.seq > 0,
        "a command's answer carries its journal sequence"
    );
    let wrong = c
        .call(Operation::Command(Command::ConfirmPayment {
            order: paid,
            amount: 1999,
            payment_ref: 9,
        }))
        .unwrap();
    assert_eq!(
        wrong.reply,
        Reply::Rejected {
            code: Code::WrongAmount,
            subject: 2000
        }
    );
    let ok = c
        .call(Operation::Command(Command::ConfirmPayment {
            order: paid,
            amount: 2000,
            payment_ref: 9,
        }))
        .unwrap();
    assert_eq!(
        ok.reply,
        Reply::Outcome(Outcome::PaymentConfirmed { order: paid })
    );
    let cancelled = placed(&c.call(place(101, 7, 1, false)).unwrap());
    let answer = c
        .call(Operation::Command(Command::CancelOrder {
            order: cancelled,
        }))
        .unwrap();
    assert_eq!(
        answer.reply,
        Reply::Outcome(Outcome::OrderCancelled { order: cancelled })
    );
    let s = stock(&mut c, 7);
    assert_eq!((s.available, s.reserved, s.sold, s.stocked), (3, 0, 2, 5));
    let view = order(&mut c, paid);
    assert_eq!(
        (view.state, view.total, view.user),
        (OrderState::Paid, 2000, UserId(100))
    );
    assert_eq!(order(&mut c, cancelled).state, OrderState::Cancelled);
    let none = c
        .call(Operation::Query(Query::Order {
            order: OrderId(999),
        }))
        .unwrap();
    assert_eq!(none.reply.code(), Code::UnknownOrder);
}

#[test]
fn unpaid_orders_expire_by_deadline_without_traffic() {
    let dir = temp_dir("e2e-expiry");
    let server = ServerProcess::start(
        &dir,
        &["engine.payment_window_ms=300", "gateway.tick_ms=20"],
    );
    let mut c = server.client(2);
    upsert(&mut c, 1, 500, 1, 0);
    let id = placed(&c.call(place(5, 1, 1, false)).unwrap());
    // No request from anyone: the sequencer's Ticks carry time past the deadline.
    let push = c
        .wait_push(Duration::from_secs(10))
        .unwrap()
        .expect("an expiry push");
    assert_eq!(
        push.event,
        Event::OrderExpired {
            order: id,
            client: ClientId(2),
            user: UserId(5)
        }
    );
    assert_eq!(order(&mut c, id).state, OrderState::Expired);
    assert_eq!(stock(&mut c, 1).available, 1);
}

#[test]
fn a_released_unit_is_pushed_to_the_waiting_buyer() {
    let dir = temp_dir("e2e-waitlist");
    let server = ServerProcess::start(&dir, &[]);
    let mut shop = server.client(10);
    let mut waiting = server.client(11);
    upsert(&mut shop, 3, 700, 1, 0);
    let first = placed(&shop.call(place(1, 3, 1, false)).unwrap());
    waiting.set_next_request_id(500);
    let joined = waiting.call(place(2, 3, 1, true)).unwrap();
    assert_eq!(
        joined.reply,
        Reply::Outcome(Outcome::WaitlistJoined {
            sku: SkuId(3),
            position: 1,
            units_ahead: 0
        })
    );
    let position = waiting
        .call(Operation::Query(Query::WaitlistPosition {
            sku: SkuId(3),
            user: UserId(2),
        }))
        .unwrap();
    assert!(
        matches!(position.reply, Reply::Answer(Answer::WaitlistPosition(ref w)) if w.position == 1),
        "{position:?}"
    );
    shop.call(Operation::Command(Command::CancelOrder { order: first }))
        .unwrap();
    let push = waiting
        .wait_push(Duration::from_secs(10))
        .unwrap()
        .expect("the hand-off is pushed");
    let Event::WaitlistOrderCreated {
        client,
        request,
        user,
        order: handed,
        total,
        ..
    } = push.event
    else {
        panic!("{push:?}");
    };
    assert_eq!(
        (client, request, user, total),
        (ClientId(11), RequestId(500), UserId(2), 700)
    );
    let view = order(&mut shop, handed);
    assert_eq!(
        (view.state, view.user),
        (OrderState::PendingPayment, UserId(2))
    );
    assert!(
        shop.take_pushes().is_empty(),
        "the shop was not the one waiting"
    );
}

#[test]
fn a_statement_is_reconciled_and_discrepancies_pushed_to_its_sender() {
    let dir = temp_dir("e2e-reconcile");
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client(20);
    upsert(&mut c, 9, 300, 10, 0);
    let paid = placed(&c.call(place(1, 9, 1, false)).unwrap());
    let unconfirmed = placed(&c.call(place(2, 9, 1, false)).unwrap());
    c.call(Operation::Command(Command::ConfirmPayment {
        order: paid,
        amount: 300,
        payment_ref: 41,
    }))
    .unwrap();
    let statement = Command::StatementBatch {
        entries: vec![
            StatementEntry {
                payment_ref: 41,
                order: paid,
                amount: 300,
                status: StatementStatus::Captured,
            },
            StatementEntry {
                payment_ref: 42,
                order: unconfirmed,
                amount: 300,
                status: StatementStatus::Captured,
            },
        ],
        closes_through_ns: None,
    };
    let applied = c.call(Operation::Command(statement)).unwrap();
    assert!(
        matches!(
            applied.reply,
            Reply::Outcome(Outcome::StatementApplied {
                entries: 2,
                discrepancies: 1,
                ..
            })
        ),
        "{applied:?}"
    );
    let push = c
        .wait_push(Duration::from_secs(5))
        .unwrap()
        .expect("a discrepancy");
    let Event::Discrepancy(d) = push.event else {
        panic!("{push:?}")
    };
    assert_eq!(
        (d.kind, d.order, d.captured),
        (DiscrepancyKind::SettledFromStatement, unconfirmed, 300)
    );
    assert_eq!(push.seq, applied.seq);
    assert_eq!(order(&mut c, unconfirmed).state, OrderState::Paid);
}

#[test]
fn a_retried_place_order_gets_the_original_answer() {
    let dir = temp_dir("e2e-retry");
    let server = ServerProcess::start(&dir, &[]);
    let mut first = server.client(30);
    upsert(&mut first, 4, 250, 10, 0);
    let original = first
        .call_with_id(RequestId(77), place(8, 4, 3, false))
        .unwrap();
    drop(first);
    // A new connection as the same client, the same request id: as after a timeout.
    let mut again = server.client(30);
    let retried = again
        .call_with_id(RequestId(77), place(8, 4, 3, false))
        .unwrap();
    assert_eq!(retried.reply, original.reply);
    let s = stock(&mut again, 4);
    assert_eq!(
        (s.available, s.reserved),
        (7, 3),
        "reserved once, not twice"
    );
}

#[test]
fn bad_requests_are_refused_one_by_one() {
    let dir = temp_dir("e2e-refusals");
    let server = ServerProcess::start(&dir, &[]);
    let mut c = server.client(40);
    upsert(&mut c, 1, 100, 10, 0);
    let mut frame = Vec::new();
    let mut builder = engine::wire::RequestsFrameBuilder::begin(&mut frame);
    builder.push(RequestId(101), &place(1, 1, 1, false), &mut frame);
    let tick_at = frame.len();
    builder.push(RequestId(102), &place(1, 1, 1, false), &mut frame);
    builder.push(RequestId(103), &place(2, 1, 1, false), &mut frame);
    builder.finish(&mut frame);
    frame[tick_at + 8] = 9; // op 4 → 9: Tick, which only the sequencer may send
    c.send_raw(&frame).unwrap();
    let mut codes: Vec<(u64, Code)> = (0..3)
        .map(|_| c.recv_answer().unwrap())
        .map(|a| (a.request.0, a.reply.code()))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            (101, Code::OrderPlaced),
            (102, Code::UnknownOp),
            (103, Code::OrderPlaced)
        ]
    );
}
