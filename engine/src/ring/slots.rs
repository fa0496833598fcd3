//! The ring's storage: a power-of-two array of slots, allocated once at start-up and reused
//! forever. Sequence `s` lives in slot `s & mask`. The array does no synchronisation of its
//! own; the cursors and the claim/read rules in `producer` and `consumer` decide who may touch
//! a slot when.

use std::cell::UnsafeCell;

pub(crate) struct Slots<T> {
    slots: Box<[UnsafeCell<T>]>,
    mask: u64,
}

// SAFETY: slots are handed out by the producer/consumer protocol so that a slot is either
// written by the one producer or read by consumers, never both at once; `T: Send` lets the
// value move between those threads, `T: Sync` lets several consumers read it at once.
unsafe impl<T: Send + Sync> Sync for Slots<T> {}
// SAFETY: as above; owning the array on another thread just moves the `T`s.
unsafe impl<T: Send> Send for Slots<T> {}

impl<T> Slots<T> {
    pub(crate) fn new(capacity: usize, mut fill: impl FnMut() -> T) -> Slots<T> {
        assert!(
            capacity.is_power_of_two(),
            "ring capacity must be a power of two"
        );
        assert!(capacity >= 2, "a ring needs at least two slots");
        let slots = (0..capacity).map(|_| UnsafeCell::new(fill())).collect();
        Slots {
            slots,
            mask: capacity as u64 - 1,
        }
    }

    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// SAFETY (caller): no one else holds a reference to this sequence's slot: the producer
    /// has claimed it and no consumer can see it yet.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get_mut(&self, sequence: u64) -> &mut T {
        // SAFETY: the index is masked into bounds; exclusivity is the caller's promise.
        unsafe {
            &mut *self
                .slots
                .get_unchecked((sequence & self.mask) as usize)
                .get()
        }
    }

    /// SAFETY (caller): the sequence is published and the producer cannot reclaim it until the
    /// caller's cursor passes it.
    #[inline]
    pub(crate) unsafe fn get(&self, sequence: u64) -> &T {
        // SAFETY: the index is masked into bounds; no writer exists by the caller's promise.
        unsafe {
            &*self
                .slots
                .get_unchecked((sequence & self.mask) as usize)
                .get()
        }
    }
}
