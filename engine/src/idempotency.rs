//! Idempotency: `(client, request)` → the outcome it got, so a retry (after a timeout or a
//! failover) gets the original outcome back instead of being applied twice.
//!
//! Clients number their requests upwards (1, 2, 3, … — the Rust client does; gaps are fine).
//! Per client the engine remembers the outcomes of the last `window` request ids below and
//! including the highest it has seen, in a direct-mapped table indexed by `request % window`:
//! consecutive requests land in consecutive slots, so the hot path touches memory it just
//! touched instead of a random hash bucket per request. A request id at or below
//! `highest - window` is too old to tell apart from a new one; it is refused
//! (`REQUEST_TOO_OLD`) rather than risk applying it twice.
//!
//! Why that is exact: the slot for `r` holds the largest applied id `≡ r (mod window)`. If `r`
//! is inside the window, any applied id `≡ r` and larger than `r` would be at least
//! `r + window > highest`, which cannot be; so the slot holds `r` itself (a retry) or an
//! older id (then `r` was never applied).
//!
//! Tables start small and double up to `window` slots as a client's requests spread, so a
//! one-shot client (a `surge ctl` call) costs a few hundred bytes. At most `clients_max`
//! clients are remembered; past that the least recently active is forgotten.

use rustc_hash::FxHashMap;

use crate::ids::{ClientId, RequestId};
use crate::outcome::Outcome;

pub type RequestKey = (ClientId, RequestId);

/// Slots a new client starts with.
const SESSION_SLOTS_MIN: usize = 16;

/// What the window knows about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Never applied: run it.
    New,
    /// Applied before: answer with this outcome again.
    Retry(Outcome),
    /// Too far below the client's highest request to know: refuse it.
    TooOld,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Remembered {
    pub request: RequestId,
    pub outcome: Outcome,
}

/// One client's remembered requests.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Session {
    pub client: ClientId,
    pub highest: RequestId,
    /// `commands_applied` when this client was last seen; the least recent is evicted.
    pub last_active: u64,
    /// Direct-mapped by `request % slots.len()`; `None` is an empty slot.
    pub slots: Vec<Option<Remembered>>,
}

impl Session {
    fn new(client: ClientId) -> Session {
        Session {
            client,
            highest: RequestId(0),
            last_active: 0,
            slots: vec![None; SESSION_SLOTS_MIN],
        }
    }

    #[inline]
    fn slot(&self, request: RequestId) -> usize {
        // The length is a power of two: a mask, not a division, on the hot path.
        (request.0 & (self.slots.len() as u64 - 1)) as usize
    }

    /// Double the table, re-placing every entry.
    fn grow(&mut self) {
        let doubled = vec![None; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        for remembered in old.into_iter().flatten() {
            let slot = self.slot(remembered.request);
            self.slots[slot] = Some(remembered);
        }
    }
}

#[derive(Clone, Debug)]
pub struct IdempotencyWindow {
    window: u64,
    clients_max: usize,
    sessions: FxHashMap<ClientId, Session>,
}

impl IdempotencyWindow {
    /// `window` is rounded up to a power of two (at least 16).
    pub fn new(window: u32, clients_max: u32) -> IdempotencyWindow {
        IdempotencyWindow {
            window: u64::from(window)
                .next_power_of_two()
                .max(SESSION_SLOTS_MIN as u64),
            clients_max: clients_max.max(1) as usize,
            sessions: FxHashMap::default(),
        }
    }

    /// Requests remembered per client.
    pub fn window(&self) -> u64 {
        self.window
    }

    #[inline]
    pub fn seen(&self, (client, request): RequestKey) -> Seen {
        let Some(session) = self.sessions.get(&client) else {
            return Seen::New;
        };
        if request > session.highest {
            // Above everything applied: new, and no need to read a slot last written a whole
            // window ago (a cache miss on every request).
            return Seen::New;
        }
        if request.0.saturating_add(self.window) <= session.highest.0 {
            return Seen::TooOld;
        }
        match session.slots[session.slot(request)] {
            Some(r) if r.request == request => Seen::Retry(r.outcome),
            _ => Seen::New,
        }
    }

    /// A retry or a refused old request is activity too: it keeps the client from being the
    /// least recently active.
    pub fn touch(&mut self, client: ClientId, now: u64) {
        if let Some(session) = self.sessions.get_mut(&client) {
            session.last_active = now;
        }
    }

    /// Start loading the slot `remember` will write for this request.
    #[inline]
    pub fn prefetch(&self, (client, request): RequestKey) {
        if let Some(session) = self.sessions.get(&client) {
            crate::memory::prefetch(&session.slots[session.slot(request)]);
        }
    }

    /// Remember the outcome of a request `seen` called new. `now` is the engine's command
    /// count, for eviction order.
    #[inline]
    pub fn remember(&mut self, (client, request): RequestKey, outcome: Outcome, now: u64) {
        if !self.sessions.contains_key(&client) && self.sessions.len() >= self.clients_max {
            self.evict_least_recent();
        }
        let window = self.window;
        let session = self
            .sessions
            .entry(client)
            .or_insert_with(|| Session::new(client));
        session.last_active = now;
        session.highest = session.highest.max(request);
        if session.slots.len() as u64 == window {
            // A full-size table never holds two ids of one window in one slot: whatever is
            // there is older than the window. Write without reading it.
            let slot = session.slot(request);
            session.slots[slot] = Some(Remembered { request, outcome });
            return;
        }
        loop {
            let slot = session.slot(request);
            match session.slots[slot] {
                // Still inside the window: the table is too small to drop it; grow.
                Some(r) if r.request.0 + window > session.highest.0 => {
                    assert_ne!(r.request, request, "request {request} remembered twice");
                    assert!(
                        (session.slots.len() as u64) < window,
                        "a full window has no collisions"
                    );
                    session.grow();
                }
                _ => {
                    session.slots[slot] = Some(Remembered { request, outcome });
                    return;
                }
            }
        }
    }

    fn evict_least_recent(&mut self) {
        let oldest = self
            .sessions
            .values()
            .min_by_key(|s| (s.last_active, s.client))
            .map(|s| s.client)
            .expect("evicting from an empty window");
        self.sessions.remove(&oldest);
    }

    /// Every session, by client id: a deterministic order for snapshots.
    pub fn sessions(&self) -> Vec<Session> {
        let mut all: Vec<Session> = self.sessions.values().cloned().collect();
        all.sort_unstable_by_key(|s| s.client);
        all
    }

    pub fn restore(
        window: u32,
        clients_max: u32,
        sessions: Vec<Session>,
    ) -> Result<IdempotencyWindow, &'static str> {
        let mut restored = IdempotencyWindow::new(window, clients_max);
        if sessions.len() > restored.clients_max {
            return Err("more idempotency sessions than clients_max");
        }
        for session in sessions {
            let len = session.slots.len();
            if !len.is_power_of_two() || len < SESSION_SLOTS_MIN || len as u64 > restored.window {
                return Err("an idempotency session has a bad table size");
            }
            let placed = session.slots.iter().enumerate().all(|(i, slot)| {
                slot.is_none_or(|r| session.slot(r.request) == i && r.request <= session.highest)
            });
            if !placed {
                return Err("an idempotency session has a misplaced entry");
            }
            if restored.sessions.insert(session.client, session).is_some() {
                return Err("a client has two idempotency sessions");
            }
        }
        Ok(restored)
    }

    pub fn clients(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OrderId;

    fn outcome(o: u64) -> Outcome {
        Outcome::PaymentConfirmed { order: OrderId(o) }
    }

    #[test]
    fn remembers_the_last_window_of_each_client_and_refuses_older() {
        let mut w = IdempotencyWindow::new(32, 10);
        let key = |c, r| (ClientId(c), RequestId(r));
        for r in 1..=100 {
            assert_eq!(w.seen(key(7, r)), Seen::New);
            w.remember(key(7, r), outcome(r), r);
        }
        assert_eq!(w.seen(key(7, 100)), Seen::Retry(outcome(100)));
        assert_eq!(w.seen(key(7, 69)), Seen::Retry(outcome(69)));
        assert_eq!(w.seen(key(7, 68)), Seen::TooOld);
        assert_eq!(w.seen(key(7, 1)), Seen::TooOld);
        assert_eq!(w.seen(key(7, 101)), Seen::New);
        assert_eq!(w.seen(key(8, 100)), Seen::New, "clients are separate");
    }

    #[test]
    fn gaps_and_out_of_order_ids_inside_the_window_are_exact() {
        let mut w = IdempotencyWindow::new(64, 10);
        let key = |r| (ClientId(1), RequestId(r));
        for r in [5, 3, 40, 21, 60] {
            assert_eq!(w.seen(key(r)), Seen::New);
            w.remember(key(r), outcome(r), 0);
        }
        for r in [5, 3, 40, 21, 60] {
            assert_eq!(w.seen(key(r)), Seen::Retry(outcome(r)));
        }
        assert_eq!(w.seen(key(4)), Seen::New);
        assert_eq!(w.seen(key(19)), Seen::New);
    }

    #[test]
    fn the_least_recent_client_is_forgotten() {
        let mut w = IdempotencyWindow::new(16, 2);
        w.remember((ClientId(1), RequestId(1)), outcome(1), 1);
        w.remember((ClientId(2), RequestId(1)), outcome(2), 2);
        w.remember((ClientId(1), RequestId(2)), outcome(3), 3);
        w.remember((ClientId(3), RequestId(1)), outcome(4), 4);
        assert_eq!(w.seen((ClientId(2), RequestId(1))), Seen::New);
        assert_eq!(w.seen((ClientId(1), RequestId(1))), Seen::Retry(outcome(1)));
        assert_eq!(w.clients(), 2);
        let restored = IdempotencyWindow::restore(16, 2, w.sessions()).unwrap();
        assert_eq!(restored.sessions(), w.sessions());
    }
}
