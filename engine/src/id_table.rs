//! A map from an order id to a slot number, sized once and never grown: open addressing
//! with Robin Hood linear probing (an entry never sits further from its home than the one it
//! passes), at most half full, and backward-shift deletion (no tombstones, so a long run of
//! inserts and removes never degrades it). Robin Hood order lets a lookup stop at an entry
//! closer to its home than the probe, and a removal stop at one sitting at its home — which
//! with dense ids is nearly every one: plain linear probing scanned the whole run of
//! neighbours on each removal (measured: a tenth of the replay time). The open-order book and the retired
//! orders find an order through one of these. Id 0 is never an order and marks an empty slot.
//!
//! The hash scatters neighbouring ids. A hash that kept them together (for the cache) was
//! tried and measured: the dense run of recent ids then meets older ids still held (orders
//! left to expire) in one long cluster that every insert probes to the end of — replay fell
//! from ~900k to ~100k records a second after a minute of sale. The engine prefetches the
//! home slot of the order the next request names, so the miss overlaps other work.

use crate::ids::OrderId;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    /// 0: empty.
    id: u64,
    slot: u32,
}

// SAFETY: two integers; all-zero is the empty entry.
unsafe impl crate::memory::Zeroable for Entry {}

#[derive(Clone, Debug)]
pub struct IdTable {
    entries: Vec<Entry>,
    len: usize,
    /// Entries this table was sized for; `insert` past it is a bug in the caller.
    capacity: usize,
}

impl IdTable {
    /// Room for `capacity` ids, allocated now (touched by `fault_in`).
    pub fn with_capacity(capacity: usize) -> IdTable {
        let slots = (capacity * 2).next_power_of_two().max(16);
        IdTable {
            entries: crate::memory::zeroed_vec(slots),
            len: 0,
            capacity,
        }
    }

    pub fn regions(&self, out: &mut Vec<crate::memory::Region>) {
        out.push(crate::memory::Region::of(&self.entries));
    }

    /// Touch every page now.
    pub fn fault_in(&mut self) {
        crate::memory::touch(&mut self.entries);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes this table holds.
    pub fn bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Entry>()
    }

    #[inline]
    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    #[inline]
    fn home(&self, id: u64) -> usize {
        // The high bits of a multiplicative hash are the well-mixed ones.
        (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.entries.len().trailing_zeros()))
            as usize
    }

    /// How far slot `i` is from the home of the entry in it.
    #[inline]
    fn distance(&self, i: usize, id: u64) -> usize {
        i.wrapping_sub(self.home(id)) & self.mask()
    }

    /// Where `id` is, if it is there.
    #[inline]
    fn find(&self, id: u64) -> Option<usize> {
        let mut i = self.home(id);
        let mut d = 0;
        loop {
            let e = self.entries[i];
            if e.id == id {
                return Some(i);
            }
            // Robin Hood: every entry from here on sits closer to its home than `id` would.
            if e.id == 0 || self.distance(i, e.id) < d {
                return None;
            }
            i = (i + 1) & self.mask();
            d += 1;
        }
    }

    #[inline]
    pub fn get(&self, id: OrderId) -> Option<u32> {
        if id.0 == 0 {
            return None;
        }
        self.find(id.0).map(|i| self.entries[i].slot)
    }

    /// Start loading the cache line `get(id)` will read first.
    #[inline]
    pub fn prefetch(&self, id: OrderId) {
        crate::memory::prefetch(&self.entries[self.home(id.0)]);
    }

    pub fn insert(&mut self, id: OrderId, slot: u32) {
        assert!(self.try_insert(id, slot), "order {id} indexed twice");
    }

    /// Index `id` at `slot`, in one pass; `false` (and nothing changed) if it is already
    /// indexed. (Robin Hood: were it there, it would lie before the first entry nearer its
    /// home than the probe, which is where an insert takes its place.)
    pub fn try_insert(&mut self, id: OrderId, slot: u32) -> bool {
        assert_ne!(id.0, 0, "order id 0 is never stored");
        assert!(self.len < self.capacity, "id table over its capacity");
        let mut carried = Entry { id: id.0, slot };
        let mut i = self.home(id.0);
        let mut d = 0;
        let mut placed = false;
        loop {
            let e = self.entries[i];
            if e.id == 0 {
                self.entries[i] = carried;
                break;
            }
            if !placed && e.id == id.0 {
                return false;
            }
            // Take the place of an entry nearer its home; carry that one on.
            let e_d = self.distance(i, e.id);
            if e_d < d {
                self.entries[i] = carried;
                carried = e;
                d = e_d;
                placed = true;
            }
            i = (i + 1) & self.mask();
            d += 1;
        }
        self.len += 1;
        true
    }

    /// Index many ids at once (a restore): the table's pages faulted in together, then the
    /// entries inserted in the order of their home slots, so the writes sweep the table once
    /// instead of missing the cache on every one. `false` if an id comes twice.
    pub fn bulk_insert(&mut self, entries: &mut [(OrderId, u32)]) -> bool {
        if entries.is_empty() {
            return true;
        }
        self.fault_in();
        entries.sort_unstable_by_key(|&(id, _)| (self.home(id.0), id.0));
        entries.iter().all(|&(id, slot)| self.try_insert(id, slot))
    }

    /// Point `id` at another slot (it is indexed already).
    pub fn update(&mut self, id: OrderId, slot: u32) {
        let i = self.find(id.0).expect("the order is indexed");
        self.entries[i].slot = slot;
    }

    pub fn remove(&mut self, id: OrderId) -> Option<u32> {
        if id.0 == 0 {
            return None;
        }
        let mut hole = self.find(id.0)?;
        let slot = self.entries[hole].slot;
        self.len -= 1;
        // Shift back the entries after it that are away from home, up to an empty slot or
        // one at its home (Robin Hood order: nothing after that belongs before it).
        loop {
            let j = (hole + 1) & self.mask();
            let e = self.entries[j];
            if e.id == 0 || self.distance(j, e.id) == 0 {
                break;
            }
            self.entries[hole] = e;
            hole = j;
        }
        self.entries[hole] = Entry::default();
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn agrees_with_a_btreemap_through_inserts_and_removes() {
        let mut table = IdTable::with_capacity(5_000);
        let mut model = BTreeMap::<u64, u32>::new();
        let mut x = 99u64;
        for step in 0..if cfg!(miri) { 2_000 } else { 200_000 } {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = 1 + x % 8_000;
            match model.get(&id) {
                Some(&slot) => {
                    assert_eq!(table.get(OrderId(id)), Some(slot), "step {step}");
                    if x.is_multiple_of(3) {
                        table.update(OrderId(id), slot + 1);
                        model.insert(id, slot + 1);
                    } else {
                        assert_eq!(table.remove(OrderId(id)), Some(slot));
                        model.remove(&id);
                    }
                }
                None => {
                    assert_eq!(table.get(OrderId(id)), None, "step {step}");
                    if model.len() < 5_000 {
                        table.insert(OrderId(id), step as u32);
                        model.insert(id, step as u32);
                    }
                }
            }
            assert_eq!(table.len(), model.len());
        }
        for (&id, &slot) in &model {
            assert_eq!(table.get(OrderId(id)), Some(slot));
        }
        assert_eq!(table.get(OrderId(0)), None);
    }
}
