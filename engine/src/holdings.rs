//! Units each user holds per SKU (open orders + paid orders + waitlist entries), for the
//! per-user purchase limit. A user with nothing held has no entry, so the map stays as
//! small as the set of active buyers.

use rustc_hash::FxHashMap;

use crate::ids::{SkuId, UserId};

#[derive(Clone, Debug, Default)]
pub struct Holdings {
    units: FxHashMap<(UserId, SkuId), u32>,
}

impl Holdings {
    pub fn get(&self, user: UserId, sku: SkuId) -> u32 {
        self.units.get(&(user, sku)).copied().unwrap_or(0)
    }

    pub fn add(&mut self, user: UserId, sku: SkuId, qty: u32) {
        let held = self.units.entry((user, sku)).or_insert(0);
        *held = held.checked_add(qty).expect("holdings overflow u32");
    }

    pub fn remove(&mut self, user: UserId, sku: SkuId, qty: u32) {
        let held = self
            .units
            .get_mut(&(user, sku))
            .expect("releasing units that were never held");
        *held = held.checked_sub(qty).expect("releasing more than held");
        if *held == 0 {
            self.units.remove(&(user, sku));
        }
    }

    /// Every entry, sorted: a deterministic order for snapshots.
    pub fn to_sorted_vec(&self) -> Vec<(UserId, SkuId, u32)> {
        let mut all: Vec<_> = self.units.iter().map(|(&(u, s), &q)| (u, s, q)).collect();
        all.sort_unstable();
        all
    }

    pub fn from_entries(entries: &[(UserId, SkuId, u32)]) -> Holdings {
        let mut holdings = Holdings::default();
        holdings.units.reserve(entries.len());
        for &(user, sku, qty) in entries {
            holdings.units.insert((user, sku), qty);
        }
        holdings
    }

    pub fn len(&self) -> usize {
        self.units.len()
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}
