//! The standbys a primary streams to: a table of slots allocated at start
//! (`replication.max_standbys`), one per standby name, each with its ack mode and what that
//! standby acked. The release rule reads it on every pass: "acked by k of the standbys
//! that count", where a standby counts when its mode is synchronous (`received`, `durable`)
//! and, with failover through etcd, once etcd names it in sync (`counted`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::Mutex;

/// What the release gate waits for from one standby.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AckMode {
    /// Nothing: the standby is for disaster recovery (RPO > 0), it never holds a write back.
    Async,
    /// The standby holds the record in memory.
    Received,
    /// The standby synced the record to its journal.
    Durable,
}

impl AckMode {
    pub fn name(self) -> &'static str {
        match self {
            AckMode::Async => "async",
            AckMode::Received => "received",
            AckMode::Durable => "durable",
        }
    }

    pub fn parse(name: &str) -> Option<AckMode> {
        Some(match name {
            "async" => AckMode::Async,
            "received" => AckMode::Received,
            "durable" => AckMode::Durable,
            _ => return None,
        })
    }

    pub fn synchronous(self) -> bool {
        self != AckMode::Async
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> AckMode {
        match code {
            1 => AckMode::Received,
            2 => AckMode::Durable,
            _ => AckMode::Async,
        }
    }
}

/// Whether `name` may name a node (`replication.node`): 1 to 64 of `A–Z a–z 0–9 . _ -`.
/// Names go into etcd keys, the sync record's list, log lines and metric labels as they are.
pub fn valid_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Ends a standby's session from outside it (its connection, real or simulated).
pub trait Closer: Send {
    fn close(&self);
}

impl Closer for crate::net::Stream {
    fn close(&self) {
        self.shutdown();
    }
}

pub const DETACHED: u8 = 0;
pub const CATCHING_UP: u8 = 1;
pub const STREAMING: u8 = 2;

/// One standby, as the release gate and `/metrics` see it.
#[derive(Default)]
pub struct StandbyStatus {
    /// `DETACHED`, `CATCHING_UP` or `STREAMING`.
    pub state: AtomicU8,
    /// Highest sequence the standby holds in memory (it has handed it to its pipeline).
    pub received: AtomicU64,
    /// Highest sequence synced to the standby's journal.
    pub durable: AtomicU64,
    pub applied: AtomicU64,
    /// Highest sequence sent.
    pub sent: AtomicU64,
    /// Sessions begun (each handshake that passed).
    pub sessions: AtomicU64,
    /// Losses (connection closed or silent past the timeout).
    pub losses: AtomicU64,
    /// Its `replication.node` ("" while the slot was never used).
    pub name: Mutex<String>,
    /// Its `AckMode`, set before the slot leaves `DETACHED`.
    mode: AtomicU8,
    /// Its acks count toward the release rule. Without etcd: from the attach on, in a
    /// synchronous mode. With etcd: only while etcd names it in sync (`coordination.rs`
    /// sets it after naming it, clears it before un-naming it).
    pub counted: AtomicBool,
    /// The stream of its session (shut down to end the session), and the session's number,
    /// so that an old session's end does not detach a newer one.
    current: Mutex<Option<Box<dyn Closer>>>,
    generation: AtomicU64,
}

/// `DETACHED`, `CATCHING_UP` or `STREAMING` in logs, `/health` and `surge status`.
pub fn state_name(state: u8) -> &'static str {
    match state {
        CATCHING_UP => "catching_up",
        STREAMING => "streaming",
        _ => "detached",
    }
}

impl StandbyStatus {
    pub fn state_name(&self) -> &'static str {
        state_name(self.state.load(SeqCst))
    }

    /// Whether a standby ever held this slot.
    pub fn used(&self) -> bool {
        !self.name.lock().expect("standby name lock").is_empty()
    }

    pub fn mode(&self) -> AckMode {
        AckMode::from_code(self.mode.load(SeqCst))
    }

    pub fn name(&self) -> String {
        self.name.lock().expect("standby name lock").clone()
    }

    /// What it acked, as its mode counts it.
    pub fn acked(&self) -> u64 {
        match self.mode() {
            AckMode::Received => self.received.load(SeqCst),
            _ => self.durable.load(SeqCst),
        }
    }

    fn counts(&self) -> bool {
        self.counted.load(SeqCst) && self.mode().synchronous()
    }
}

/// The table: `slots` fixed at start.
pub struct Standbys {
    slots: Box<[StandbyStatus]>,
    /// The mode of a standby not named in `modes`.
    default_mode: AckMode,
    modes: Vec<(String, AckMode)>,
    /// Counting starts only when etcd names a standby in sync (failover through etcd).
    counted_by_coordinator: bool,
}

/// A session's hold on a slot (`Standbys::claim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub slot: usize,
    generation: u64,
}

impl Standbys {
    pub fn new(
        slots: usize,
        default_mode: AckMode,
        modes: Vec<(String, AckMode)>,
        counted_by_coordinator: bool,
    ) -> Standbys {
        assert!(slots >= 1, "at least one standby slot");
        Standbys {
            slots: (0..slots).map(|_| StandbyStatus::default()).collect(),
            default_mode,
            modes,
            counted_by_coordinator,
        }
    }

    pub fn slots(&self) -> &[StandbyStatus] {
        &self.slots
    }

    pub fn mode_of(&self, name: &str) -> AckMode {
        self.modes
            .iter()
            .find(|(n, _)| n == name)
            .map_or(self.default_mode, |&(_, mode)| mode)
    }

    /// Whether any standby can hold a write back (one with a synchronous mode may attach).
    pub fn any_synchronous(&self) -> bool {
        self.default_mode.synchronous() || self.modes.iter().any(|(_, m)| m.synchronous())
    }

    /// Take the slot of `name` (a standby that comes back, its old session ended), or a
    /// never-used one, or the one detached longest ago. `None`: every slot holds a standby
    /// that is attached.
    pub fn claim(&self, name: &str, session: Box<dyn Closer>, from_seq: u64) -> Option<Claim> {
        let index = self
            .position(|s| s.name() == name)
            .or_else(|| self.position(|s| s.name().is_empty()))
            .or_else(|| self.position(|s| s.state.load(SeqCst) == DETACHED))?;
        let slot = &self.slots[index];
        if let Some(old) = slot.current.lock().expect("session lock").replace(session) {
            old.close();
        }
        let generation = slot.generation.fetch_add(1, SeqCst) + 1;
        let mode = self.mode_of(name);
        slot.mode.store(mode.code(), SeqCst);
        slot.counted
            .store(mode.synchronous() && !self.counted_by_coordinator, SeqCst);
        *slot.name.lock().expect("standby name lock") = name.to_string();
        for seq in [&slot.received, &slot.durable, &slot.applied, &slot.sent] {
            seq.store(from_seq, SeqCst);
        }
        slot.sessions.fetch_add(1, SeqCst);
        slot.state.store(CATCHING_UP, SeqCst);
        Some(Claim {
            slot: index,
            generation,
        })
    }

    /// The session of `claim` ended: detach the slot unless a newer session took it.
    /// Whether it did detach.
    pub fn release(&self, claim: Claim) -> bool {
        let slot = &self.slots[claim.slot];
        let mut current = slot.current.lock().expect("session lock");
        if slot.generation.load(SeqCst) != claim.generation {
            return false;
        }
        current.take();
        if !self.counted_by_coordinator {
            slot.counted.store(false, SeqCst);
        }
        slot.state.store(DETACHED, SeqCst);
        slot.losses.fetch_add(1, SeqCst);
        true
    }

    /// End every session (the node stops, or stops being the primary).
    pub fn shut_down_all(&self) {
        for slot in self.slots.iter() {
            if let Some(s) = slot.current.lock().expect("session lock").take() {
                s.close();
            }
        }
    }

    fn position(&self, f: impl Fn(&StandbyStatus) -> bool) -> Option<usize> {
        self.slots.iter().position(f)
    }

    /// Standbys that count and are attached (catching up or streaming), and of those, how
    /// many stream.
    pub fn counting(&self) -> (usize, usize) {
        let mut attached = 0;
        let mut streaming = 0;
        for slot in self.slots.iter().filter(|s| s.counts()) {
            match slot.state.load(SeqCst) {
                DETACHED => {}
                STREAMING => {
                    attached += 1;
                    streaming += 1;
                }
                _ => attached += 1,
            }
        }
        (attached, streaming)
    }

    /// Standbys whose acks count, attached or not (with etcd: those named in sync).
    pub fn named(&self) -> usize {
        self.slots.iter().filter(|s| s.counts()).count()
    }

    /// The replication as one state for the rule "k of them": `STREAMING` when k counting
    /// standbys stream, `CATCHING_UP` when k are attached, else `DETACHED`.
    pub fn state_for(&self, k: usize) -> u8 {
        let (attached, streaming) = self.counting();
        if streaming >= k {
            STREAMING
        } else if attached >= k {
            CATCHING_UP
        } else {
            DETACHED
        }
    }

    /// The furthest state of any standby, counting or not (`async` replication's state).
    pub fn best_state(&self) -> u8 {
        self.slots
            .iter()
            .map(|s| s.state.load(SeqCst))
            .max()
            .unwrap_or(DETACHED)
    }

    /// The highest sequence at least `k` counting standbys acked, each in its own mode. A
    /// detached one keeps its last acks: what it synced, it holds. 0 with fewer than `k`.
    pub fn acked_by(&self, k: usize) -> u64 {
        kth_highest(
            self.slots
                .iter()
                .filter(|s| s.counts())
                .map(StandbyStatus::acked),
            k,
        )
    }

    /// The same, leaving out the slot `without` (may its standby stop counting?).
    pub fn acked_by_without(&self, k: usize, without: usize) -> u64 {
        kth_highest(
            self.slots
                .iter()
                .enumerate()
                .filter(|&(i, s)| i != without && s.counts())
                .map(|(_, s)| s.acked()),
            k,
        )
    }

    /// The highest sequence at least `k` counting standbys that still stream hold in
    /// memory (what they received while following this node).
    pub fn received_by(&self, k: usize) -> u64 {
        kth_highest(
            self.slots
                .iter()
                .filter(|s| s.counts() && s.state.load(SeqCst) == STREAMING)
                .map(|s| s.received.load(SeqCst)),
            k,
        )
    }

    /// Over the attached standbys, counting or not: the `k`-th highest of `f` (the
    /// furthest-but-k−1, as `/metrics` shows how far the group got), or of all of them when
    /// fewer are attached; `None` when none is.
    pub fn attached_kth(&self, k: usize, f: impl Fn(&StandbyStatus) -> u64) -> Option<u64> {
        let attached = || {
            self.slots
                .iter()
                .filter(|s| s.state.load(SeqCst) != DETACHED)
        };
        let n = attached().count();
        (n > 0).then(|| kth_highest(attached().map(&f), k.min(n)))
    }

    /// The lowest sequence an attached standby synced (what the journal must keep for
    /// their catch-up), if one is attached.
    pub fn slowest_attached_durable(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter(|s| s.state.load(SeqCst) != DETACHED)
            .map(|s| s.durable.load(SeqCst))
            .min()
    }

    /// Summed over the slots: (sessions begun, losses).
    pub fn totals(&self) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(s, l), slot| {
            (s + slot.sessions.load(SeqCst), l + slot.losses.load(SeqCst))
        })
    }
}

/// The `k`-th highest of `values` (k ≥ 1); 0 when there are fewer than `k`. At most one
/// value per standby slot, so a small fixed array does.
fn kth_highest(values: impl Iterator<Item = u64>, k: usize) -> u64 {
    if k == 0 {
        return u64::MAX;
    }
    let mut top = [0u64; MAX_SLOTS];
    let mut n = 0;
    for v in values.take(MAX_SLOTS) {
        top[n] = v;
        n += 1;
    }
    if n < k {
        return 0;
    }
    let top = &mut top[..n];
    top.sort_unstable_by(|a, b| b.cmp(a));
    top[k - 1]
}

/// The most standby slots a primary may have (`replication.max_standbys`).
pub const MAX_SLOTS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for good in ["a", "dr-1", "site_b.2"] {
            assert!(valid_node_name(good), "{good}");
        }
        for bad in ["", "a b", "a,b", "a\"", "é", &"x".repeat(65)] {
            assert!(!valid_node_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_kth_highest_ack() {
        assert_eq!(kth_highest([5, 9, 7].into_iter(), 1), 9);
        assert_eq!(kth_highest([5, 9, 7].into_iter(), 2), 7);
        assert_eq!(kth_highest([5, 9, 7].into_iter(), 3), 5);
        assert_eq!(kth_highest([5, 9, 7].into_iter(), 4), 0, "fewer than k");
        assert_eq!(kth_highest(std::iter::empty(), 1), 0);
    }

    fn set(slot: &StandbyStatus, mode: AckMode, state: u8, received: u64, durable: u64) {
        slot.mode.store(mode.code(), SeqCst);
        slot.counted.store(true, SeqCst);
        slot.state.store(state, SeqCst);
        slot.received.store(received, SeqCst);
        slot.durable.store(durable, SeqCst);
        *slot.name.lock().unwrap() = format!("{mode:?}{received}");
    }

    #[test]
    fn k_of_n_counts_each_standby_in_its_own_mode_and_never_an_async_one() {
        let t = Standbys::new(4, AckMode::Durable, vec![], false);
        set(&t.slots[0], AckMode::Durable, STREAMING, 100, 90);
        set(&t.slots[1], AckMode::Received, STREAMING, 80, 10);
        set(&t.slots[2], AckMode::Async, STREAMING, 500, 500);
        assert_eq!(t.acked_by(1), 90);
        assert_eq!(t.acked_by(2), 80);
        assert_eq!(t.acked_by(3), 0, "the async standby never counts");
        assert_eq!(t.counting(), (2, 2));
        assert_eq!(t.state_for(2), STREAMING);
        assert_eq!(t.state_for(3), DETACHED);
        assert_eq!(t.received_by(2), 80);
        assert_eq!(t.acked_by_without(1, 0), 80);
        // One lost: its last acks still count (it synced them), but it is not attached.
        t.slots[0].state.store(DETACHED, SeqCst);
        assert_eq!(t.acked_by(1), 90);
        assert_eq!(t.state_for(1), STREAMING);
        assert_eq!(t.state_for(2), DETACHED);
        assert_eq!(t.received_by(1), 80, "only streaming standbys witness");
        // Not counted (etcd has not named it): it holds nothing back and releases nothing.
        t.slots[1].counted.store(false, SeqCst);
        assert_eq!(t.state_for(1), DETACHED);
        assert_eq!(t.slowest_attached_durable(), Some(10));
    }
}
