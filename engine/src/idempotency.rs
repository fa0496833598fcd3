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
//! Memory is fixed at start-up: `clients_max` tables of `window` slots each, allocated and
//! touched once. At most `clients_max` clients are remembered; a new one past that takes the
//! table of the least recently active, which is forgotten (its retries become new requests
//! or `REQUEST_TOO_OLD` never, since nothing of it is remembered).

use rustc_hash::FxHashMap;

use crate::ids::{ClientId, RequestId};
use crate::outcome::Outcome;
use crate::tracked::Tracked;

pub type RequestKey = (ClientId, RequestId);

/// The smallest window (a power of two).
const WINDOW_MIN: u64 = 16;

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

/// One client's remembered requests, as a snapshot holds them.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Session {
    pub client: ClientId,
    pub highest: RequestId,
    /// `commands_applied` when this client was last seen; the least recent is evicted.
    pub last_active: u64,
    /// Every remembered request, in slot order.
    pub remembered: Vec<Remembered>,
}

/// A client's place in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Tenant {
    pub(crate) client: ClientId,
    pub(crate) highest: RequestId,
    pub(crate) last_active: u64,
}

#[derive(Clone, Debug)]
pub struct IdempotencyWindow {
    window: u64,
    /// `clients_max` tables of `window` slots, back to back; table `t` is
    /// `slots[t * window .. (t + 1) * window]`, direct-mapped by `request % window`.
    slots: Tracked<Option<Remembered>>,
    /// Who holds each table (`None`: free).
    tenants: Tracked<Option<Tenant>>,
    /// Derived from `tenants` (rebuilt after a checkpoint is restored).
    by_client: FxHashMap<ClientId, u32>,
    free: Tracked<u32>,
}

impl IdempotencyWindow {
    /// `window` is rounded up to a power of two (at least 16). The tables are allocated now
    /// and touched by `fault_in`.
    pub fn new(window: u32, clients_max: u32) -> IdempotencyWindow {
        let window = u64::from(window).next_power_of_two().max(WINDOW_MIN);
        let clients = clients_max.max(1) as usize;
        let slots = Tracked::with_capacity(clients * window as usize, None);
        let mut by_client = FxHashMap::default();
        by_client.reserve(clients);
        IdempotencyWindow {
            window,
            slots,
            tenants: Tracked::from_vec(vec![None; clients], clients, None),
            by_client,
            free: Tracked::from_vec((0..clients as u32).rev().collect(), clients, 0),
        }
    }

    /// Requests remembered per client.
    pub fn window(&self) -> u64 {
        self.window
    }

    pub fn clients_max(&self) -> usize {
        self.tenants.len()
    }

    pub fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Option<Remembered>>()
    }

    pub fn regions(&self, out: &mut Vec<crate::memory::Region>) {
        out.push(self.slots.region());
    }

    /// Touch every table's pages now.
    pub fn fault_in(&mut self) {
        self.slots.fault_in();
    }

    #[inline]
    fn slot(&self, table: u32, request: RequestId) -> usize {
        // The window is a power of two: a mask, not a division, on the hot path.
        table as usize * self.window as usize + (request.0 & (self.window - 1)) as usize
    }

    #[inline]
    pub fn seen(&self, (client, request): RequestKey) -> Seen {
        let Some(&table) = self.by_client.get(&client) else {
            return Seen::New;
        };
        let tenant = self.tenants[table as usize].expect("an indexed table has a tenant");
        if request > tenant.highest {
            // Above everything applied: new, and no need to read a slot last written a whole
            // window ago (a cache miss on every request).
            return Seen::New;
        }
        if request.0.saturating_add(self.window) <= tenant.highest.0 {
            return Seen::TooOld;
        }
        match self.slots[self.slot(table, request)] {
            Some(r) if r.request == request => Seen::Retry(r.outcome),
            _ => Seen::New,
        }
    }

    /// A retry or a refused old request is activity too: it keeps the client from being the
    /// least recently active.
    pub fn touch(&mut self, client: ClientId, now: u64) {
        if let Some(&table) = self.by_client.get(&client) {
            if let Some(t) = self.tenants[table as usize].as_mut() {
                t.last_active = now;
            }
        }
    }

    /// Start loading the slot `remember` will write for this request.
    #[inline]
    pub fn prefetch(&self, (client, request): RequestKey) {
        if let Some(&table) = self.by_client.get(&client) {
            crate::memory::prefetch(&self.slots[self.slot(table, request)]);
        }
    }

    /// Remember the outcome of a request `seen` called new. `now` is the engine's command
    /// count, for eviction order.
    #[inline]
    pub fn remember(&mut self, (client, request): RequestKey, outcome: Outcome, now: u64) {
        let table = match self.by_client.get(&client) {
            Some(&table) => table,
            None => self.admit(client),
        };
        let tenant = self.tenants[table as usize]
            .as_mut()
            .expect("an indexed table has a tenant");
        tenant.last_active = now;
        tenant.highest = tenant.highest.max(request);
        // Whatever the slot held is older than the window (ids in one window never share a
        // slot): write without reading it.
        let slot = self.slot(table, request);
        self.slots[slot] = Some(Remembered { request, outcome });
    }

    /// Give `client` a table: a free one, or the least recently active client's.
    fn admit(&mut self, client: ClientId) -> u32 {
        let table = match self.free.pop() {
            Some(table) => table,
            None => {
                let (table, idlest) = self
                    .tenants
                    .as_slice()
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| t.map(|t| (i as u32, t)))
                    .min_by_key(|(_, t)| (t.last_active, t.client))
                    .expect("a full pool has tenants");
                self.by_client.remove(&idlest.client);
                let start = self.slot(table, RequestId(0));
                self.slots.fill(start..start + self.window as usize, None);
                table
            }
        };
        // Tables are first handed out in order, so the slots in use stay one prefix.
        let end = (table as usize + 1) * self.window as usize;
        self.slots.grow_to(end, None);
        self.tenants[table as usize] = Some(Tenant {
            client,
            highest: RequestId(0),
            last_active: 0,
        });
        self.by_client.insert(client, table);
        table
    }

    /// Every session, by client id: a deterministic order for snapshots.
    pub fn sessions(&self) -> Vec<Session> {
        self.tenants_by_client()
            .iter()
            .map(|&(table, t)| Session {
                client: t.client,
                highest: t.highest,
                last_active: t.last_active,
                remembered: self.remembered(table, &t).copied().collect(),
            })
            .collect()
    }

    /// The tables in use and who holds them, by client id: the order snapshots keep, so
    /// equal states give equal snapshots however the tables were handed out.
    pub(crate) fn tenants_by_client(&self) -> Vec<(u32, Tenant)> {
        let mut tenants: Vec<(u32, Tenant)> = self
            .tenants
            .as_slice()
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i as u32, t)))
            .collect();
        tenants.sort_unstable_by_key(|(_, t)| t.client);
        tenants
    }

    /// What `table` (held by `tenant`) remembers, in slot order. A slot may still hold an
    /// id that fell out of the window (ids with gaps leave slots unwritten): `seen` never
    /// answers from it, `restore` refuses it, and it is left out here.
    pub(crate) fn remembered<'a>(
        &'a self,
        table: u32,
        tenant: &Tenant,
    ) -> impl Iterator<Item = &'a Remembered> + Clone + 'a {
        let start = self.slot(table, RequestId(0));
        let window = self.window;
        let highest = tenant.highest.0;
        self.slots.as_slice()[start..start + self.window as usize]
            .iter()
            .flatten()
            .filter(move |r| r.request.0.saturating_add(window) > highest)
    }

    pub fn restore(
        window: u32,
        clients_max: u32,
        sessions: Vec<Session>,
    ) -> Result<IdempotencyWindow, &'static str> {
        let mut restored = IdempotencyWindow::new(window, clients_max);
        if sessions.len() > restored.clients_max() {
            return Err("more idempotency sessions than clients_max");
        }
        for session in sessions {
            if restored.by_client.contains_key(&session.client) {
                return Err("a client has two idempotency sessions");
            }
            let table = restored.admit(session.client);
            restored.tenants[table as usize] = Some(Tenant {
                client: session.client,
                highest: session.highest,
                last_active: session.last_active,
            });
            for r in session.remembered {
                let slot = restored.slot(table, r.request);
                let inside = r.request <= session.highest
                    && r.request.0.saturating_add(restored.window) > session.highest.0;
                if !inside || restored.slots[slot].is_some() {
                    return Err("an idempotency session holds a request outside its window");
                }
                restored.slots[slot] = Some(r);
            }
        }
        Ok(restored)
    }

    pub fn clients(&self) -> usize {
        self.by_client.len()
    }

    /// The window's scalars, for a checkpoint (its tables travel as chunks).
    pub(crate) fn head(&self) -> WindowHead {
        WindowHead {
            window: self.window,
            slots_len: self.slots.len() as u64,
            free_len: self.free.len() as u64,
        }
    }

    /// Its tables, for a checkpoint: the remembered outcomes, the tenants, the free tables.
    pub(crate) fn tables(
        &mut self,
    ) -> (
        &mut Tracked<Option<Remembered>>,
        &mut Tracked<Option<Tenant>>,
        &mut Tracked<u32>,
    ) {
        (&mut self.slots, &mut self.tenants, &mut self.free)
    }

    /// A checkpoint's chunks are in the tables: take its scalars and index the tenants.
    pub(crate) fn restore_head(&mut self, head: &WindowHead) -> Result<(), &'static str> {
        if head.window != self.window {
            return Err("the idempotency window differs from the configured one");
        }
        self.slots.restore_len(head.slots_len as usize)?;
        self.free.restore_len(head.free_len as usize)?;
        self.by_client.clear();
        let mut held = 0usize;
        for (table, tenant) in self.tenants.as_slice().iter().enumerate() {
            let Some(tenant) = tenant else { continue };
            if (table + 1) * self.window as usize > self.slots.len() {
                return Err("a client's table lies past the remembered slots");
            }
            if self.by_client.insert(tenant.client, table as u32).is_some() {
                return Err("a client holds two tables");
            }
            held += 1;
        }
        if held + self.free.len() > self.tenants.len() {
            return Err("more tables held and free than there are");
        }
        if self.free.as_slice().iter().any(|&t| {
            self.tenants
                .as_slice()
                .get(t as usize)
                .is_none_or(|t| t.is_some())
        }) {
            return Err("a free table is held or does not exist");
        }
        Ok(())
    }
}

/// The idempotency window's scalars in a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct WindowHead {
    pub window: u64,
    pub slots_len: u64,
    pub free_len: u64,
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

    #[test]
    fn a_snapshot_leaves_out_ids_that_fell_out_of_the_window() {
        let mut w = IdempotencyWindow::new(16, 4);
        let key = |r| (ClientId(1), RequestId(r));
        w.remember(key(1), outcome(1), 0);
        w.remember(key(40), outcome(40), 1); // 1's slot is never written again
        let restored = IdempotencyWindow::restore(16, 4, w.sessions()).unwrap();
        assert_eq!(restored.sessions(), w.sessions());
        assert_eq!(restored.seen(key(40)), Seen::Retry(outcome(40)));
        assert_eq!(restored.seen(key(1)), Seen::TooOld);
    }
}
