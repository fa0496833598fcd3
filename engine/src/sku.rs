//! The catalog: SKUs with price, limits, sale window, and their stock split into
//! available / reserved / sold. The invariant `available + reserved + sold == stocked` holds
//! after every command; `Sku::check_balanced` says so loudly when it does not.

use rustc_hash::FxHashMap;

use crate::command::SaleWindow;
use crate::ids::{Money, SkuId, TimestampNs, Units};
use crate::release_history::ReleaseHistory;
use crate::tracked::Tracked;
use crate::waitlist::Waitlist;

#[derive(Clone, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Sku {
    pub id: SkuId,
    pub price: Money,
    pub per_user_limit: u32,
    pub sale_window: Option<SaleWindow>,
    pub listed: bool,
    pub stocked: Units,
    pub available: Units,
    pub reserved: Units,
    pub sold: Units,
    pub waitlist: Waitlist,
    pub releases: ReleaseHistory,
    /// The holdings stamp of this SKU's last reset (delisted, or re-listed after its sale
    /// window ended): holdings and order lines of an earlier stamp no longer count.
    pub holdings_since: u32,
}

impl Sku {
    /// What fills a catalog position no SKU took (never read).
    pub(crate) fn vacant() -> Sku {
        Sku {
            id: SkuId(0),
            price: 0,
            per_user_limit: 0,
            sale_window: None,
            listed: false,
            stocked: 0,
            available: 0,
            reserved: 0,
            sold: 0,
            waitlist: Waitlist::default(),
            releases: ReleaseHistory::default(),
            holdings_since: 0,
        }
    }

    pub fn is_balanced(&self) -> bool {
        self.available
            .checked_add(self.reserved)
            .and_then(|n| n.checked_add(self.sold))
            == Some(self.stocked)
    }

    /// Stop loudly: a broken stock invariant means the engine can no longer be trusted.
    #[inline]
    pub fn check_balanced(&self) {
        assert!(
            self.is_balanced(),
            "stock invariant broken for SKU {}: available {} + reserved {} + sold {} != stocked {}",
            self.id,
            self.available,
            self.reserved,
            self.sold,
            self.stocked
        );
    }

    /// Whether its sale window has ended by `now_ns` (no order is taken until it is reset).
    pub fn window_ended(&self, now_ns: TimestampNs) -> bool {
        self.sale_window.is_some_and(|w| now_ns >= w.end_ns)
    }

    pub fn window_allows(&self, now_ns: TimestampNs) -> Result<(), crate::code::Code> {
        match self.sale_window {
            Some(w) if now_ns < w.start_ns => Err(crate::code::Code::SaleNotStarted),
            Some(w) if now_ns >= w.end_ns => Err(crate::code::Code::SaleEnded),
            _ => Ok(()),
        }
    }

    pub fn reserve(&mut self, qty: Units) {
        self.available = self
            .available
            .checked_sub(qty)
            .expect("reserve beyond available");
        self.reserved += qty;
    }

    pub fn release(&mut self, qty: Units) {
        self.reserved = self
            .reserved
            .checked_sub(qty)
            .expect("release beyond reserved");
        self.available += qty;
    }

    pub fn sell(&mut self, qty: Units) {
        self.reserved = self
            .reserved
            .checked_sub(qty)
            .expect("sell beyond reserved");
        self.sold += qty;
    }
}

/// Index of a SKU in the catalog's dense array.
pub type SkuIndex = u32;

#[derive(Clone, Debug)]
pub struct Catalog {
    skus: Tracked<Sku>,
    /// Derived from `skus` (rebuilt after a checkpoint is restored).
    index: FxHashMap<SkuId, SkuIndex>,
}

impl Catalog {
    /// Room for `skus_max` SKUs: the index is sized now; the SKUs themselves are kept in a
    /// vector reserved to that size.
    pub fn with_capacity(skus_max: usize) -> Catalog {
        let mut index = FxHashMap::default();
        index.reserve(skus_max);
        Catalog {
            skus: Tracked::with_capacity(skus_max, Sku::vacant()),
            index,
        }
    }

    pub fn bytes(&self) -> usize {
        self.skus.capacity() * std::mem::size_of::<Sku>()
            + self.index.capacity() * (std::mem::size_of::<(SkuId, SkuIndex)>() + 1)
    }

    pub fn from_skus(skus: Vec<Sku>, skus_max: usize) -> Result<Catalog, &'static str> {
        if skus.len() > skus_max {
            return Err("more SKUs than skus_max");
        }
        let mut catalog = Catalog::with_capacity(skus_max);
        for sku in skus {
            if catalog.find(sku.id).is_some() {
                return Err("a SKU appears twice in the catalog");
            }
            catalog.insert(sku);
        }
        Ok(catalog)
    }

    pub fn len(&self) -> usize {
        self.skus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.skus.is_empty()
    }

    #[inline]
    pub fn find(&self, id: SkuId) -> Option<SkuIndex> {
        self.index.get(&id).copied()
    }

    pub fn get(&self, id: SkuId) -> Option<&Sku> {
        self.find(id).map(|i| &self.skus[i as usize])
    }

    #[inline]
    pub fn at(&self, index: SkuIndex) -> &Sku {
        &self.skus[index as usize]
    }

    #[inline]
    pub fn at_mut(&mut self, index: SkuIndex) -> &mut Sku {
        &mut self.skus[index as usize]
    }

    pub fn insert(&mut self, sku: Sku) -> SkuIndex {
        let index = self.skus.len() as SkuIndex;
        let previous = self.index.insert(sku.id, index);
        assert!(previous.is_none(), "SKU {} inserted twice", sku.id);
        self.skus.push(sku);
        index
    }

    pub fn iter(&self) -> impl Iterator<Item = &Sku> {
        self.skus.as_slice().iter()
    }

    pub fn skus(&self) -> &[Sku] {
        self.skus.as_slice()
    }

    pub(crate) fn table(&mut self) -> &mut Tracked<Sku> {
        &mut self.skus
    }

    /// A checkpoint's chunks are in the table, `len` SKUs: index them and their waitlists.
    pub(crate) fn restore_len(&mut self, len: u64) -> Result<(), &'static str> {
        self.skus
            .restore_len(usize::try_from(len).map_err(|_| "too many SKUs")?)?;
        self.index.clear();
        for i in 0..self.skus.len() {
            let id = self.skus[i].id;
            if self.index.insert(id, i as SkuIndex).is_some() {
                return Err("a SKU appears twice in the catalog");
            }
            self.skus[i].waitlist.rebuild_index()?;
        }
        Ok(())
    }
}
