//! Orders and the order book. Order ids are dense (1, 2, 3, …), so the book is a `Vec`
//! indexed by id: O(1) lookup, no hashing, ~100 bytes per order.

use crate::command::OrderLine;
use crate::ids::{ClientId, Money, OrderId, RequestId, TimestampNs, UserId};

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

    pub const ALL: [OrderState; 5] = [
        OrderState::PendingPayment,
        OrderState::Paid,
        OrderState::Cancelled,
        OrderState::PaymentFailed,
        OrderState::Expired,
    ];
}

/// Most orders in a flash sale have one line; keep that one inline and box the rest.
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
    pub client: ClientId,
    pub request: RequestId,
    pub user: UserId,
    pub total: Money,
    pub created_ns: TimestampNs,
    pub deadline_ns: TimestampNs,
    /// When it was paid (0 while unpaid); statements close over this.
    pub paid_ns: TimestampNs,
    pub payment_ref: u64,
    pub lines: OrderLines,
    pub state: OrderState,
    /// Seen in a payment statement (or reported missing from one): never reported again.
    pub reconciled: bool,
}

/// Every order ever placed, in id order.
#[derive(Clone, Debug, Default)]
pub struct OrderBook {
    orders: Vec<Order>,
}

impl OrderBook {
    pub fn from_orders(orders: Vec<Order>) -> OrderBook {
        OrderBook { orders }
    }

    /// Room for `orders` more without reallocating, pages faulted in now.
    pub fn preallocate(&mut self, orders: usize) {
        let filler = Order {
            client: ClientId(0),
            request: RequestId(0),
            user: UserId(0),
            total: 0,
            created_ns: 0,
            deadline_ns: 0,
            paid_ns: 0,
            payment_ref: 0,
            lines: OrderLines::One(OrderLine {
                sku: crate::ids::SkuId(0),
                qty: 0,
            }),
            state: OrderState::PendingPayment,
            reconciled: false,
        };
        crate::memory::reserve_touched(&mut self.orders, orders, filler);
    }

    pub fn len(&self) -> u64 {
        self.orders.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// The id the next order will get.
    pub fn next_id(&self) -> OrderId {
        OrderId(self.len() + 1)
    }

    pub fn push(&mut self, order: Order) -> OrderId {
        let id = self.next_id();
        self.orders.push(order);
        id
    }

    fn index(id: OrderId) -> Option<usize> {
        usize::try_from(id.0.checked_sub(1)?).ok()
    }

    pub fn get(&self, id: OrderId) -> Option<&Order> {
        self.orders.get(Self::index(id)?)
    }

    pub fn get_mut(&mut self, id: OrderId) -> Option<&mut Order> {
        self.orders.get_mut(Self::index(id)?)
    }

    pub fn iter(&self) -> impl Iterator<Item = (OrderId, &Order)> {
        self.orders
            .iter()
            .enumerate()
            .map(|(i, order)| (OrderId(i as u64 + 1), order))
    }

    pub fn as_slice(&self) -> &[Order] {
        &self.orders
    }
}
