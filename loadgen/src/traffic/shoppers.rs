//! Shoppers against a live server: buyers arrive on the schedule and order (`Scenario::order`,
//! the same definitions the simulation uses), some look at stock or at their order, and each
//! order they get (placed, or handed to them from the waitlist) meets its fate later: paid,
//! declined, cancelled, or left to expire at the server's deadline.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use engine::wire::{Operation, Reply, WirePush};
use engine::{Command, Event, Money, OrderId, Outcome, Query, RequestId, SkuId, SkuSpec, UserId};

use super::{Kind, Traffic, Workload};
use crate::rng::Rng;
use crate::simulation::{Fate, Scenario};
use crate::workloads::{FlashSale, Mixed};

/// `flash-sale`: one hot SKU with little stock, a crowd that comes back (so per-user limits
/// bite), waitlist joins once it is sold out, and a few stock checks.
pub struct FlashSaleLoad {
    sale: Arc<FlashSale>,
    crowd: u64,
}

impl FlashSaleLoad {
    /// Stock for about a tenth of the buyers; a crowd as large as the requests, so about a
    /// third of the buyers come back for more (and some meet the per-user limit).
    pub fn sized(expected_requests: u64, sku_base: u64) -> FlashSaleLoad {
        let sale = FlashSale {
            hot_sku: SkuId(sku_base + 1),
            stock: (expected_requests / 10).max(500),
            ..FlashSale::default()
        };
        FlashSaleLoad {
            sale: Arc::new(sale),
            crowd: expected_requests.max(1_000),
        }
    }
}

impl Workload for FlashSaleLoad {
    fn name(&self) -> &'static str {
        "flash-sale"
    }

    fn catalog(&self) -> Vec<SkuSpec> {
        self.sale.catalog()
    }

    fn traffic(&self, connection: u64, seed: u64) -> Box<dyn Traffic> {
        Box::new(Shoppers::new(
            self.sale.clone(),
            connection,
            seed,
            self.crowd,
            0.05,
        ))
    }
}

/// `mixed`: a shop-wide day, Zipf over many SKUs, multi-line orders, a tenth queries.
pub struct MixedLoad {
    mix: Arc<Mixed>,
}

impl MixedLoad {
    pub fn sized(expected_requests: u64, sku_base: u64) -> MixedLoad {
        let mut mix = Mixed::new(10_000, expected_requests.max(1_000));
        mix.sku_base = sku_base;
        // Enough stock that the popular SKUs last the run.
        mix.stock_per_sku = (expected_requests / 10).max(1_000);
        MixedLoad { mix: Arc::new(mix) }
    }
}

impl Workload for MixedLoad {
    fn name(&self) -> &'static str {
        "mixed"
    }

    fn catalog(&self) -> Vec<SkuSpec> {
        self.mix.catalog()
    }

    fn traffic(&self, connection: u64, seed: u64) -> Box<dyn Traffic> {
        let crowd = self.mix.buyers;
        Box::new(Shoppers::new(
            self.mix.clone(),
            connection,
            seed,
            crowd,
            0.10,
        ))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FollowUp {
    Pay(OrderId, Money),
    Fail(OrderId),
    Cancel(OrderId),
}

/// Orders this many recent ones are what buyers look up.
const KNOWN_ORDERS: usize = 1024;
/// A buyer acts on an order (pays, cancels, looks it up) at the earliest this long after
/// placing it. Besides being human, it keeps the stream a function of the seed: answers
/// arrive well within it, so what a buyer knows never depends on how fast they did.
const THINK_MIN_NS: u64 = 100_000_000;

struct Shoppers<S: Scenario> {
    scenario: Arc<S>,
    catalog: Vec<SkuId>,
    seed: u64,
    rng: Rng,
    crowd: u64,
    query_share: f64,
    /// Follow-ups by due time (ties by insertion).
    due: BinaryHeap<Reverse<(u64, u64, FollowUp)>>,
    scheduled: u64,
    /// Orders the buyers know of, and (oldest first) those they will know of from a time on.
    known: Vec<OrderId>,
    learning: VecDeque<(u64, OrderId)>,
}

impl<S: Scenario> Shoppers<S> {
    fn new(scenario: Arc<S>, connection: u64, seed: u64, crowd: u64, query_share: f64) -> Self {
        let catalog = scenario.catalog().iter().map(|s| s.sku).collect();
        let seed = seed ^ (connection + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Shoppers {
            scenario,
            catalog,
            seed,
            rng: Rng::new(seed),
            crowd,
            query_share,
            due: BinaryHeap::new(),
            scheduled: 0,
            known: Vec::new(),
            learning: VecDeque::new(),
        }
    }

    /// Draw what the buyer does with `order`, from a generator keyed by `key` alone.
    fn decide(&mut self, key: u64, from_ns: u64, order: OrderId, total: Money) {
        let mut rng = Rng::new(self.seed ^ key.wrapping_mul(0xbf58_476d_1ce4_e5b9));
        let (fate, after_ns) = self.scenario.fate(&mut rng);
        let follow_up = match fate {
            Fate::Pay => FollowUp::Pay(order, total),
            Fate::Fail => FollowUp::Fail(order),
            Fate::Cancel => FollowUp::Cancel(order),
            Fate::Abandon => return,
        };
        self.scheduled += 1;
        let at = from_ns + THINK_MIN_NS + after_ns;
        self.due.push(Reverse((at, self.scheduled, follow_up)));
    }

    /// Buyers know of `order` from `from_ns + THINK_MIN_NS` on.
    fn learn(&mut self, from_ns: u64, order: OrderId) {
        self.learning.push_back((from_ns + THINK_MIN_NS, order));
    }

    fn catch_up(&mut self, now_ns: u64) {
        while let Some(&(at, order)) = self.learning.front() {
            if at > now_ns {
                break;
            }
            self.learning.pop_front();
            if self.known.len() < KNOWN_ORDERS {
                self.known.push(order);
            } else {
                let slot = (order.0 as usize) % KNOWN_ORDERS;
                self.known[slot] = order;
            }
        }
    }

    fn query(&mut self) -> Operation {
        if !self.known.is_empty() && self.rng.chance(0.5) {
            let order = self.known[self.rng.below(self.known.len() as u64) as usize];
            return Operation::Query(Query::Order { order });
        }
        let sku = self.catalog[self.rng.below(self.catalog.len() as u64) as usize];
        Operation::Query(Query::Stock { sku })
    }
}

impl<S: Scenario + Send + Sync> Traffic for Shoppers<S> {
    fn next(&mut self, at_ns: u64) -> Operation {
        self.catch_up(at_ns);
        if let Some(Reverse((due_ns, _, _))) = self.due.peek() {
            if *due_ns <= at_ns {
                let Reverse((_, _, follow_up)) = self.due.pop().expect("peeked");
                return Operation::Command(match follow_up {
                    FollowUp::Pay(order, amount) => Command::ConfirmPayment {
                        order,
                        amount,
                        payment_ref: order.0,
                    },
                    FollowUp::Fail(order) => Command::FailPayment { order },
                    FollowUp::Cancel(order) => Command::CancelOrder { order },
                });
            }
        }
        if self.rng.chance(self.query_share) {
            return self.query();
        }
        let user = UserId(self.rng.between(1, self.crowd));
        let (lines, join_waitlist) = self.scenario.order(&mut self.rng, user);
        Operation::Command(Command::PlaceOrder {
            user,
            lines,
            join_waitlist,
        })
    }

    fn on_reply(&mut self, request: RequestId, at_ns: u64, _kind: Kind, reply: &Reply) {
        if let Reply::Outcome(Outcome::OrderPlaced { order, total, .. }) = *reply {
            self.learn(at_ns, order);
            self.decide(request.0, at_ns, order, total);
        }
    }

    fn on_push(&mut self, now_ns: u64, push: &WirePush) {
        if let Event::WaitlistOrderCreated {
            order,
            total,
            request,
            ..
        } = push.event
        {
            self.learn(now_ns, order);
            self.decide(request.0 ^ (1 << 63), now_ns, order, total);
        }
    }
}
