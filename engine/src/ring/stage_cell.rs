//! `StageCell`: a value inside a ring slot that one stage writes for the stages after it
//! (the engine stage writes each slot's answer; the release gate, which follows it, reads it).
//! The ring hands out slots as shared references, because several stages read one slot at
//! once; this cell is the one place a stage may write through one.

use std::cell::UnsafeCell;

#[derive(Default)]
pub struct StageCell<T> {
    value: UnsafeCell<T>,
}

// SAFETY: access follows the ring's protocol (see `get_mut` and `get`): one writer stage while
// it holds the sequence, readers only after that stage released it (an Acquire load of its
// cursor orders the writes before the reads).
unsafe impl<T: Send> Sync for StageCell<T> {}

impl<T> StageCell<T> {
    pub fn new(value: T) -> StageCell<T> {
        StageCell {
            value: UnsafeCell::new(value),
        }
    }

    /// The owning stage's access, to write its result.
    ///
    /// # Safety
    /// Only the one stage that owns this cell calls this, while the sequence is in its read
    /// batch; no stage downstream of it reads the cell until it releases the sequence, and
    /// no other stage ever touches the cell.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_mut(&self) -> &mut T {
        // SAFETY: exclusivity is the caller's promise.
        unsafe { &mut *self.value.get() }
    }

    /// A downstream stage's access, to read the owner's result.
    ///
    /// # Safety
    /// The owning stage has released this sequence and the caller is downstream of it (so
    /// the owner never writes it again until the slot's next lap).
    pub unsafe fn get(&self) -> &T {
        // SAFETY: no writer by the caller's promise.
        unsafe { &*self.value.get() }
    }
}
