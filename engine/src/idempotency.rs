//! The idempotency window: `(client, request)` → the outcome it got, for the most recent
//! `idempotency_window` requests. A retry (after a timeout or a failover) gets the original
//! outcome back instead of being applied twice. Oldest entries are forgotten first; the
//! window is a count, not a time, so every replica forgets the same ones.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::ids::{ClientId, RequestId};
use crate::outcome::Outcome;

pub type RequestKey = (ClientId, RequestId);

#[derive(Clone, Debug)]
pub struct IdempotencyWindow {
    capacity: usize,
    outcomes: FxHashMap<RequestKey, Outcome>,
    /// Keys in arrival order, for eviction.
    order: VecDeque<RequestKey>,
}

impl IdempotencyWindow {
    pub fn new(capacity: u32) -> IdempotencyWindow {
        IdempotencyWindow {
            capacity: capacity as usize,
            outcomes: FxHashMap::default(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, key: RequestKey) -> Option<Outcome> {
        self.outcomes.get(&key).copied()
    }

    /// Remember a new key's outcome; the caller has checked `get` returned `None`.
    pub fn insert(&mut self, key: RequestKey, outcome: Outcome) {
        if self.capacity == 0 {
            return;
        }
        if self.order.len() == self.capacity {
            let oldest = self.order.pop_front().expect("window is full");
            self.outcomes.remove(&oldest);
        }
        let previous = self.outcomes.insert(key, outcome);
        assert!(previous.is_none(), "request {key:?} remembered twice");
        self.order.push_back(key);
    }

    /// Entries oldest first: a deterministic order for snapshots.
    pub fn entries(&self) -> impl Iterator<Item = (RequestKey, Outcome)> + '_ {
        self.order.iter().map(|key| (*key, self.outcomes[key]))
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OrderId;

    #[test]
    fn forgets_oldest_first() {
        let mut w = IdempotencyWindow::new(2);
        let key = |r| (ClientId(7), RequestId(r));
        let outcome = |o| Outcome::PaymentConfirmed { order: OrderId(o) };
        w.insert(key(1), outcome(1));
        w.insert(key(2), outcome(2));
        w.insert(key(3), outcome(3));
        assert_eq!(w.get(key(1)), None);
        assert_eq!(w.get(key(2)), Some(outcome(2)));
        assert_eq!(w.get(key(3)), Some(outcome(3)));
        assert_eq!(w.len(), 2);
    }
}
