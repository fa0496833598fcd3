//! A table whose writes are tracked in chunks, so the serving engine can checkpoint itself:
//! consistent at a sequence boundary, incremental, without a second engine and without
//! stopping for more than the moment it takes to note where each table ends.
//!
//! Time is cut into intervals, one per checkpoint: checkpoint `k` is the state at the start
//! of interval `k`. Each chunk (a few KiB of consecutive elements) remembers the interval it
//! was last written in, and the checkpoint it was last copied for. A delta checkpoint `k`
//! holds the chunks written in interval `k - 1`; a full one holds every chunk in use.
//!
//! Copy-on-update: while checkpoint `k` is being taken, the first write in interval `k` to a
//! chunk the checkpoint still needs copies the chunk first, so the copy is the state at the
//! cut. Between commands the engine copies the rest a budget at a time (`step`). Every copy
//! is made on the engine's own thread: no other thread ever reads a live table, and the
//! checkpoint's writer only ever sees the copies.
//!
//! Reads (`Index`) cost nothing extra; a write through `IndexMut`, `push`, `resize` or
//! `fill` costs one compare when its chunk was already written in this interval.

use std::ops::{Index, IndexMut, Range};

use crate::memory::Region;

/// About how many bytes a chunk holds: small enough that a hash table's scattered writes
/// do not drag much unchanged data into a delta, large enough that the marks stay small
/// (8 bytes a chunk: 2.6 MB for the default limits' 1.34 GB).
pub const CHUNK_BYTES: usize = 4096;

/// One table of the engine, fixed in capacity from start-up.
#[derive(Clone, Debug)]
pub struct Tracked<T> {
    items: Vec<T>,
    capacity: usize,
    /// log2 of the elements in a chunk.
    shift: u32,
    /// Per chunk of the capacity: the interval it was last written in (0: not since start).
    written: Vec<u32>,
    /// Per chunk: the checkpoint it was last copied for (0: none).
    copied: Vec<u32>,
    /// Per chunk: never written since the table was made (it holds what a new table holds,
    /// so a full checkpoint leaves it out and a restore finds it as made).
    pristine: Vec<bool>,
    /// The interval writes now belong to (1 at start).
    interval: u32,
    capture: Option<Capture<T>>,
    /// What fills a position below the length that no checkpoint restored (never read).
    filler: T,
}

/// The checkpoint being taken of one table.
#[derive(Clone, Debug)]
struct Capture<T> {
    checkpoint: u32,
    full: bool,
    /// The table's length at the cut: elements past it are not part of the checkpoint.
    len_at_cut: usize,
    /// The next chunk `step` looks at.
    cursor: usize,
    /// Copies made and not yet taken: (chunk, its elements at the cut).
    copies: Vec<(u32, Vec<T>)>,
    /// Bytes in `copies`.
    copied_bytes: usize,
}

/// How one table's part of a checkpoint went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Chunks copied because a write reached them first.
    pub copied_on_write: u64,
    /// Chunks copied by `step`.
    pub copied_ahead: u64,
}

impl<T: Clone> Tracked<T> {
    /// An empty table of `capacity` elements, allocated (not touched) now.
    pub fn with_capacity(capacity: usize, filler: T) -> Tracked<T> {
        Tracked::from_vec(Vec::with_capacity(capacity), capacity, filler)
    }

    /// A table over `items`, whose allocation holds exactly `capacity` elements (`items` may
    /// already be in use up to its length: a zeroed table is whole from the start).
    pub fn from_vec(items: Vec<T>, capacity: usize, filler: T) -> Tracked<T> {
        assert!(items.len() <= capacity && items.capacity() >= capacity);
        let per_chunk = (CHUNK_BYTES / std::mem::size_of::<T>().max(1)).max(1);
        // A power of two at or below: a shift, not a division, on every write.
        let shift = usize::BITS - 1 - per_chunk.leading_zeros();
        let chunks = capacity.div_ceil(1 << shift);
        Tracked {
            items,
            capacity,
            shift,
            written: vec![0; chunks],
            copied: vec![0; chunks],
            pristine: vec![true; chunks],
            interval: 1,
            capture: None,
            filler,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Elements in one chunk.
    pub fn per_chunk(&self) -> usize {
        1 << self.shift
    }

    pub fn as_slice(&self) -> &[T] {
        &self.items
    }

    /// Make every page of the allocation resident now (`memory`): values do not change, so
    /// nothing is marked.
    pub fn fault_in(&mut self) {
        let more = self.capacity - self.items.len();
        crate::memory::reserve_touched(&mut self.items, more, self.filler.clone());
    }

    /// The whole allocation, to fault in from another thread.
    pub(crate) fn region(&self) -> Region {
        Region::of(&self.items)
    }

    /// The allocation's first `n` elements.
    pub(crate) fn region_prefix(&self, n: usize) -> Region {
        Region::of_prefix(&self.items, n)
    }

    /// Append `item` (the caller keeps within the capacity: it never grows).
    #[inline]
    pub fn push(&mut self, item: T) {
        let at = self.items.len();
        assert!(at < self.capacity, "a tracked table never grows");
        self.touch(at >> self.shift);
        self.items.push(item);
    }

    /// Remove the last element. It counts as a write to its chunk: a checkpoint under way
    /// that still needs the chunk copies it first, while the element is still there.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        let last = self.items.len().checked_sub(1)?;
        self.touch(last >> self.shift);
        self.items.pop()
    }

    /// Grow to `len` with copies of `value` (never shrinks, never past the capacity).
    pub fn grow_to(&mut self, len: usize, value: T) {
        assert!(len <= self.capacity, "a tracked table never grows");
        if len <= self.items.len() {
            return;
        }
        self.touch_range(self.items.len()..len);
        self.items.resize(len, value);
    }

    /// Set every element in `range` to `value`.
    pub fn fill(&mut self, range: Range<usize>, value: T) {
        assert!(
            range.end <= self.items.len(),
            "fill past the table's length"
        );
        self.touch_range(range.clone());
        self.items[range].fill(value);
    }

    /// Mark a write to `chunk`, which holds an index below the capacity (every caller checks
    /// that first: this runs on every write of the engine's hot path).
    #[inline]
    fn touch(&mut self, chunk: usize) {
        debug_assert!(chunk < self.written.len());
        // SAFETY: `written` has one mark per chunk of the capacity, and the callers' index is
        // below the capacity.
        if unsafe { *self.written.get_unchecked(chunk) } != self.interval {
            self.first_write(chunk);
        }
    }

    fn touch_range(&mut self, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        for chunk in range.start >> self.shift..=(range.end - 1) >> self.shift {
            self.touch(chunk);
        }
    }

    /// The first write to `chunk` in this interval: copy it first if the checkpoint under
    /// way still needs it.
    #[cold]
    fn first_write(&mut self, chunk: usize) {
        if self.needs_copy(chunk) {
            self.copy(chunk);
        } else if let Some(capture) = &self.capture {
            // What the checkpoint under way holds of this chunk is decided now, before the
            // write: nothing (it was pristine, or not written in the last interval).
            self.copied[chunk] = capture.checkpoint;
        }
        self.written[chunk] = self.interval;
        self.pristine[chunk] = false;
    }

    /// Whether the checkpoint under way holds `chunk` and has no copy of it yet.
    fn needs_copy(&self, chunk: usize) -> bool {
        let Some(capture) = &self.capture else {
            return false;
        };
        self.copied[chunk] != capture.checkpoint
            && chunk << self.shift < capture.len_at_cut
            && match capture.full {
                true => !self.pristine[chunk],
                false => self.written[chunk] == capture.checkpoint - 1,
            }
    }

    fn copy(&mut self, chunk: usize) {
        let capture = self.capture.as_mut().expect("a checkpoint is under way");
        let start = chunk << self.shift;
        let end = ((chunk + 1) << self.shift).min(capture.len_at_cut);
        let elements = self.items[start..end].to_vec();
        capture.copied_bytes += std::mem::size_of_val(elements.as_slice());
        capture.copies.push((chunk as u32, elements));
        self.copied[chunk] = capture.checkpoint;
    }

    /// Checkpoint `checkpoint` begins (its cut is now): writes from here belong to the next
    /// interval. `full`: every chunk in use, else the chunks written since the last one.
    pub fn begin(&mut self, checkpoint: u32, full: bool) {
        assert!(self.capture.is_none(), "one checkpoint at a time");
        assert_eq!(
            checkpoint,
            self.interval + 1,
            "checkpoints are numbered in turn"
        );
        self.interval = checkpoint;
        self.capture = Some(Capture {
            checkpoint,
            full,
            len_at_cut: self.items.len(),
            cursor: 0,
            copies: Vec::new(),
            copied_bytes: 0,
        });
    }

    /// The length at the cut of the checkpoint under way.
    pub fn len_at_cut(&self) -> Option<usize> {
        self.capture.as_ref().map(|c| c.len_at_cut)
    }

    /// Copy chunks the checkpoint still needs until about `budget` bytes are copied (each
    /// chunk looked at counts a little too). The bytes spent; `done` once every chunk is.
    pub fn step(&mut self, budget: usize) -> (usize, bool) {
        let Some(capture) = &self.capture else {
            return (0, true);
        };
        let chunks_at_cut = capture.len_at_cut.div_ceil(1 << self.shift);
        let mut spent = 0;
        let mut cursor = capture.cursor;
        while cursor < chunks_at_cut && spent < budget {
            if self.needs_copy(cursor) {
                let before = self.capture.as_ref().map_or(0, |c| c.copied_bytes);
                self.copy(cursor);
                spent += self.capture.as_ref().map_or(0, |c| c.copied_bytes) - before;
            }
            // Looking at a chunk costs about as much as copying a few bytes of it.
            spent += 16;
            cursor += 1;
        }
        let capture = self.capture.as_mut().expect("under way");
        capture.cursor = cursor;
        (spent, cursor >= chunks_at_cut)
    }

    /// Take the copies made so far: (chunk, elements), the bytes they hold.
    pub fn take_copies(&mut self) -> (Vec<(u32, Vec<T>)>, usize) {
        match &mut self.capture {
            Some(capture) => (
                std::mem::take(&mut capture.copies),
                std::mem::replace(&mut capture.copied_bytes, 0),
            ),
            None => (Vec::new(), 0),
        }
    }

    /// The checkpoint under way is whole (every chunk copied and taken): end it.
    pub fn finish(&mut self) {
        let capture = self.capture.take().expect("a checkpoint is under way");
        assert!(capture.copies.is_empty(), "every copy was taken");
        assert!(
            capture.cursor >= capture.len_at_cut.div_ceil(1 << self.shift),
            "every chunk was looked at"
        );
    }

    /// Restore: whether `chunk` was restored already (by a newer checkpoint: they are
    /// applied newest first, and the first to name a chunk wins).
    pub fn restored(&self, chunk: u32) -> bool {
        self.pristine.get(chunk as usize).is_some_and(|p| !p)
    }

    /// Restore: put `elements` at chunk `chunk` (from a checkpoint, newest first: the caller
    /// skips a chunk already `restored`).
    pub fn restore_chunk(&mut self, chunk: u32, elements: Vec<T>) -> Result<(), &'static str> {
        let start = (chunk as usize) << self.shift;
        if elements.len() > self.per_chunk() || start + elements.len() > self.capacity {
            return Err("a chunk lies outside its table");
        }
        if self.items.len() < start + elements.len() {
            self.items
                .resize(start + elements.len(), self.filler.clone());
        }
        for (slot, element) in self.items[start..].iter_mut().zip(elements) {
            *slot = element;
        }
        self.pristine[chunk as usize] = false;
        Ok(())
    }

    /// Restore is over: what restoring wrote is the checkpoint's state, not a change since
    /// it (the next delta holds only what is written from here).
    pub fn settle(&mut self) {
        self.written.fill(0);
    }

    /// Restore: the table's length at the checkpoint (chunks past it were never in use).
    pub fn restore_len(&mut self, len: usize) -> Result<(), &'static str> {
        if len > self.capacity {
            return Err("a table's length is past its capacity");
        }
        if len > self.items.len() {
            self.items.resize(len, self.filler.clone());
        } else {
            self.items.truncate(len);
        }
        Ok(())
    }
}

impl<T> Index<usize> for Tracked<T> {
    type Output = T;

    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.items[i]
    }
}

impl<T: Clone> IndexMut<usize> for Tracked<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.items.len(), "index {i} past {}", self.items.len());
        self.touch(i >> self.shift);
        // SAFETY: checked just above.
        unsafe { self.items.get_unchecked_mut(i) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Take a whole checkpoint of `t` now: (chunk, elements), sorted by chunk.
    fn checkpoint(t: &mut Tracked<u64>, k: u32, full: bool) -> Vec<(u32, Vec<u64>)> {
        t.begin(k, full);
        let mut all = Vec::new();
        loop {
            let (_, done) = t.step(64);
            all.extend(t.take_copies().0);
            if done {
                break;
            }
        }
        t.finish();
        all.sort_by_key(|(c, _)| *c);
        all
    }

    #[test]
    fn a_full_checkpoint_leaves_out_chunks_never_written_even_when_written_during_it() {
        // A table made whole (a hash table's slots): only what was written is in a full one.
        let mut t = Tracked::from_vec(vec![0u64; 4096], 4096, 0);
        let per = t.per_chunk();
        t[2 * per] = 4;
        t.begin(2, true);
        t[5 * per] = 8; // pristine at the cut: nothing to hold for it
        let (_, done) = t.step(usize::MAX);
        assert!(done);
        let (copies, _) = t.take_copies();
        t.finish();
        assert_eq!(copies.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [2]);
        // The next delta has the write made during it; a restore of both equals the table.
        let delta = checkpoint(&mut t, 3, false);
        assert_eq!(delta.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [5]);
        let mut restored = Tracked::from_vec(vec![0u64; 4096], 4096, 0);
        for (chunk, elements) in copies.into_iter().chain(delta) {
            restored.restore_chunk(chunk, elements).unwrap();
        }
        assert_eq!(restored.as_slice(), t.as_slice());
    }

    #[test]
    fn a_delta_holds_the_chunks_written_since_the_last_checkpoint() {
        let mut t = Tracked::with_capacity(4096, 0u64);
        let per = t.per_chunk();
        assert_eq!(per, 512);
        t.grow_to(3 * per, 0);
        let base = checkpoint(&mut t, 2, true);
        assert_eq!(base.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [0, 1, 2]);
        t[per + 5] = 7;
        let delta = checkpoint(&mut t, 3, false);
        assert_eq!(delta.len(), 1);
        assert_eq!((delta[0].0, delta[0].1[5]), (1, 7));
        assert!(
            checkpoint(&mut t, 4, false).is_empty(),
            "nothing written since"
        );
    }

    #[test]
    fn a_write_during_a_checkpoint_is_copied_first_and_lands_in_the_next() {
        let mut t = Tracked::with_capacity(4096, 0u64);
        let per = t.per_chunk();
        t.grow_to(4 * per, 1);
        checkpoint(&mut t, 2, true);
        t[3 * per] = 2; // interval 2
        t.begin(3, false);
        // Interval 3: the write reaches chunk 3 before the copier does.
        t[3 * per] = 3;
        t[0] = 9; // chunk 0 was not written in interval 2: no copy
        let (copies, bytes) = t.take_copies();
        assert_eq!(copies.len(), 1);
        assert_eq!(
            (copies[0].0, copies[0].1[0]),
            (3, 2),
            "the state at the cut"
        );
        assert_eq!(bytes, per * 8);
        let (_, done) = t.step(usize::MAX);
        assert!(done);
        assert!(t.take_copies().0.is_empty(), "copied once");
        t.finish();
        let next = checkpoint(&mut t, 4, false);
        assert_eq!(next.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [0, 3]);
        assert_eq!((next[0].1[0], next[1].1[0]), (9, 3));
    }

    #[test]
    fn a_full_checkpoint_copies_on_write_every_chunk_in_use_and_ignores_past_the_cut() {
        let mut t = Tracked::with_capacity(4096, 0u64);
        let per = t.per_chunk();
        t.grow_to(per + 3, 5);
        t.begin(2, true);
        t.push(6); // past the cut, in chunk 1 (partly in use at the cut)
        t[0] = 1;
        let (_, done) = t.step(usize::MAX);
        assert!(done);
        let (mut copies, _) = t.take_copies();
        t.finish();
        copies.sort_by_key(|(c, _)| *c);
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[0].1[0], 5, "before the write");
        assert_eq!(copies[1].1, vec![5; 3], "only what was in use at the cut");
    }

    #[test]
    fn a_pop_after_the_cut_keeps_the_cuts_elements_for_the_copy() {
        let mut t = Tracked::with_capacity(64, 0u64);
        for v in 1..=4 {
            t.push(v);
        }
        t.begin(2, true);
        t.pop();
        t.pop();
        t.push(9);
        let (_, done) = t.step(usize::MAX);
        assert!(done);
        let (copies, _) = t.take_copies();
        t.finish();
        assert_eq!(copies, vec![(0, vec![1, 2, 3, 4])]);
    }

    #[test]
    fn restoring_the_chunks_of_a_chain_gives_the_table_back() {
        let mut live = Tracked::with_capacity(4096, 0u64);
        let per = live.per_chunk();
        let mut restored = Tracked::with_capacity(4096, 0u64);
        let mut x = 7u64;
        let mut k = 1;
        for round in 0..20 {
            for _ in 0..50 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let len = live.len();
                match x >> 62 {
                    0 if len < live.capacity() => live.push(x),
                    1 if len > 0 => {
                        live.pop();
                    }
                    _ if len > 0 => live[(x >> 20) as usize % len] = x,
                    _ => live.push(x),
                }
            }
            k += 1;
            let len = live.len();
            for (chunk, elements) in checkpoint(&mut live, k, round % 7 == 0) {
                restored.restore_chunk(chunk, elements).unwrap();
            }
            restored.restore_len(len).unwrap();
            assert_eq!(restored.as_slice(), live.as_slice(), "round {round}");
        }
        assert!(per > 0);
    }
}
