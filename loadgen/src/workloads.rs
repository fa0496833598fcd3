//! The workloads, as `Scenario`s: a flash sale on one hot SKU, and a broad shop-wide mix.
//! Their knobs are plain fields so a bench, a test or the CLI can scale them.

use engine::{OrderLine, SaleWindow, SkuId, SkuSpec, TimestampNs, UserId};

use crate::rng::Rng;
use crate::simulation::{Fate, Scenario};
use crate::zipf::Zipf;

const MS: TimestampNs = 1_000_000;

/// How buyers who got an order behave.
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    pub pay: f64,
    pub fail: f64,
    pub cancel: f64,
    /// The rest abandon their order and it expires.
    pub decide_within_ns: TimestampNs,
}

impl Behaviour {
    fn draw(&self, rng: &mut Rng) -> (Fate, TimestampNs) {
        let u = rng.unit();
        let fate = if u < self.pay {
            Fate::Pay
        } else if u < self.pay + self.fail {
            Fate::Fail
        } else if u < self.pay + self.fail + self.cancel {
            Fate::Cancel
        } else {
            Fate::Abandon
        };
        (fate, rng.between(1, self.decide_within_ns))
    }
}

/// Thousands of buyers, one hot SKU with little stock, a per-user limit, a sale window,
/// waitlist joins, payments for most orders, some failures, cancels and abandoned carts.
#[derive(Clone, Debug)]
pub struct FlashSale {
    pub hot_sku: SkuId,
    pub price: u64,
    pub stock: u64,
    pub per_user_limit: u32,
    pub buyers: u64,
    /// Buyers arrive over about this long.
    pub arrivals_over_ns: TimestampNs,
    /// Share of buyers who ask to wait when sold out.
    pub waitlist_share: f64,
    pub behaviour: Behaviour,
}

impl Default for FlashSale {
    fn default() -> Self {
        FlashSale {
            hot_sku: SkuId(1001),
            price: 49_900,
            stock: 500,
            per_user_limit: 2,
            buyers: 5_000,
            arrivals_over_ns: 2_000 * MS,
            waitlist_share: 0.6,
            behaviour: Behaviour {
                pay: 0.7,
                fail: 0.08,
                cancel: 0.07,
                decide_within_ns: 3_000 * MS,
            },
        }
    }
}

impl Scenario for FlashSale {
    fn catalog(&self) -> Vec<SkuSpec> {
        vec![SkuSpec {
            sku: self.hot_sku,
            price: self.price,
            stock: self.stock,
            per_user_limit: self.per_user_limit,
            sale_window: Some(SaleWindow {
                start_ns: 0,
                end_ns: TimestampNs::MAX,
            }),
        }]
    }

    fn buyers(&self) -> u64 {
        self.buyers
    }

    fn mean_arrival_gap_ns(&self) -> f64 {
        self.arrivals_over_ns as f64 / self.buyers as f64
    }

    fn order(&self, rng: &mut Rng, _user: UserId) -> (Vec<OrderLine>, bool) {
        let qty = rng.between(1, u64::from(self.per_user_limit.max(1))) as u32;
        let line = OrderLine {
            sku: self.hot_sku,
            qty,
        };
        (vec![line], rng.chance(self.waitlist_share))
    }

    fn fate(&self, rng: &mut Rng) -> (Fate, TimestampNs) {
        self.behaviour.draw(rng)
    }
}

/// A shop-wide day: Zipf-popular SKUs over a large catalog with ample stock, multi-line
/// orders, payments, cancels and expiries.
#[derive(Clone, Debug)]
pub struct Mixed {
    pub skus: u64,
    pub zipf_exponent: f64,
    pub stock_per_sku: u64,
    pub buyers: u64,
    pub arrivals_over_ns: TimestampNs,
    pub lines_max: u64,
    pub behaviour: Behaviour,
    /// SKU ids run from `sku_base + 1` to `sku_base + skus`.
    pub sku_base: u64,
    zipf: Zipf,
}

impl Mixed {
    pub fn new(skus: u64, buyers: u64) -> Mixed {
        Mixed {
            skus,
            zipf_exponent: 0.99,
            stock_per_sku: 1_000,
            buyers,
            arrivals_over_ns: 10_000 * MS,
            lines_max: 3,
            behaviour: Behaviour {
                pay: 0.75,
                fail: 0.05,
                cancel: 0.1,
                decide_within_ns: 5_000 * MS,
            },
            sku_base: 0,
            zipf: Zipf::new(skus as usize, 0.99),
        }
    }
}

impl Scenario for Mixed {
    fn catalog(&self) -> Vec<SkuSpec> {
        (1..=self.skus)
            .map(|i| SkuSpec {
                sku: SkuId(self.sku_base + i),
                price: 100 + (i * 37) % 10_000,
                stock: self.stock_per_sku,
                per_user_limit: 0,
                sale_window: None,
            })
            .collect()
    }

    fn buyers(&self) -> u64 {
        self.buyers
    }

    fn mean_arrival_gap_ns(&self) -> f64 {
        self.arrivals_over_ns as f64 / self.buyers as f64
    }

    fn order(&self, rng: &mut Rng, _user: UserId) -> (Vec<OrderLine>, bool) {
        let count = rng.between(1, self.lines_max);
        let mut lines: Vec<OrderLine> = Vec::with_capacity(count as usize);
        while (lines.len() as u64) < count {
            let sku = SkuId(self.sku_base + self.zipf.sample(rng));
            if lines.iter().all(|l| l.sku != sku) {
                lines.push(OrderLine {
                    sku,
                    qty: rng.between(1, 3) as u32,
                });
            }
        }
        (lines, false)
    }

    fn fate(&self, rng: &mut Rng) -> (Fate, TimestampNs) {
        self.behaviour.draw(rng)
    }
}
