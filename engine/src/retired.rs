//! Retired orders: what the engine keeps of an order once it has left the book. A fixed
//! record per order (its final state, who placed it, its total and first line, when it
//! closed, and what reconciliation needs: the payment reference and whether a statement has
//! seen it) in a ring of `orders_retired_max` records, oldest evicted first, with an id table
//! to find one. An order evicted from the ring is "beyond history": the engine knows only that
//! it existed (its id was assigned); its story is in the journal and the feed.
//!
//! Retirement order is closing order, and a paid order closes when it is paid, so the paid
//! records lie in payment order: a statement's close walks them from a cursor that only
//! moves forward.

use crate::id_table::IdTable;
use crate::ids::{ClientId, Money, OrderId, RequestId, SkuId, TimestampNs, UserId};
use crate::order::{Order, OrderState};
use crate::tracked::Tracked;

/// What is kept of a retired order. Fixed size, no heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RetiredOrder {
    pub id: OrderId,
    pub client: ClientId,
    pub request: RequestId,
    pub user: UserId,
    pub total: Money,
    pub created_ns: TimestampNs,
    /// When it was paid, cancelled, failed or expired (for a paid order: its payment time).
    pub closed_ns: TimestampNs,
    pub payment_ref: u64,
    pub first_sku: SkuId,
    pub first_qty: u32,
    pub line_count: u16,
    pub state: OrderState,
    pub reconciled: bool,
}

const _: () = assert!(std::mem::size_of::<RetiredOrder>() == 80);

impl RetiredOrder {
    pub fn of(order: &Order) -> RetiredOrder {
        debug_assert!(!order.is_open(), "an open order never retires");
        let lines = order.lines.as_slice();
        RetiredOrder {
            id: order.id,
            client: order.client,
            request: order.request,
            user: order.user,
            total: order.total,
            created_ns: order.created_ns,
            closed_ns: order.closed_ns,
            payment_ref: order.payment_ref,
            first_sku: lines[0].sku,
            first_qty: lines[0].qty,
            line_count: lines.len() as u16,
            state: order.state,
            reconciled: order.reconciled,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RetiredOrders {
    /// The ring; positions past `records.len()` are reserved and not yet used.
    records: Tracked<RetiredOrder>,
    capacity: usize,
    index: IdTable,
    /// Retirements so far; the ring holds `evicted..retired`.
    retired: u64,
    evicted: u64,
    /// Records before this (absolute) position need no walk by a statement's close: not
    /// paid, or paid and seen, or paid later than a close already walked past.
    reconcile_from: u64,
    /// Paid orders evicted before any statement saw them.
    pub evicted_unreconciled: u64,
}

impl RetiredOrders {
    pub fn with_capacity(capacity: u64) -> RetiredOrders {
        let capacity = usize::try_from(capacity).expect("orders_retired_max fits memory");
        RetiredOrders {
            records: Tracked::with_capacity(capacity, Self::filler()),
            capacity,
            index: IdTable::with_capacity(capacity),
            retired: 0,
            evicted: 0,
            reconcile_from: 0,
            evicted_unreconciled: 0,
        }
    }

    /// What fills a ring position not yet used.
    pub(crate) fn filler() -> RetiredOrder {
        RetiredOrder {
            id: OrderId(0),
            client: ClientId(0),
            request: RequestId(0),
            user: UserId(0),
            total: 0,
            created_ns: 0,
            closed_ns: 0,
            payment_ref: 0,
            first_sku: SkuId(0),
            first_qty: 0,
            line_count: 0,
            state: OrderState::Cancelled,
            reconciled: false,
        }
    }

    /// Touch every page of the ring now.
    pub fn fault_in(&mut self) {
        self.records.fault_in();
        self.index.fault_in();
    }

    pub fn capacity(&self) -> u64 {
        self.capacity as u64
    }

    pub fn regions(&self, out: &mut Vec<crate::memory::Region>) {
        out.push(self.records.region());
        self.index.regions(out);
    }

    /// Records held.
    pub fn len(&self) -> u64 {
        self.retired - self.evicted
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Retirements ever.
    pub fn retired_total(&self) -> u64 {
        self.retired
    }

    pub fn bytes(&self) -> usize {
        self.capacity * std::mem::size_of::<RetiredOrder>() + self.index.bytes()
    }

    fn at(&self, position: u64) -> usize {
        (position % self.capacity()) as usize
    }

    /// Keep `record`, evicting the oldest if the ring is full.
    pub fn push(&mut self, record: RetiredOrder) {
        if self.capacity() == 0 {
            self.retired += 1;
            self.evicted += 1;
            self.count_evicted(&record);
            return;
        }
        if self.len() == self.capacity() {
            let oldest = self.records[self.at(self.evicted)];
            self.index
                .remove(oldest.id)
                .expect("a held record is indexed");
            self.evicted += 1;
            self.count_evicted(&oldest);
        }
        let at = self.at(self.retired);
        self.records.grow_to(at + 1, Self::filler());
        // An id retires once: the index refuses a second ("indexed twice").
        self.index.insert(record.id, at as u32);
        self.records[at] = record;
        self.retired += 1;
    }

    fn count_evicted(&mut self, record: &RetiredOrder) {
        if record.state == OrderState::Paid && !record.reconciled {
            self.evicted_unreconciled += 1;
        }
    }

    #[inline]
    pub fn get(&self, id: OrderId) -> Option<&RetiredOrder> {
        self.index.get(id).map(|at| &self.records[at as usize])
    }

    pub fn get_mut(&mut self, id: OrderId) -> Option<&mut RetiredOrder> {
        self.index.get(id).map(|at| &mut self.records[at as usize])
    }

    #[inline]
    pub fn prefetch(&self, id: OrderId) {
        self.index.prefetch(id);
    }

    /// Oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &RetiredOrder> + Clone {
        let held = usize::try_from(self.retired - self.evicted).expect("the ring fits memory");
        (0..held).map(move |i| &self.records[self.at(self.evicted + i as u64)])
    }

    /// A statement closes through `through_ns`: every paid record not yet seen, paid at or
    /// before it, in payment order, is marked seen and handed to `missing`. Returns whether
    /// the walk reached the newest record (the caller then walks the book's closed orders).
    pub fn close_through(
        &mut self,
        through_ns: TimestampNs,
        mut missing: impl FnMut(&RetiredOrder),
    ) -> bool {
        let mut at = self.reconcile_from.max(self.evicted);
        while at < self.retired {
            let i = self.at(at);
            // Read first: only a record marked seen is written (and its chunk tracked).
            let record = &self.records[i];
            if record.state == OrderState::Paid {
                if record.closed_ns > through_ns {
                    self.reconcile_from = at;
                    return false;
                }
                if !record.reconciled {
                    let record = &mut self.records[i];
                    record.reconciled = true;
                    missing(record);
                }
            }
            at += 1;
        }
        self.reconcile_from = at;
        true
    }

    /// The ring a snapshot describes: oldest first.
    pub fn restore(
        capacity: u64,
        records: impl ExactSizeIterator<Item = RetiredOrder>,
        retired: u64,
        reconcile_from: u64,
        evicted_unreconciled: u64,
    ) -> Result<RetiredOrders, &'static str> {
        if records.len() as u64 > capacity || (records.len() as u64) > retired {
            return Err("more retired records than the ring holds");
        }
        let mut ring = RetiredOrders::with_capacity(capacity);
        // The pages about to be written, made resident in a few calls (see OrderBook::restore):
        // the ring up to where its records lie, which is all of it once it has wrapped.
        // (The index faults its own table in, in `bulk_insert`.)
        if records.len() > 0 {
            ring.records.region().populate();
        }
        ring.retired = retired - records.len() as u64;
        ring.evicted = ring.retired;
        let mut indexed = Vec::with_capacity(records.len());
        for record in records {
            if record.id.0 == 0 {
                return Err("a retired record has id 0");
            }
            let at = ring.at(ring.retired);
            ring.records.grow_to(at + 1, Self::filler());
            ring.records[at] = record;
            indexed.push((record.id, at as u32));
            ring.retired += 1;
        }
        if !ring.index.bulk_insert(&mut indexed) {
            return Err("a retired record appears twice");
        }
        ring.reconcile_from = reconcile_from;
        ring.evicted_unreconciled = evicted_unreconciled;
        Ok(ring)
    }

    pub fn reconcile_from(&self) -> u64 {
        self.reconcile_from
    }

    /// The ring's scalars, for a checkpoint (its records travel as chunks).
    pub(crate) fn head(&self) -> RetiredHead {
        RetiredHead {
            retired: self.retired,
            evicted: self.evicted,
            reconcile_from: self.reconcile_from,
            evicted_unreconciled: self.evicted_unreconciled,
            records_len: self.records.len() as u64,
        }
    }

    pub(crate) fn table(&mut self) -> &mut Tracked<RetiredOrder> {
        &mut self.records
    }

    /// A checkpoint's chunks are in the ring: take its scalars and index what it holds.
    pub(crate) fn restore_head(&mut self, head: &RetiredHead) -> Result<(), &'static str> {
        let held = head
            .retired
            .checked_sub(head.evicted)
            .ok_or("evicted past retired")?;
        if held > self.capacity() || head.records_len > self.capacity() {
            return Err("the retired ring holds more than its capacity");
        }
        if head.reconcile_from > head.retired {
            return Err("the reconcile cursor is past the retired records");
        }
        self.records.restore_len(head.records_len as usize)?;
        (self.retired, self.evicted) = (head.retired, head.evicted);
        self.reconcile_from = head.reconcile_from;
        self.evicted_unreconciled = head.evicted_unreconciled;
        let mut indexed = Vec::with_capacity(held as usize);
        for position in head.evicted..head.retired {
            let at = self.at(position);
            if at as u64 >= head.records_len {
                return Err("a retired record lies past the ring's length");
            }
            let id = self.records[at].id;
            if id.0 == 0 {
                return Err("a retired record has id 0");
            }
            indexed.push((id, at as u32));
        }
        if !self.index.bulk_insert(&mut indexed) {
            return Err("a retired record appears twice");
        }
        Ok(())
    }
}

/// The retired ring's scalars in a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RetiredHead {
    pub retired: u64,
    pub evicted: u64,
    pub reconcile_from: u64,
    pub evicted_unreconciled: u64,
    pub records_len: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, state: OrderState, closed_ns: u64) -> RetiredOrder {
        RetiredOrder {
            id: OrderId(id),
            client: ClientId(1),
            request: RequestId(id),
            user: UserId(id),
            total: 100,
            created_ns: 0,
            closed_ns,
            payment_ref: id,
            first_sku: SkuId(1),
            first_qty: 1,
            line_count: 1,
            state,
            reconciled: false,
        }
    }

    #[test]
    fn the_oldest_is_evicted_and_counted_if_unreconciled() {
        let mut ring = RetiredOrders::with_capacity(2);
        ring.push(record(1, OrderState::Paid, 10));
        ring.push(record(2, OrderState::Cancelled, 11));
        ring.push(record(3, OrderState::Paid, 12));
        assert!(ring.get(OrderId(1)).is_none());
        assert_eq!(ring.get(OrderId(3)).unwrap().closed_ns, 12);
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.retired_total(), 3);
        assert_eq!(ring.evicted_unreconciled, 1);
    }

    #[test]
    fn a_close_walks_paid_records_once_in_payment_order() {
        let mut ring = RetiredOrders::with_capacity(8);
        ring.push(record(1, OrderState::Paid, 10));
        ring.push(record(2, OrderState::Expired, 11));
        ring.push(record(3, OrderState::Paid, 12));
        ring.push(record(4, OrderState::Paid, 20));
        let mut seen = Vec::new();
        assert!(!ring.close_through(15, |r| seen.push(r.id.0)));
        assert_eq!(seen, vec![1, 3]);
        seen.clear();
        assert!(!ring.close_through(15, |r| seen.push(r.id.0)));
        assert!(seen.is_empty());
        assert!(ring.close_through(25, |r| seen.push(r.id.0)));
        assert_eq!(seen, vec![4]);
        let restored = RetiredOrders::restore(
            8,
            ring.iter().copied(),
            ring.retired_total(),
            ring.reconcile_from(),
            0,
        )
        .unwrap();
        assert_eq!(restored.get(OrderId(3)), ring.get(OrderId(3)));
        assert_eq!(restored.retired_total(), 4);
    }
}
