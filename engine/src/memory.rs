//! Memory at start-up. Every table is allocated at its configured size when the engine is
//! made, as zeroed pages the kernel maps lazily (so a test's small engine costs nothing for
//! limits it never reaches); `Engine::fault_in` then touches them all before the first order,
//! the way a trading system allocates at start-up: a page fault (and the kernel zeroing a
//! page) on the hot path was measured at about a third of the PlaceOrder cost on this kind of
//! VM. And prefetching: starting a load early so its miss overlaps work.

/// Types whose all-zero bytes are a valid value (integers and structs of them).
///
/// # Safety
/// Implement only for types for which every field's all-zero bit pattern is valid.
pub(crate) unsafe trait Zeroable: Copy {}

/// `n` zeroed values, allocated but not touched (the kernel's zero pages until written).
pub(crate) fn zeroed_vec<T: Zeroable>(n: usize) -> Vec<T> {
    if n == 0 || std::mem::size_of::<T>() == 0 {
        return Vec::new();
    }
    let layout = std::alloc::Layout::array::<T>(n).expect("table size overflows");
    // SAFETY: the layout has a non-zero size (checked above); a null return is handled.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `n` values of
    // `T`; all-zero bytes are a valid `T` (`Zeroable`), so all `n` are initialised.
    unsafe { Vec::from_raw_parts(ptr, n, n) }
}

/// Make every page of `items` resident now (huge pages where the kernel allows), else write
/// one element per page. (`vec![x; n]` of zeroes maps untouched zero pages; the first real
/// write would fault.)
pub(crate) fn touch<T: Copy>(items: &mut [T]) {
    if populate(items.as_mut_ptr().cast(), std::mem::size_of_val(items)) {
        return;
    }
    let per_page = (4096 / std::mem::size_of::<T>().max(1)).max(1);
    for item in items.iter_mut().step_by(per_page) {
        *item = std::hint::black_box(*item);
    }
}

/// Reserve room for `additional` more elements in `vec` and fault all its pages in: at once
/// where the kernel allows (`madvise(MADV_POPULATE_WRITE)`, one call instead of a fault per
/// page), else by writing `filler` through the spare room. (Asking for 2 MiB pages as well
/// was measured slower here: 3.9 s against 2.7 s for 1.7 GB, the kernel compacting memory.)
pub(crate) fn reserve_touched<T: Clone>(vec: &mut Vec<T>, additional: usize, filler: T) {
    vec.reserve_exact(additional);
    let bytes = vec.capacity() * std::mem::size_of::<T>();
    if populate(vec.as_mut_ptr().cast(), bytes) {
        return;
    }
    let len = vec.len();
    vec.resize(len + additional, filler);
    vec.truncate(len);
}

/// How much one `madvise` faults in (about 2 ms of the kernel's work on this kind of VM).
#[cfg(target_os = "linux")]
const POPULATE_CHUNK: usize = 4 << 20;

/// Back `len` bytes at `start` with resident pages now. Whether the kernel did it. Only
/// advice: no byte the program can see changes, so it may run on another thread than the one
/// using the memory (the server faults a running engine's tables in that way).
fn populate(start: *mut u8, len: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let first = (start as usize).div_ceil(PAGE) * PAGE;
        let last = (start as usize + len) / PAGE * PAGE;
        if last <= first {
            return true; // less than a page: the caller's writes fault it in cheaply
        }
        // In chunks: each call holds the process's memory-map lock, and a thread that maps
        // memory meanwhile (an allocator growing, a journal segment) waits for it. Whole
        // tables at once stalled the serving pipeline for 250-325 ms while the snapshotter
        // faulted its engine in.
        for chunk in (first..last).step_by(POPULATE_CHUNK) {
            let span = POPULATE_CHUNK.min(last - chunk);
            // SAFETY: advice about the backing pages of part of a range the caller names as
            // one allocation it owns; no byte the program can see changes.
            if unsafe { libc::madvise(chunk as *mut libc::c_void, span, libc::MADV_POPULATE_WRITE) }
                != 0
            {
                return false;
            }
        }
        true
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (start, len);
        false
    }
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

/// One table's whole allocation (its capacity, in use or not), to fault in from anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    start: usize,
    len: usize,
}

impl Region {
    /// The allocation behind `vec`: its full capacity. Valid while `vec` is neither dropped
    /// nor reallocated (engine tables never are: their capacity is fixed at start-up).
    pub(crate) fn of<T>(vec: &Vec<T>) -> Region {
        Region {
            start: vec.as_ptr() as usize,
            len: vec.capacity() * std::mem::size_of::<T>(),
        }
    }

    /// The first `n` elements of `vec`'s allocation (`n` at most its capacity).
    pub(crate) fn of_prefix<T>(vec: &Vec<T>, n: usize) -> Region {
        assert!(n <= vec.capacity(), "a prefix within the allocation");
        Region {
            start: vec.as_ptr() as usize,
            len: n * std::mem::size_of::<T>(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Split into pieces of at most `piece` bytes (to fault in a bit at a time).
    pub fn pieces(self, piece: usize) -> impl Iterator<Item = Region> {
        let piece = piece.max(4096);
        (0..self.len).step_by(piece).map(move |at| Region {
            start: self.start + at,
            len: piece.min(self.len - at),
        })
    }

    /// Make its pages resident. Whether the kernel did it (else they fault in on first use).
    pub fn populate(self) -> bool {
        populate(self.start as *mut u8, self.len)
    }
}
