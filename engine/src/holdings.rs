//! Units each user holds per SKU (open orders + paid orders + waitlist entries), for the
//! per-user purchase limit. A user with nothing held has no entry, so the table stays as
//! small as the set of active buyers.
//!
//! In a flash sale nearly every order comes from a buyer not seen before, so this lookup is
//! a cache miss on every PlaceOrder — the engine's largest single cost (measured with perf:
//! ~45% of the hot path with a std `HashMap`). Hence a small open-addressing table of its own
//! with a `prefetch` the engine stage calls for the *next* request while it applies this one,
//! so the miss overlaps useful work. Linear probing, backward-shift deletion (no tombstones),
//! a fixed multiplicative hash (deterministic), at most 70% full.

use crate::ids::{SkuId, UserId};

const CAPACITY_MIN: usize = 1024;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    user: UserId,
    sku: SkuId,
    /// 0 marks an empty slot: an entry is removed when its units reach 0.
    units: u32,
}

#[derive(Clone, Debug)]
pub struct Holdings {
    slots: Vec<Slot>,
    len: usize,
}

impl Default for Holdings {
    fn default() -> Self {
        Holdings {
            slots: vec![Slot::default(); CAPACITY_MIN],
            len: 0,
        }
    }
}

impl Holdings {
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

    #[inline]
    pub fn get(&self, user: UserId, sku: SkuId) -> u32 {
        match self.probe(user, sku) {
            (i, true) => self.slots[i].units,
            (_, false) => 0,
        }
    }

    pub fn add(&mut self, user: UserId, sku: SkuId, qty: u32) {
        assert!(qty > 0, "holding zero units");
        let (i, found) = self.probe(user, sku);
        if found {
            let held = &mut self.slots[i].units;
            *held = held.checked_add(qty).expect("holdings overflow u32");
            return;
        }
        if (self.len + 1) * 10 > self.slots.len() * 7 {
            self.grow();
            return self.add(user, sku, qty);
        }
        self.slots[i] = Slot {
            user,
            sku,
            units: qty,
        };
        self.len += 1;
    }

    pub fn remove(&mut self, user: UserId, sku: SkuId, qty: u32) {
        let (i, found) = self.probe(user, sku);
        assert!(found, "releasing units that were never held");
        let held = &mut self.slots[i].units;
        *held = held.checked_sub(qty).expect("releasing more than held");
        if *held == 0 {
            self.delete_at(i);
        }
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

    fn grow(&mut self) {
        let doubled = vec![Slot::default(); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.len = 0;
        for slot in old.into_iter().filter(|s| s.units > 0) {
            self.add(slot.user, slot.sku, slot.units);
        }
    }

    /// Size the table for `entries` without growing, and touch its memory now.
    pub fn preallocate(&mut self, entries: usize) {
        while entries * 10 > self.slots.len() * 7 {
            self.grow();
        }
        crate::memory::touch(&mut self.slots);
    }

    /// Every entry, sorted: a deterministic order for snapshots.
    pub fn to_sorted_vec(&self) -> Vec<(UserId, SkuId, u32)> {
        let mut all: Vec<_> = self
            .slots
            .iter()
            .filter(|s| s.units > 0)
            .map(|s| (s.user, s.sku, s.units))
            .collect();
        all.sort_unstable();
        all
    }

    pub fn from_entries(entries: &[(UserId, SkuId, u32)]) -> Result<Holdings, &'static str> {
        let mut holdings = Holdings::default();
        for &(user, sku, qty) in entries {
            if qty == 0 || holdings.get(user, sku) != 0 {
                return Err("holdings hold an empty or repeated entry");
            }
            holdings.add(user, sku, qty);
        }
        Ok(holdings)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn agrees_with_a_btreemap_through_inserts_and_deletes() {
        let mut table = Holdings::default();
        let mut model = BTreeMap::<(UserId, SkuId), u32>::new();
        let mut x = 12345u64;
        for step in 0..if cfg!(miri) { 2_000 } else { 200_000 } {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (UserId(x % 3000), SkuId(x / 3000 % 3));
            let held = model.get(&key).copied().unwrap_or(0);
            assert_eq!(table.get(key.0, key.1), held, "step {step}");
            if held > 0 && x.is_multiple_of(3) {
                let qty = 1 + (x / 7 % held as u64) as u32;
                table.remove(key.0, key.1, qty);
                if held == qty {
                    model.remove(&key);
                } else {
                    model.insert(key, held - qty);
                }
            } else {
                table.add(key.0, key.1, 1 + (x % 3) as u32);
                *model.entry(key).or_default() += 1 + (x % 3) as u32;
            }
            assert_eq!(table.len(), model.len());
        }
        let sorted: Vec<_> = model.iter().map(|(&(u, s), &q)| (u, s, q)).collect();
        assert_eq!(table.to_sorted_vec(), sorted);
        assert_eq!(
            Holdings::from_entries(&sorted).unwrap().to_sorted_vec(),
            sorted
        );
    }
}
