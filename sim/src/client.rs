//! Simulated shop backends, as the Rust client behaves: each sends to one node at a time,
//! keeps several requests in flight, and on a refusal that means "not here" (`NOT_PRIMARY`,
//! `FENCED`, `STANDBY_UNAVAILABLE`), a lost connection or an answer that does not come, it
//! moves to the next node and sends everything unanswered again with the same request ids
//! (idempotent retries). Client 0 lists the hot SKU and restocks it; the rest place orders
//! on it, pay or cancel some of theirs, and poll its stock.

use std::collections::BTreeMap;

use engine::wire::Operation;
use engine::{
    Code, Command, OrderId, OrderLine, Outcome, Query, RequestId, SkuId, SkuSpec, UserId,
};

use crate::net::NodeId;
use crate::node::{ClientAnswer, Reply, Request};
use crate::rng::Rng;

/// The SKU every client buys.
pub const HOT_SKU: SkuId = SkuId(1);
/// An answer that has not come within this is given up on: the client moves.
pub const ANSWER_TIMEOUT_NS: u64 = 3_000_000_000;

#[derive(Clone, Debug)]
struct Pending {
    op: Operation,
    sent_ns: u64,
}

pub struct SimClient {
    pub index: usize,
    /// The node it sends to now, and its connection's generation there.
    pub node: NodeId,
    pub generation: u32,
    pub max_epoch: u64,
    nodes: usize,
    next_request: u64,
    pending: BTreeMap<u64, Pending>,
    /// Its orders not known closed, with their totals.
    open_orders: BTreeMap<u64, u64>,
    listed: bool,
    /// No new requests from now on (the run is draining).
    pub quiet: bool,
    pub answered: u64,
    pub moves: u64,
    /// Requests it has unanswered at most.
    in_flight_max: usize,
    rng: Rng,
}

impl SimClient {
    pub fn new(index: usize, nodes: usize, in_flight_max: usize, rng: Rng) -> SimClient {
        SimClient {
            index,
            node: index % nodes,
            generation: 1,
            max_epoch: 0,
            nodes,
            next_request: 1,
            pending: BTreeMap::new(),
            open_orders: BTreeMap::new(),
            listed: index != 0,
            quiet: false,
            answered: 0,
            moves: 0,
            in_flight_max,
            rng,
        }
    }

    pub fn unanswered(&self) -> usize {
        self.pending.len()
    }

    fn request(&self, id: u64, op: Operation) -> Request {
        Request {
            client: self.index,
            generation: self.generation,
            max_epoch: self.max_epoch,
            id: RequestId(id),
            op,
        }
    }

    /// Move to the next node and send everything unanswered there again.
    pub fn move_on(&mut self, now_ns: u64) -> Vec<Request> {
        self.node = (self.node + 1) % self.nodes;
        self.generation += 1;
        self.moves += 1;
        let mut again = Vec::new();
        for (&id, p) in self.pending.iter_mut() {
            p.sent_ns = now_ns;
            again.push((id, p.op.clone()));
        }
        again
            .into_iter()
            .map(|(id, op)| self.request(id, op))
            .collect()
    }

    /// A turn: requests to send now (to `self.node`).
    pub fn turn(&mut self, now_ns: u64) -> Vec<Request> {
        if self
            .pending
            .values()
            .any(|p| now_ns >= p.sent_ns + ANSWER_TIMEOUT_NS)
        {
            return self.move_on(now_ns);
        }
        if self.quiet || self.pending.len() >= self.in_flight_max {
            return Vec::new();
        }
        let op = self.next_operation();
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(
            id,
            Pending {
                op: op.clone(),
                sent_ns: now_ns,
            },
        );
        vec![self.request(id, op)]
    }

    fn next_operation(&mut self) -> Operation {
        if !self.listed {
            return Operation::Command(Command::UpsertSku(SkuSpec {
                sku: HOT_SKU,
                price: 100,
                stock: 400,
                per_user_limit: 0,
                sale_window: None,
            }));
        }
        let roll = self.rng.below(100);
        if self.index == 0 {
            // The shop: restocks now and then, and watches the stock.
            return match roll {
                0..=9 => Operation::Command(Command::Restock {
                    sku: HOT_SKU,
                    units: 20,
                }),
                _ => Operation::Query(Query::Stock { sku: HOT_SKU }),
            };
        }
        let open: Vec<(u64, u64)> = self.open_orders.iter().map(|(&o, &t)| (o, t)).collect();
        match roll {
            0..=39 => Operation::Command(Command::PlaceOrder {
                user: UserId(1 + self.rng.below(50)),
                lines: vec![OrderLine {
                    sku: HOT_SKU,
                    qty: 1,
                }],
                join_waitlist: self.rng.chance(30),
            }),
            40..=59 if !open.is_empty() => {
                let &(order, total) = self.rng.pick(&open);
                Operation::Command(Command::ConfirmPayment {
                    order: OrderId(order),
                    amount: total,
                    payment_ref: order * 7,
                })
            }
            60..=64 if !open.is_empty() => {
                let &(order, _) = self.rng.pick(&open);
                Operation::Command(Command::CancelOrder {
                    order: OrderId(order),
                })
            }
            _ => Operation::Query(Query::Stock { sku: HOT_SKU }),
        }
    }

    /// An answer from `answer.node`. `Some(requests)`: it moves and sends these.
    pub fn answered(&mut self, now_ns: u64, answer: &ClientAnswer) -> Option<Vec<Request>> {
        if answer.node != self.node || answer.generation != self.generation {
            return None; // to a connection it left
        }
        self.max_epoch = self.max_epoch.max(answer.epoch);
        if let Reply::Refused(code) = answer.reply {
            if moves_on(code) {
                return Some(self.move_on(now_ns));
            }
        }
        self.pending.remove(&answer.request.0)?;
        self.answered += 1;
        match &answer.reply {
            Reply::Outcome(Outcome::OrderPlaced { order, total, .. }) => {
                self.open_orders.insert(order.0, *total);
            }
            Reply::Outcome(
                Outcome::PaymentConfirmed { order }
                | Outcome::OrderCancelled { order }
                | Outcome::PaymentFailed { order },
            ) => {
                self.open_orders.remove(&order.0);
            }
            Reply::Outcome(Outcome::SkuUpserted { .. }) => self.listed = true,
            Reply::Outcome(Outcome::Rejected { code, subject }) => {
                // An order that is no longer open (expired, paid by a retry) is forgotten.
                if matches!(
                    code,
                    Code::UnknownOrder
                        | Code::WrongAmount
                        | Code::AlreadyPaid
                        | Code::OrderAlreadyExpired
                        | Code::OrderAlreadyCancelled
                        | Code::OrderAlreadyFailed
                ) {
                    self.open_orders.remove(subject);
                }
            }
            _ => {}
        }
        None
    }

    /// The node it talks to went away: move.
    pub fn lost(&mut self, node: NodeId, now_ns: u64) -> Option<Vec<Request>> {
        (node == self.node).then(|| self.move_on(now_ns))
    }
}

/// A refusal that means "send it to another node".
pub fn moves_on(code: Code) -> bool {
    matches!(
        code,
        Code::NotPrimary | Code::Fenced | Code::StandbyUnavailable | Code::ShuttingDown
    )
}
