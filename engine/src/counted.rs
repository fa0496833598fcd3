//! `Counted`: an iterator that says how long it is, and checks it. A snapshot archives a
//! table's length apart from its items (an archived vector), so a count that disagrees with
//! the walk would corrupt the archive: it stops loudly instead.

#[derive(Clone)]
pub(crate) struct Counted<I> {
    items: I,
    left: usize,
}

impl<I> Counted<I> {
    /// `items`, which must yield exactly `len` items.
    pub(crate) fn new(items: I, len: usize) -> Counted<I> {
        Counted { items, left: len }
    }
}

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.items.next();
        match item {
            Some(_) => self.left = self.left.checked_sub(1).expect("more items than counted"),
            None => assert_eq!(self.left, 0, "fewer items than counted"),
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<I: Iterator> ExactSizeIterator for Counted<I> {}
