//! The order-history database's side of `surge sink postgres`: the schema
//! (deploy/postgres/order-history.sql), and one batch of feed events applied as one
//! transaction together with the sink's position. A batch keeps each order's latest image
//! and each SKU's (a placed-then-paid order is one upsert), so a transaction is a handful of
//! array statements whatever its size.

use std::collections::BTreeMap;

use anyhow::Context;
use engine::feed::{FeedEvent, FeedItem, OrderImage, SkuImage};
use engine::Code;
use postgres::types::ToSql;

pub const SCHEMA: &str = include_str!("../../deploy/postgres/order-history.sql");

/// Events gathered for one transaction.
#[derive(Default)]
pub struct Batch {
    orders: BTreeMap<u64, (u64, OrderImage, bool)>,
    retired: BTreeMap<u64, (u64, &'static str)>,
    skus: BTreeMap<u64, (u64, SkuImage)>,
    discrepancies: Vec<(u64, u32, &'static str, [u64; 5])>,
    /// Events in the batch, and the position it moves the sink to.
    pub events: u64,
    pub through: u64,
    /// Which event of `last_seq` the next one is (discrepancy keys).
    last_seq: u64,
    nth: u32,
}

impl Batch {
    pub fn add(&mut self, item: &FeedItem) {
        self.events += 1;
        if item.seq != self.last_seq {
            self.last_seq = item.seq;
            self.nth = 0;
        }
        let nth = self.nth;
        self.nth += 1;
        match &item.event {
            FeedEvent::Order { code, order } => {
                let mut order = order.clone();
                let held = self.orders.get(&order.id.0);
                let from_waitlist =
                    *code == Code::WaitlistOrderCreated || held.is_some_and(|o| o.2);
                // An order that retired within the command that closed it comes from its
                // retired record (no deadline, first line only): keep what the batch has.
                if let Some((_, before, _)) = held.filter(|_| order.deadline_ns == 0) {
                    order.deadline_ns = before.deadline_ns;
                    order.lines = before.lines.clone();
                }
                self.orders
                    .insert(order.id.0, (item.seq, order, from_waitlist));
            }
            FeedEvent::OrderRetired(r) => {
                self.retired.insert(r.id.0, (item.seq, r.state.name()));
            }
            FeedEvent::Sku { sku, .. } => {
                self.skus.insert(sku.id.0, (item.seq, *sku));
            }
            FeedEvent::Discrepancy(d) => self.discrepancies.push((
                item.seq,
                nth,
                item.event.code().name(),
                [d.order.0, d.payment_ref, d.expected, d.captured, item.at_ns],
            )),
            // Waitlists are the engine's business until they become orders.
            FeedEvent::WaitlistJoined { .. } | FeedEvent::WaitlistDropped { .. } => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Rows this batch writes (orders, lines, SKUs, discrepancies, retirements).
    pub fn rows(&self) -> u64 {
        let lines: usize = self.orders.values().map(|o| o.1.lines.len()).sum();
        (self.orders.len()
            + lines
            + self.retired.len()
            + self.skus.len()
            + self.discrepancies.len()) as u64
    }

    /// Apply the batch and move the position to `through`, in one transaction.
    pub fn commit(&self, db: &mut postgres::Client) -> anyhow::Result<()> {
        let mut tx = db.transaction()?;
        self.write_orders(&mut tx)?;
        if !self.retired.is_empty() {
            let ids = big(self.retired.keys().copied())?;
            let states: Vec<&str> = self.retired.values().map(|r| r.1).collect();
            let seqs = big(self.retired.values().map(|r| r.0))?;
            tx.execute(
                "UPDATE surge_orders o SET retired = true, state = r.state, seq = r.seq \
                 FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS r(order_id, state, seq) \
                 WHERE o.order_id = r.order_id",
                &[&ids, &states, &seqs],
            )?;
        }
        self.write_skus(&mut tx)?;
        if !self.discrepancies.is_empty() {
            let d = &self.discrepancies;
            let col = |i: usize| big(d.iter().map(|x| x.3[i]));
            let seqs = big(d.iter().map(|x| x.0))?;
            let ns: Vec<i32> = d.iter().map(|x| x.1 as i32).collect();
            let kinds: Vec<&str> = d.iter().map(|x| x.2).collect();
            tx.execute(
                "INSERT INTO surge_discrepancies \
                 (seq, n, kind, order_id, payment_ref, expected, captured, at_ns) \
                 SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[], \
                 $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])",
                &[
                    &seqs,
                    &ns,
                    &kinds,
                    &col(0)?,
                    &col(1)?,
                    &col(2)?,
                    &col(3)?,
                    &col(4)?,
                ],
            )?;
        }
        let moved = tx.execute(
            "UPDATE surge_sink_position SET through_seq = $1, events = events + $2, \
             updated_at = now() WHERE id = 1 AND through_seq < $1",
            &[&int(self.through)?, &int(self.events)?],
        )?;
        anyhow::ensure!(
            moved == 1,
            "the sink's position is not below {} any more: another sink writes these tables",
            self.through
        );
        tx.commit()?;
        Ok(())
    }

    fn write_orders(&self, tx: &mut postgres::Transaction<'_>) -> anyhow::Result<()> {
        if self.orders.is_empty() {
            return Ok(());
        }
        let o: Vec<_> = self.orders.values().collect();
        let col = |f: fn(&OrderImage) -> u64| big(o.iter().map(|x| f(&x.1)));
        let states: Vec<&str> = o.iter().map(|x| x.1.state.name()).collect();
        let waitlisted: Vec<bool> = o.iter().map(|x| x.2).collect();
        let seqs = big(o.iter().map(|x| x.0))?;
        let columns: [&(dyn ToSql + Sync); 14] = [
            &col(|x| x.id.0)?,
            &col(|x| x.client.0)?,
            &col(|x| x.request.0)?,
            &col(|x| x.user.0)?,
            &states,
            &col(|x| x.total)?,
            &col(|x| x.created_ns)?,
            &col(|x| x.deadline_ns)?,
            &col(|x| x.paid_ns)?,
            &col(|x| x.payment_ref)?,
            &col(|x| x.closed_ns)?,
            &waitlisted,
            &seqs,
            &vec![false; o.len()],
        ];
        tx.execute(
            "INSERT INTO surge_orders (order_id, client_id, request_id, user_id, state, total, \
             created_ns, deadline_ns, paid_ns, payment_ref, closed_ns, from_waitlist, seq, retired) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], \
             $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], \
             $11::bigint[], $12::bool[], $13::bigint[], $14::bool[]) \
             ON CONFLICT (order_id) DO UPDATE SET state = EXCLUDED.state, \
             paid_ns = EXCLUDED.paid_ns, payment_ref = EXCLUDED.payment_ref, \
             closed_ns = EXCLUDED.closed_ns, seq = EXCLUDED.seq",
            &columns,
        )?;
        let lines: Vec<(u64, i32, u64, u32)> = o
            .iter()
            .flat_map(|x| {
                x.1.lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (x.1.id.0, i as i32, l.sku.0, l.qty))
            })
            .collect();
        tx.execute(
            "INSERT INTO surge_order_lines (order_id, line_no, sku, qty) \
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::int[]) \
             ON CONFLICT DO NOTHING",
            &[
                &big(lines.iter().map(|l| l.0))?,
                &lines.iter().map(|l| l.1).collect::<Vec<_>>(),
                &big(lines.iter().map(|l| l.2))?,
                &small(lines.iter().map(|l| l.3))?,
            ],
        )?;
        Ok(())
    }

    fn write_skus(&self, tx: &mut postgres::Transaction<'_>) -> anyhow::Result<()> {
        if self.skus.is_empty() {
            return Ok(());
        }
        let s: Vec<_> = self.skus.values().collect();
        let col = |f: fn(&SkuImage) -> u64| big(s.iter().map(|x| f(&x.1)));
        let limits = small(s.iter().map(|x| x.1.per_user_limit))?;
        let listed: Vec<bool> = s.iter().map(|x| x.1.listed).collect();
        tx.execute(
            "INSERT INTO surge_skus (sku, price, per_user_limit, listed, stocked, available, \
             reserved, sold, seq) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::int[], \
             $4::bool[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[]) \
             ON CONFLICT (sku) DO UPDATE SET price = EXCLUDED.price, \
             per_user_limit = EXCLUDED.per_user_limit, listed = EXCLUDED.listed, \
             stocked = EXCLUDED.stocked, available = EXCLUDED.available, \
             reserved = EXCLUDED.reserved, sold = EXCLUDED.sold, seq = EXCLUDED.seq",
            &[
                &col(|x| x.id.0)?,
                &col(|x| x.price)?,
                &limits,
                &listed,
                &col(|x| x.stocked)?,
                &col(|x| x.available)?,
                &col(|x| x.reserved)?,
                &col(|x| x.sold)?,
                &big(s.iter().map(|x| x.0))?,
            ],
        )?;
        Ok(())
    }
}

/// The sink's position: every event at or below it is in the tables.
pub fn position(db: &mut postgres::Client) -> anyhow::Result<(u64, u64)> {
    let row = db.query_one(
        "SELECT through_seq, events FROM surge_sink_position WHERE id = 1",
        &[],
    )?;
    let (through, events): (i64, i64) = (row.get(0), row.get(1));
    Ok((through as u64, events as u64))
}

fn int(v: u64) -> anyhow::Result<i64> {
    i64::try_from(v).with_context(|| format!("{v} does not fit a PostgreSQL bigint"))
}

fn big(values: impl Iterator<Item = u64>) -> anyhow::Result<Vec<i64>> {
    values.map(int).collect()
}

/// u32 fields into PostgreSQL's `integer`.
fn small(values: impl Iterator<Item = u32>) -> anyhow::Result<Vec<i32>> {
    values
        .map(|v| i32::try_from(v).with_context(|| format!("{v} does not fit a PostgreSQL integer")))
        .collect()
}
