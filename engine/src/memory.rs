//! Faulting memory in at start-up. A table that grows during a sale pays a page fault (and the
//! kernel zeroing a page) every few dozen entries, on the hot path: measured at about a third
//! of the PlaceOrder cost on this kind of VM. `Engine::preallocate` sizes the big tables for
//! the expected sale and touches their pages before the first order, the way a trading system
//! allocates at start-up. And prefetching: starting a load early so its miss overlaps work.

/// Write one element per page so every page of `items` is resident now. (`vec![x; n]` of
/// zeroes maps untouched zero pages; the first real write would fault.)
pub(crate) fn touch<T: Copy>(items: &mut [T]) {
    let per_page = (4096 / std::mem::size_of::<T>().max(1)).max(1);
    for item in items.iter_mut().step_by(per_page) {
        *item = std::hint::black_box(*item);
    }
}

/// Reserve room for `additional` more elements in `vec` and fault the pages in.
pub(crate) fn reserve_touched<T: Clone>(vec: &mut Vec<T>, additional: usize, filler: T) {
    let len = vec.len();
    vec.resize(len + additional, filler);
    vec.truncate(len);
}

/// Start loading the cache line holding `item`. Only a hint: never faults, changes nothing.
#[inline]
pub(crate) fn prefetch<T>(item: &T) {
    let address: *const T = item;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE (always present on x86_64) and is only a hint: it
    // never faults and never changes memory, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
