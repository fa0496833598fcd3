//! Orders, and the book of those the engine holds in full: every order still open, and each
//! closed one until it retires. The book is a slab sized once from `orders_max` (slots never
//! move, a free list hands them out), an id table to find an order, and two chains through
//! the slots: open orders oldest first (which is deadline order: every deadline is the
//! clock at creation plus one payment window, and the clock never goes back) and closed
//! orders in the order they closed (which is retirement order). Expiry walks the first from
//! its head, retirement the second; closing an order moves it from one to the other in O(1).
//! Nothing here grows after start-up.

use crate::command::OrderLine;
use crate::counted::Counted;
use crate::id_table::IdTable;
use crate::ids::{ClientId, Money, OrderId, RequestId, SkuId, TimestampNs, UserId};
use crate::tracked::Tracked;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum OrderState {
    /// Units reserved; waiting for payment until the deadline.
    PendingPayment = 1,
    /// Units sold.
    Paid = 2,
    /// Cancelled before payment; units released.
    Cancelled = 3,
    /// The provider declined the payment; units released.
    PaymentFailed = 4,
    /// The deadline passed unpaid; units released.
    Expired = 5,
}

impl OrderState {
    /// The lower-case name used in JSON exports.
    pub const fn name(self) -> &'static str {
        match self {
            OrderState::PendingPayment => "pending_payment",
            OrderState::Paid => "paid",
            OrderState::Cancelled => "cancelled",
            OrderState::PaymentFailed => "payment_failed",
            OrderState::Expired => "expired",
        }
    }

    /// The state with this wire number.
    pub const fn from_u8(n: u8) -> Option<OrderState> {
        Some(match n {
            1 => OrderState::PendingPayment,
            2 => OrderState::Paid,
            3 => OrderState::Cancelled,
            4 => OrderState::PaymentFailed,
            5 => OrderState::Expired,
            _ => return None,
        })
    }

    pub const ALL: [OrderState; 5] = [
        OrderState::PendingPayment,
        OrderState::Paid,
        OrderState::Cancelled,
        OrderState::PaymentFailed,
        OrderState::Expired,
    ];
}

/// Most orders in a flash sale have one line; keep that one inline and box the rest. (Three
/// inline would spare the box for nearly every order, but cost 32 more bytes in every slot
/// of the book: 128 MB at the default `orders_max`, in each engine.)
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum OrderLines {
    One(OrderLine),
    Many(Box<[OrderLine]>),
}

impl OrderLines {
    pub fn new(lines: &[OrderLine]) -> OrderLines {
        match lines {
            [line] => OrderLines::One(*line),
            _ => OrderLines::Many(lines.into()),
        }
    }

    pub fn as_slice(&self) -> &[OrderLine] {
        match self {
            OrderLines::One(line) => std::slice::from_ref(line),
            OrderLines::Many(lines) => lines,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub client: ClientId,
    pub request: RequestId,
    pub user: UserId,
    pub total: Money,
    pub created_ns: TimestampNs,
    pub deadline_ns: TimestampNs,
    /// When it was paid (0 while unpaid); statements close over this.
    pub paid_ns: TimestampNs,
    pub payment_ref: u64,
    /// When it left `PendingPayment` (0 while open); it retires `retire_after` later.
    pub closed_ns: TimestampNs,
    /// The holdings stamp when it was placed (or its waitlist entry joined): a line's units
    /// are in the buyer's holdings only while its SKU's holdings were not reset since.
    pub holdings_stamp: u32,
    pub lines: OrderLines,
    /// Bit `i`: line `i` counts in the buyer's holdings (its SKU had a per-user limit then).
    pub held_lines: u16,
    pub state: OrderState,
    /// Seen in a payment statement (or reported missing from one): never reported again.
    pub reconciled: bool,
}

impl Order {
    /// An empty slot's filler.
    pub(crate) fn vacant() -> Order {
        Order {
            id: OrderId(0),
            client: ClientId(0),
            request: RequestId(0),
            user: UserId(0),
            total: 0,
            created_ns: 0,
            deadline_ns: 0,
            paid_ns: 0,
            payment_ref: 0,
            closed_ns: 0,
            holdings_stamp: 0,
            lines: OrderLines::One(OrderLine {
                sku: SkuId(0),
                qty: 0,
            }),
            held_lines: 0,
            state: OrderState::PendingPayment,
            reconciled: false,
        }
    }

    pub fn is_open(&self) -> bool {
        self.state == OrderState::PendingPayment
    }

    /// Whether line `i`'s units count in the buyer's holdings.
    pub fn line_held(&self, i: usize) -> bool {
        self.held_lines & (1 << i) != 0
    }
}

/// No slot: the end of a chain.
const NIL: u32 = u32::MAX;

/// A slot's neighbours in its chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Link {
    prev: u32,
    next: u32,
}

impl Link {
    pub(crate) const NONE: Link = Link {
        prev: NIL,
        next: NIL,
    };
}

/// A doubly linked chain of slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Chain {
    head: u32,
    tail: u32,
    len: u64,
}

impl Chain {
    const EMPTY: Chain = Chain {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

/// The book's scalars in a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BookHead {
    pub next_id: u64,
    pub open: Chain,
    pub closed: Chain,
    /// Slots ever used (the orders' and links' tables' length).
    pub slots_used: u64,
    pub free_len: u64,
}

/// The orders held in full: open ones, and closed ones until they retire.
#[derive(Clone, Debug)]
pub struct OrderBook {
    /// Slots `0..orders.len()` have been used; the rest of the capacity is reserved.
    orders: Tracked<Order>,
    links: Tracked<Link>,
    /// Slots used once and free again, the next to use last.
    free: Tracked<u32>,
    capacity: usize,
    index: IdTable,
    next_id: u64,
    open: Chain,
    closed: Chain,
}

impl OrderBook {
    /// A book for `capacity` orders, its memory allocated now (touched by `fault_in`).
    pub fn with_capacity(capacity: u64) -> OrderBook {
        let capacity = usize::try_from(capacity).expect("orders_max fits memory");
        assert!(capacity < NIL as usize, "orders_max below 2^32");
        OrderBook {
            orders: Tracked::with_capacity(capacity, Order::vacant()),
            links: Tracked::with_capacity(capacity, Link::NONE),
            free: Tracked::with_capacity(capacity, 0),
            capacity,
            index: IdTable::with_capacity(capacity),
            next_id: 1,
            open: Chain::EMPTY,
            closed: Chain::EMPTY,
        }
    }

    /// Orders held (open and not yet retired).
    pub fn len(&self) -> u64 {
        self.open.len + self.closed.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn open_len(&self) -> u64 {
        self.open.len
    }

    pub fn capacity(&self) -> u64 {
        self.capacity as u64
    }

    pub fn is_full(&self) -> bool {
        self.free.is_empty() && self.orders.len() == self.capacity
    }

    /// Bytes the book holds (its capacity, not its use).
    pub fn bytes(&self) -> usize {
        self.capacity * (std::mem::size_of::<Order>() + std::mem::size_of::<Link>() + 4)
            + self.index.bytes()
    }

    /// Touch every page of the book now.
    pub fn fault_in(&mut self) {
        self.orders.fault_in();
        self.links.fault_in();
        self.free.fault_in();
        self.index.fault_in();
    }

    /// Its tables' allocations.
    pub fn regions(&self, out: &mut Vec<crate::memory::Region>) {
        out.extend([
            self.orders.region(),
            self.links.region(),
            self.free.region(),
        ]);
        self.index.regions(out);
    }

    /// A slot to put an order in: a freed one, or the next never used.
    /// Put `order` in a free slot, or a new one at the end (one write either way), with its
    /// link reset.
    fn place(&mut self, order: Order) -> u32 {
        if let Some(slot) = self.free.pop() {
            self.orders[slot as usize] = order;
            return slot;
        }
        assert!(
            self.orders.len() < self.capacity,
            "the caller checked the book has room"
        );
        self.orders.push(order);
        self.links.push(Link::NONE);
        (self.orders.len() - 1) as u32
    }

    /// The id the next order will get.
    pub fn next_id(&self) -> OrderId {
        OrderId(self.next_id)
    }

    /// Whether `id` was ever given to an order.
    pub fn was_assigned(&self, id: OrderId) -> bool {
        id.0 != 0 && id.0 < self.next_id
    }

    /// Add an open order; its id is `next_id()`. The caller checked `is_full`.
    pub fn push(&mut self, mut order: Order) -> OrderId {
        let id = self.next_id();
        self.next_id += 1;
        order.id = id;
        debug_assert!(order.is_open());
        let slot = self.place(order);
        self.index.insert(id, slot);
        Self::append(&mut self.links, &mut self.open, slot);
        id
    }

    #[inline]
    pub fn get(&self, id: OrderId) -> Option<&Order> {
        let slot = self.index.get(id)?;
        Some(&self.orders[slot as usize])
    }

    #[inline]
    pub fn get_mut(&mut self, id: OrderId) -> Option<&mut Order> {
        let slot = self.index.get(id)?;
        Some(&mut self.orders[slot as usize])
    }

    #[inline]
    pub fn prefetch(&self, id: OrderId) {
        self.index.prefetch(id);
    }

    /// The open order with the earliest deadline.
    pub fn oldest_open(&self) -> Option<&Order> {
        (self.open.head != NIL).then(|| &self.orders[self.open.head as usize])
    }

    /// The closed order that retires next.
    pub fn oldest_closed(&self) -> Option<&Order> {
        (self.closed.head != NIL).then(|| &self.orders[self.closed.head as usize])
    }

    /// An order the caller just closed (state and `closed_ns` set) moves to the closed chain.
    pub fn closed(&mut self, id: OrderId) {
        let slot = self.index.get(id).expect("closing a held order");
        debug_assert!(!self.orders[slot as usize].is_open());
        Self::unlink(&mut self.links, &mut self.open, slot);
        Self::append(&mut self.links, &mut self.closed, slot);
    }

    /// Remove the oldest closed order from the book (it retires) and hand it back.
    pub fn retire_oldest(&mut self) -> Order {
        let slot = self.closed.head;
        assert_ne!(slot, NIL, "retiring from an empty chain");
        Self::unlink(&mut self.links, &mut self.closed, slot);
        let order = std::mem::replace(&mut self.orders[slot as usize], Order::vacant());
        self.index
            .remove(order.id)
            .expect("a held order is indexed");
        self.free.push(slot);
        order
    }

    /// Open orders, earliest deadline first.
    pub fn open_orders(&self) -> impl ExactSizeIterator<Item = &Order> + Clone {
        self.chain(self.open)
    }

    /// Closed orders not yet retired, in closing order.
    pub fn closed_orders(&self) -> impl ExactSizeIterator<Item = &Order> + Clone {
        self.chain(self.closed)
    }

    /// Visit the closed orders in closing order with `f`, which may change them (not their
    /// state) and returns whether to go on.
    pub fn visit_closed_mut(&mut self, mut f: impl FnMut(&mut Order) -> bool) {
        let mut at = self.closed.head;
        while at != NIL {
            let order = &mut self.orders[at as usize];
            let state = order.state;
            let go_on = f(order);
            debug_assert_eq!(order.state, state, "a visit changed an order's state");
            if !go_on {
                return;
            }
            at = self.links[at as usize].next;
        }
    }

    /// Every order held: open ones, then closed ones.
    pub fn iter(&self) -> impl Iterator<Item = &Order> {
        self.open_orders().chain(self.closed_orders())
    }

    /// A walk along a chain that knows its length (a snapshot archives a chain as it walks
    /// it).
    fn chain(&self, chain: Chain) -> Counted<impl Iterator<Item = &Order> + Clone + '_> {
        let mut at = chain.head;
        let walk = std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let order = &self.orders[at as usize];
            at = self.links[at as usize].next;
            Some(order)
        });
        Counted::new(walk, chain.len as usize)
    }

    /// The book a snapshot describes: `capacity` slots, the next id, and the open and closed
    /// orders in chain order.
    pub fn restore(
        capacity: u64,
        next_id: u64,
        open: impl ExactSizeIterator<Item = Order>,
        closed: impl ExactSizeIterator<Item = Order>,
    ) -> Result<OrderBook, &'static str> {
        if (open.len() + closed.len()) as u64 > capacity {
            return Err("more orders than orders_max");
        }
        let mut book = OrderBook::with_capacity(capacity);
        book.next_id = next_id;
        // The pages about to be written, made resident in a few calls instead of a fault
        // each (a quarter of a big restore's time went to faults).
        let n = open.len() + closed.len();
        // (The index faults its own table in, in `bulk_insert`.)
        for region in [book.orders.region_prefix(n), book.links.region_prefix(n)] {
            region.populate();
        }
        let mut indexed = Vec::with_capacity(n);
        for (order, want_open) in open.map(|o| (o, true)).chain(closed.map(|o| (o, false))) {
            if order.is_open() != want_open || !book.was_assigned(order.id) {
                return Err("an order is in the wrong chain or has an unassigned id");
            }
            let id = order.id;
            let slot = book.place(order);
            indexed.push((id, slot));
            let chain = if want_open {
                &mut book.open
            } else {
                &mut book.closed
            };
            Self::append(&mut book.links, chain, slot);
        }
        if !book.index.bulk_insert(&mut indexed) {
            return Err("an order appears twice");
        }
        Ok(book)
    }

    /// The book's scalars, for a checkpoint (its slots travel as chunks of its tables).
    pub(crate) fn head(&self) -> BookHead {
        BookHead {
            next_id: self.next_id,
            open: self.open,
            closed: self.closed,
            slots_used: self.orders.len() as u64,
            free_len: self.free.len() as u64,
        }
    }

    /// Its tables, for a checkpoint: the orders, their links, the free slots.
    pub(crate) fn tables(
        &mut self,
    ) -> (&mut Tracked<Order>, &mut Tracked<Link>, &mut Tracked<u32>) {
        (&mut self.orders, &mut self.links, &mut self.free)
    }

    /// A checkpoint's chunks are in the tables: take its scalars, check that the chains and
    /// the free slots account for every slot used exactly once, and index the orders.
    pub(crate) fn restore_head(&mut self, head: &BookHead) -> Result<(), &'static str> {
        let used = usize::try_from(head.slots_used).map_err(|_| "too many slots")?;
        let free = usize::try_from(head.free_len).map_err(|_| "too many free slots")?;
        self.orders.restore_len(used)?;
        self.links.restore_len(used)?;
        self.free.restore_len(free)?;
        self.next_id = head.next_id;
        self.open = head.open;
        self.closed = head.closed;
        if head.open.len + head.closed.len + head.free_len != head.slots_used {
            return Err("the book's chains and free slots do not add up to its slots");
        }
        let mut indexed = Vec::with_capacity((head.open.len + head.closed.len) as usize);
        for (chain, open) in [(head.open, true), (head.closed, false)] {
            let (mut at, mut prev, mut seen) = (chain.head, NIL, 0u64);
            while at != NIL {
                if at as usize >= used || seen == chain.len {
                    return Err("a chain leaves the slots in use or runs past its length");
                }
                let (order, link) = (&self.orders[at as usize], self.links[at as usize]);
                if link.prev != prev || order.is_open() != open || !self.was_assigned(order.id) {
                    return Err("a chain's links, states or ids disagree");
                }
                indexed.push((order.id, at));
                (prev, at, seen) = (at, link.next, seen + 1);
            }
            if seen != chain.len || prev != chain.tail {
                return Err("a chain ends before its length or away from its tail");
            }
        }
        if self
            .free
            .as_slice()
            .iter()
            .any(|&slot| slot as usize >= used)
        {
            return Err("a free slot was never used");
        }
        if !self.index.bulk_insert(&mut indexed) {
            return Err("an order appears twice");
        }
        Ok(())
    }

    fn append(links: &mut Tracked<Link>, chain: &mut Chain, slot: u32) {
        links[slot as usize] = Link {
            prev: chain.tail,
            next: NIL,
        };
        if chain.tail == NIL {
            chain.head = slot;
        } else {
            links[chain.tail as usize].next = slot;
        }
        chain.tail = slot;
        chain.len += 1;
    }

    fn unlink(links: &mut Tracked<Link>, chain: &mut Chain, slot: u32) {
        let Link { prev, next } = links[slot as usize];
        if prev == NIL {
            debug_assert_eq!(chain.head, slot);
            chain.head = next;
        } else {
            links[prev as usize].next = next;
        }
        if next == NIL {
            debug_assert_eq!(chain.tail, slot);
            chain.tail = prev;
        } else {
            links[next as usize].prev = prev;
        }
        links[slot as usize] = Link::NONE;
        chain.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(user: u64) -> Order {
        Order {
            user: UserId(user),
            ..Order::vacant()
        }
    }

    fn ids<'a>(orders: impl Iterator<Item = &'a Order>) -> Vec<u64> {
        orders.map(|o| o.id.0).collect()
    }

    #[test]
    fn orders_move_from_open_to_closed_to_retired() {
        let mut book = OrderBook::with_capacity(3);
        let a = book.push(order(1));
        let b = book.push(order(2));
        let c = book.push(order(3));
        assert!(book.is_full());
        assert_eq!((a.0, b.0, c.0), (1, 2, 3));
        for id in [b, a] {
            book.get_mut(id).unwrap().state = OrderState::Cancelled;
            book.closed(id);
        }
        assert_eq!(ids(book.open_orders()), vec![3]);
        assert_eq!(ids(book.closed_orders()), vec![2, 1]);
        assert_eq!(book.retire_oldest().id, b);
        assert!(book.get(b).is_none());
        assert!(book.was_assigned(b));
        let d = book.push(order(4));
        assert_eq!(d.0, 4);
        assert_eq!(ids(book.iter()), vec![3, 4, 1]);
        let restored = OrderBook::restore(
            3,
            book.next_id().0,
            book.open_orders().cloned(),
            book.closed_orders().cloned(),
        )
        .unwrap();
        assert_eq!(ids(restored.iter()), vec![3, 4, 1]);
        assert_eq!(restored.get(d).unwrap().user, UserId(4));
        assert_eq!(restored.next_id(), OrderId(5));
    }
}
