//! The simulator's one source of randomness: the load generator's seeded SplitMix64, so that
//! a seed means the same run on any machine and any version of any crate. Every choice the
//! simulator makes (delays, faults, which client sends what) draws from it, in an order fixed
//! by the event loop, so a seed replays bit for bit. What is the simulator's own: chances in
//! percent, picking, and forking a generator per part of the run.

#[derive(Clone, Debug)]
pub struct Rng {
    inner: loadgen::rng::Rng,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            inner: loadgen::rng::Rng::new(seed),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "an empty range");
        self.inner.below(n)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        self.inner.between(lo, hi)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A generator of its own for a part of the run, so that drawing more in one part does
    /// not shift every draw in the others.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_numbers_and_ranges_hold() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let x = a.between(3, 9);
            assert!((3..=9).contains(&x));
            b.between(3, 9);
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
