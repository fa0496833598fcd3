//! Units each user holds per SKU, for the per-user purchase limit: open and paid orders plus
//! waitlist entries, for SKUs that had a limit when the order was placed. Sized once from
//! `holdings_max`; a new entry past it is refused (`HOLDINGS_CAPACITY_FULL`).
//!
//! Entries live as long as the limit needs them. A SKU's holdings are reset when it is
//! delisted, or re-listed after its sale window ended: the SKU takes a new stamp
//! (`Sku::holdings_since`) and every entry carrying an older one reads as nothing. A sweep
//! that visits a few slots per command removes such stale entries, and those of SKUs whose
//! sale window has ended (no order is taken for them until a reset), so the table holds only
//! what may still be asked. The sweep is part of the state: replay and snapshots see the
//! same table.
//!
//! In a flash sale nearly every order comes from a buyer not seen before, so this lookup is
//! a cache miss on every PlaceOrder — once the engine's largest single cost (measured with
//! perf: ~45% of the hot path with a std `HashMap`). Hence a small open-addressing table of
//! its own with a `prefetch` the engine stage calls for the *next* request while it applies
//! this one. Linear probing, backward-shift deletion (no tombstones), a fixed multiplicative
//! hash (deterministic), at most 70% full.

use crate::ids::{SkuId, UserId};
use crate::tracked::Tracked;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Holding {
    pub user: UserId,
    pub sku: SkuId,
    /// 0 marks an empty slot: an entry is removed when its units reach 0.
    pub units: u32,
    /// The SKU's holdings stamp when the entry was made.
    pub since: u32,
}

const _: () = assert!(std::mem::size_of::<Holding>() == 24);

// SAFETY: integers only; all-zero is an empty slot.
unsafe impl crate::memory::Zeroable for Holding {}

/// The holdings table's scalars in a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HoldingsHead {
    pub len: u64,
    pub cursor: u64,
}

/// A holding the table has no room for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldingsFull;

#[derive(Clone, Debug)]
pub struct Holdings {
    slots: Tracked<Holding>,
    len: usize,
    max: usize,
    /// The next slot the sweep visits.
    cursor: usize,
}

impl Holdings {
    /// Room for `max` entries at most 70% full, allocated now (touched by `fault_in`).
    pub fn with_capacity(max: usize) -> Holdings {
        let slots = (max * 10 / 7 + 1).next_power_of_two().max(16);
        Holdings {
            slots: Tracked::from_vec(crate::memory::zeroed_vec(slots), slots, Holding::default()),
            len: 0,
            max,
            cursor: 0,
        }
    }

    pub fn regions(&self, out: &mut Vec<crate::memory::Region>) {
        out.push(self.slots.region());
    }

    /// Touch every page now.
    pub fn fault_in(&mut self) {
        self.slots.fault_in();
    }

    #[inline]
    fn home(&self, user: UserId, sku: SkuId) -> usize {
        let mixed = (user.0 ^ sku.0.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // High bits are the well-mixed ones; the capacity is a power of two.
        (mixed >> (64 - self.slots.len().trailing_zeros())) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Where the entry is, or the empty slot where it would go.
    #[inline]
    fn probe(&self, user: UserId, sku: SkuId) -> (usize, bool) {
        let mut i = self.home(user, sku);
        loop {
            let slot = &self.slots[i];
            if slot.units == 0 {
                return (i, false);
            }
            if slot.user == user && slot.sku == sku {
                return (i, true);
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Start loading the cache line `get`/`add` will need for this key.
    #[inline]
    pub fn prefetch(&self, user: UserId, sku: SkuId) {
        crate::memory::prefetch(&self.slots[self.home(user, sku)]);
    }

    /// Units held under the SKU's current stamp `since`.
    #[inline]
    pub fn get(&self, user: UserId, sku: SkuId, since: u32) -> u32 {
        match self.probe(user, sku) {
            (i, true) if self.slots[i].since == since => self.slots[i].units,
            _ => 0,
        }
    }

    /// Whether adding to (user, sku) would take a new entry (none there, stale or not).
    pub fn needs_entry(&self, user: UserId, sku: SkuId) -> bool {
        !self.probe(user, sku).1
    }

    /// Whether `extra` more entries fit.
    pub fn has_room(&self, extra: usize) -> bool {
        self.len + extra <= self.max
    }

    pub fn add(
        &mut self,
        user: UserId,
        sku: SkuId,
        qty: u32,
        since: u32,
    ) -> Result<(), HoldingsFull> {
        assert!(qty > 0, "holding zero units");
        let (i, found) = self.probe(user, sku);
        if found {
            let slot = &mut self.slots[i];
            if slot.since == since {
                slot.units = slot.units.checked_add(qty).expect("holdings overflow u32");
            } else {
                // A stale entry of an earlier stamp: it held nothing that counts.
                *slot = Holding {
                    user,
                    sku,
                    units: qty,
                    since,
                };
            }
            return Ok(());
        }
        if self.len >= self.max {
            return Err(HoldingsFull);
        }
        self.slots[i] = Holding {
            user,
            sku,
            units: qty,
            since,
        };
        self.len += 1;
        Ok(())
    }

    /// Take `qty` units back under stamp `since`. `false` if there was no such entry (the
    /// sweep removed it after the SKU's sale window ended): nothing to take.
    pub fn remove(&mut self, user: UserId, sku: SkuId, qty: u32, since: u32) -> bool {
        let (i, found) = self.probe(user, sku);
        if !found || self.slots[i].since != since {
            return false;
        }
        let held = &mut self.slots[i].units;
        *held = held.checked_sub(qty).expect("releasing more than held");
        if *held == 0 {
            self.delete_at(i);
        }
        true
    }

    /// Empty slot `hole`, then pull back any later entry of the same run that may live there,
    /// so every entry stays reachable from its home without tombstones.
    fn delete_at(&mut self, mut hole: usize) {
        self.slots[hole].units = 0;
        self.len -= 1;
        let mut j = (hole + 1) & self.mask();
        while self.slots[j].units != 0 {
            let home = self.home(self.slots[j].user, self.slots[j].sku);
            // Move it if the hole lies between its home and where it sits (cyclically).
            if (j.wrapping_sub(home) & self.mask()) >= (j.wrapping_sub(hole) & self.mask()) {
                self.slots[hole] = self.slots[j];
                self.slots[j].units = 0;
                hole = j;
            }
            j = (j + 1) & self.mask();
        }
    }

    /// Visit the next `visits` slots and remove the entries `dead` says are no longer needed.
    /// A removal can pull a later entry back into the slot just visited; it is looked at on
    /// the next lap.
    pub fn sweep(&mut self, visits: usize, mut dead: impl FnMut(&Holding) -> bool) {
        for _ in 0..visits {
            let i = self.cursor;
            self.cursor = (self.cursor + 1) & self.mask();
            if self.slots[i].units != 0 && dead(&self.slots[i]) {
                self.delete_at(i);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(self.slots.as_slice())
    }

    /// Every entry with its slot, in slot order, and the sweep's cursor: the table exactly,
    /// for a snapshot (the layout decides what the sweep meets next).
    pub fn image(&self) -> (Vec<(u32, Holding)>, u32) {
        (self.entries().collect(), self.cursor())
    }

    /// The entries `image()` lists, without collecting them (`len()` of them).
    pub fn entries(&self) -> impl Iterator<Item = (u32, Holding)> + Clone + '_ {
        self.slots
            .as_slice()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.units > 0)
            .map(|(i, s)| (i as u32, *s))
    }

    /// The sweep's cursor, as `image()` gives it.
    pub fn cursor(&self) -> u32 {
        self.cursor as u32
    }

    /// The table an `image` describes, for `max` entries.
    pub fn from_image(
        max: usize,
        entries: impl ExactSizeIterator<Item = (u32, Holding)> + Clone,
        cursor: u32,
    ) -> Result<Holdings, &'static str> {
        let mut table = Holdings::with_capacity(max);
        if entries.len() > max || cursor as usize >= table.slots.len() {
            return Err("holdings larger than holdings_max");
        }
        for (at, holding) in entries.clone() {
            let at = at as usize;
            if at >= table.slots.len() {
                return Err("a holding lies outside the table");
            }
            if holding.units == 0 || table.slots[at].units != 0 {
                return Err("holdings hold an empty or repeated entry");
            }
            table.slots[at] = holding;
        }
        table.len = entries.len();
        table.cursor = cursor as usize;
        // Every entry must be where a lookup finds it.
        for (at, h) in entries {
            if table.probe(h.user, h.sku) != (at as usize, true) {
                return Err("a holding is not where its key leads");
            }
        }
        Ok(table)
    }

    /// The table's scalars, for a checkpoint (its slots travel as chunks).
    pub(crate) fn head(&self) -> HoldingsHead {
        HoldingsHead {
            len: self.len as u64,
            cursor: self.cursor as u64,
        }
    }

    pub(crate) fn table(&mut self) -> &mut Tracked<Holding> {
        &mut self.slots
    }

    /// A checkpoint's chunks are in the slots: take its scalars and check that every entry
    /// is counted and where its key leads.
    pub(crate) fn restore_head(&mut self, head: &HoldingsHead) -> Result<(), &'static str> {
        if head.len > self.max as u64 || head.cursor >= self.slots.len() as u64 {
            return Err("holdings larger than holdings_max, or the sweep outside the table");
        }
        let mut len = 0u64;
        for (at, h) in self.entries() {
            if self.probe(h.user, h.sku) != (at as usize, true) {
                return Err("a holding is not where its key leads");
            }
            len += 1;
        }
        if len != head.len {
            return Err("the holdings count disagrees with the entries");
        }
        (self.len, self.cursor) = (head.len as usize, head.cursor as usize);
        Ok(())
    }

    /// Units per (user, sku) of entries under the given stamp, sorted (for checks).
    pub fn current(&self, since_of: impl Fn(SkuId) -> Option<u32>) -> Vec<(UserId, SkuId, u32)> {
        let mut all: Vec<_> = self
            .slots
            .as_slice()
            .iter()
            .filter(|s| s.units > 0 && since_of(s.sku) == Some(s.since))
            .map(|s| (s.user, s.sku, s.units))
            .collect();
        all.sort_unstable();
        all
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn agrees_with_a_btreemap_through_inserts_and_deletes() {
        let mut table = Holdings::with_capacity(10_000);
        let mut model = BTreeMap::<(UserId, SkuId), u32>::new();
        let mut x = 12345u64;
        for step in 0..if cfg!(miri) { 2_000 } else { 200_000 } {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (UserId(x % 3000), SkuId(x / 3000 % 3));
            let held = model.get(&key).copied().unwrap_or(0);
            assert_eq!(table.get(key.0, key.1, 0), held, "step {step}");
            if held > 0 && x.is_multiple_of(3) {
                let qty = 1 + (x / 7 % held as u64) as u32;
                assert!(table.remove(key.0, key.1, qty, 0));
                if held == qty {
                    model.remove(&key);
                } else {
                    model.insert(key, held - qty);
                }
            } else {
                table.add(key.0, key.1, 1 + (x % 3) as u32, 0).unwrap();
                *model.entry(key).or_default() += 1 + (x % 3) as u32;
            }
            assert_eq!(table.len(), model.len());
        }
        let sorted: Vec<_> = model.iter().map(|(&(u, s), &q)| (u, s, q)).collect();
        assert_eq!(table.current(|_| Some(0)), sorted);
        let (entries, cursor) = table.image();
        let copy = Holdings::from_image(10_000, entries.iter().copied(), cursor).unwrap();
        assert_eq!(copy.image(), table.image());
    }

    #[test]
    fn stale_entries_read_as_nothing_and_the_sweep_removes_them() {
        let (u, sku) = (UserId(1), SkuId(7));
        let mut table = Holdings::with_capacity(2);
        table.add(u, sku, 2, 0).unwrap();
        table.add(UserId(2), sku, 1, 0).unwrap();
        assert_eq!(table.add(UserId(3), sku, 1, 0), Err(HoldingsFull));
        assert_eq!(table.get(u, sku, 1), 0, "the SKU was reset: stamp 1");
        assert!(!table.remove(u, sku, 2, 1), "nothing held under stamp 1");
        table.add(u, sku, 1, 1).unwrap();
        assert_eq!(table.get(u, sku, 1), 1, "a stale entry is reused");
        let slots = table.slots.len();
        table.sweep(slots, |h| h.since != 1);
        assert_eq!(table.len(), 1);
        table.add(UserId(3), sku, 1, 1).unwrap();
        assert_eq!(table.len(), 2);
    }
}
