//! What the feed says about each kind of command (docs/FEED.md): derived from the engine's
//! output and state just after the command, complete enough that a consumer never asks back,
//! and nothing for a refused command.

use engine::feed::{derive, FeedEvent};
use engine::{
    ClientId, Code, Command, DiscrepancyKind, Engine, EngineConfig, OrderId, OrderLine, OrderState,
    Output, Request, RequestId, SkuId, SkuSpec, StatementEntry, StatementStatus, UserId,
};

const SKU: SkuId = SkuId(7);

struct Sim {
    engine: Engine,
    out: Output,
    now_ns: u64,
    next_request: u64,
}

impl Sim {
    fn new(retire_after_ns: u64) -> Sim {
        Sim {
            engine: Engine::new(EngineConfig {
                payment_window_ns: 1_000,
                retire_after_ns,
                clients_max: 8,
                orders_max: 100,
                skus_max: 4,
                ..EngineConfig::default()
            }),
            out: Output::default(),
            now_ns: 10,
            next_request: 0,
        }
    }

    /// Apply `command` as client 3; the feed's events for it.
    fn feed(&mut self, command: Command) -> Vec<FeedEvent> {
        self.next_request += 1;
        let request = Request {
            client: ClientId(3),
            request: RequestId(self.next_request),
            command,
        };
        self.engine.apply(self.now_ns, &request, &mut self.out);
        let mut events = Vec::new();
        derive(&self.engine, &request, &self.out, &mut events);
        events
    }
}

fn place(user: u64, qty: u32, waitlist: bool) -> Command {
    Command::PlaceOrder {
        user: UserId(user),
        lines: vec![OrderLine { sku: SKU, qty }],
        join_waitlist: waitlist,
    }
}

fn one(events: Vec<FeedEvent>) -> FeedEvent {
    assert_eq!(events.len(), 1, "{events:?}");
    events.into_iter().next().unwrap()
}

#[test]
fn each_command_says_what_changed_in_full() {
    let mut sim = Sim::new(u64::MAX);
    let upserted = one(sim.feed(Command::UpsertSku(SkuSpec {
        sku: SKU,
        price: 250,
        stock: 2,
        per_user_limit: 0,
        sale_window: None,
    })));
    let FeedEvent::Sku { code, sku } = upserted else {
        panic!("{upserted:?}")
    };
    assert_eq!(code, Code::SkuUpserted);
    assert_eq!(
        (sku.price, sku.stocked, sku.available, sku.listed),
        (250, 2, 2, true)
    );

    let placed = one(sim.feed(place(41, 2, false)));
    let FeedEvent::Order { code, order } = &placed else {
        panic!("{placed:?}")
    };
    assert_eq!(*code, Code::OrderPlaced);
    assert_eq!(order.state, OrderState::PendingPayment);
    assert_eq!(
        (order.user, order.total, order.created_ns),
        (UserId(41), 500, 10)
    );
    assert_eq!(order.lines, vec![OrderLine { sku: SKU, qty: 2 }]);
    assert_eq!(order.deadline_ns, 10 + 1_000);
    assert_eq!((order.client, order.request), (ClientId(3), RequestId(2)));
    let id = order.id;

    // A retry of the placing request (same client, same request id): its original answer,
    // and nothing new in the feed.
    sim.next_request -= 1;
    assert!(
        sim.feed(place(41, 2, false)).is_empty(),
        "a retry is not a new order"
    );
    assert!(sim.out.repeated);

    // Refused: nothing.
    assert!(sim.feed(place(42, 1, false)).is_empty(), "out of stock");

    let joined = one(sim.feed(place(43, 1, true)));
    assert_eq!(
        joined,
        FeedEvent::WaitlistJoined {
            client: ClientId(3),
            request: RequestId(4),
            user: UserId(43),
            sku: SKU,
            qty: 1,
            position: 1,
            units_ahead: 0,
        }
    );

    // A restock hands the unit to the waiting buyer: the SKU, then the hand-off.
    let restock = sim.feed(Command::Restock { sku: SKU, units: 1 });
    assert_eq!(restock.len(), 2, "{restock:?}");
    assert!(matches!(
        restock[0],
        FeedEvent::Sku {
            code: Code::SkuRestocked,
            ..
        }
    ));
    let FeedEvent::Order { code, order } = &restock[1] else {
        panic!("{restock:?}")
    };
    assert_eq!(*code, Code::WaitlistOrderCreated);
    assert_eq!(
        (order.user, order.request, order.total),
        (UserId(43), RequestId(4), 250)
    );
    let handed = order.id;

    sim.now_ns = 500;
    let paid = one(sim.feed(Command::ConfirmPayment {
        order: id,
        amount: 500,
        payment_ref: 9_001,
    }));
    let FeedEvent::Order { code, order } = &paid else {
        panic!("{paid:?}")
    };
    assert_eq!(*code, Code::PaymentConfirmed);
    assert_eq!(order.state, OrderState::Paid);
    assert_eq!(
        (order.paid_ns, order.payment_ref, order.closed_ns),
        (500, 9_001, 500)
    );

    // Its payment window passes: a Tick expires it.
    sim.now_ns = 5_000;
    let expired = one(sim.feed(Command::Tick));
    let FeedEvent::Order { code, order } = &expired else {
        panic!("{expired:?}")
    };
    assert_eq!(
        (*code, order.id, order.state),
        (Code::OrderExpired, handed, OrderState::Expired)
    );

    // A statement that captured more than the order's total.
    let statement = one(sim.feed(Command::StatementBatch {
        entries: vec![StatementEntry {
            payment_ref: 9_001,
            order: id,
            amount: 400,
            status: StatementStatus::Captured,
        }],
        closes_through_ns: None,
    }));
    let FeedEvent::Discrepancy(d) = statement else {
        panic!("{statement:?}")
    };
    assert_eq!(d.kind, DiscrepancyKind::AmountMismatch);
    assert_eq!((d.order, d.expected, d.captured), (id, 500, 400));

    let delisted = one(sim.feed(Command::Delist { sku: SKU }));
    assert!(matches!(delisted, FeedEvent::Sku { code: Code::SkuDelisted, sku } if !sku.listed));
}

#[test]
fn a_closed_order_retiring_says_so_with_its_record() {
    let mut sim = Sim::new(100);
    sim.feed(Command::UpsertSku(SkuSpec {
        sku: SKU,
        price: 10,
        stock: 5,
        per_user_limit: 0,
        sale_window: None,
    }));
    sim.feed(place(1, 1, false));
    let cancelled = one(sim.feed(Command::CancelOrder { order: OrderId(1) }));
    assert!(matches!(
        cancelled,
        FeedEvent::Order {
            code: Code::OrderCancelled,
            ..
        }
    ));
    sim.now_ns += 1_000;
    let retired = one(sim.feed(Command::Tick));
    let FeedEvent::OrderRetired(r) = retired else {
        panic!("{retired:?}")
    };
    assert_eq!(
        (r.id, r.state, r.user, r.total),
        (OrderId(1), OrderState::Cancelled, UserId(1), 10)
    );
}
