//! `reconcile`: the payment provider's statements against a populated state. Before the clock
//! starts, orders are placed and paid; then every request is one statement batch of
//! `ENTRIES_PER_BATCH` entries walking through the paid orders, most matching, a few with the
//! wrong amount or declined (each of those raises a discrepancy pushed to the sender).

use std::sync::Arc;

use engine::wire::{Operation, Reply, WirePush};
use engine::{
    Command, Money, OrderId, OrderLine, Outcome, RequestId, SkuId, SkuSpec, StatementEntry,
    StatementStatus, UserId,
};

use super::{Kind, Setup, Traffic, Workload};
use crate::rng::Rng;

const ENTRIES_PER_BATCH: usize = 32;
const SKUS: u64 = 64;

pub struct Reconcile {
    sku_base: u64,
    orders: u64,
    /// (order, amount, payment_ref) of every order paid during `prepare`.
    paid: Arc<Vec<(OrderId, Money, u64)>>,
}

impl Reconcile {
    pub fn sized(expected_requests: u64, sku_base: u64) -> Reconcile {
        Reconcile {
            sku_base,
            orders: (expected_requests * 2).clamp(2_000, 200_000),
            paid: Arc::default(),
        }
    }
}

impl Workload for Reconcile {
    fn name(&self) -> &'static str {
        "reconcile"
    }

    fn catalog(&self) -> Vec<SkuSpec> {
        (1..=SKUS)
            .map(|i| SkuSpec {
                sku: SkuId(self.sku_base + i),
                price: 1_000 + i * 10,
                stock: self.orders,
                per_user_limit: 0,
                sale_window: None,
            })
            .collect()
    }

    fn prepare(&mut self, setup: &mut dyn Setup) -> anyhow::Result<()> {
        let mut paid = Vec::with_capacity(self.orders as usize);
        let mut first = 0;
        while first < self.orders {
            let n = (self.orders - first).min(1024);
            let places: Vec<_> = (first..first + n)
                .map(|i| {
                    Operation::Command(Command::PlaceOrder {
                        user: UserId(i + 1),
                        lines: vec![OrderLine {
                            sku: SkuId(self.sku_base + 1 + i % SKUS),
                            qty: 1,
                        }],
                        join_waitlist: false,
                    })
                })
                .collect();
            let mut pays = Vec::with_capacity(places.len());
            for reply in setup.call_all(&places)? {
                let Reply::Outcome(Outcome::OrderPlaced { order, total, .. }) = reply else {
                    anyhow::bail!("placing the orders to reconcile: {reply:?}");
                };
                pays.push((order, total, 7_000_000 + order.0));
            }
            let ops: Vec<_> = pays
                .iter()
                .map(|&(order, amount, payment_ref)| {
                    Operation::Command(Command::ConfirmPayment {
                        order,
                        amount,
                        payment_ref,
                    })
                })
                .collect();
            for reply in setup.call_all(&ops)? {
                anyhow::ensure!(
                    matches!(reply, Reply::Outcome(Outcome::PaymentConfirmed { .. })),
                    "paying the orders to reconcile: {reply:?}"
                );
            }
            paid.extend(pays);
            first += n;
        }
        self.paid = Arc::new(paid);
        Ok(())
    }

    fn traffic(&self, connection: u64, seed: u64) -> Box<dyn Traffic> {
        let start = if self.paid.is_empty() {
            0
        } else {
            (connection as usize * 7919) % self.paid.len()
        };
        Box::new(Statements {
            paid: self.paid.clone(),
            cursor: start,
            rng: Rng::new(seed ^ (connection + 1).wrapping_mul(0x94d0_49bb_1331_11eb)),
        })
    }
}

struct Statements {
    paid: Arc<Vec<(OrderId, Money, u64)>>,
    cursor: usize,
    rng: Rng,
}

impl Traffic for Statements {
    fn next(&mut self, _at_ns: u64) -> Operation {
        let mut entries = Vec::with_capacity(ENTRIES_PER_BATCH);
        for _ in 0..ENTRIES_PER_BATCH.min(self.paid.len()) {
            let (order, amount, payment_ref) = self.paid[self.cursor];
            self.cursor = (self.cursor + 1) % self.paid.len();
            let u = self.rng.unit();
            let (amount, status) = if u < 0.02 {
                (amount + 1, StatementStatus::Captured)
            } else if u < 0.03 {
                (amount, StatementStatus::Declined)
            } else {
                (amount, StatementStatus::Captured)
            };
            entries.push(StatementEntry {
                payment_ref,
                order,
                amount,
                status,
            });
        }
        Operation::Command(Command::StatementBatch {
            entries,
            closes_through_ns: None,
        })
    }

    fn on_reply(&mut self, _: RequestId, _: u64, _: Kind, _: &Reply) {}

    fn on_push(&mut self, _: u64, _: &WirePush) {}
}
