//! Zipf-distributed ranks over `1..=n` by inverse CDF: a table of cumulative weights built once
//! (8 bytes per rank), then a binary search per sample. Rank 1 is the most popular.

use crate::rng::Rng;

#[derive(Clone, Debug)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// `exponent` is the skew: 0 is uniform, ~1 is classic web popularity.
    pub fn new(n: usize, exponent: f64) -> Zipf {
        assert!(n > 0);
        let mut cumulative = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 1..=n {
            total += 1.0 / (rank as f64).powf(exponent);
            cumulative.push(total);
        }
        for c in &mut cumulative {
            *c /= total;
        }
        Zipf { cumulative }
    }

    /// A rank in `1..=n`.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let index = self.cumulative.partition_point(|&c| c <= u);
        index.min(self.cumulative.len() - 1) as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popular_ranks_come_up_more() {
        let zipf = Zipf::new(1000, 1.0);
        let mut rng = Rng::new(3);
        let mut counts = [0u32; 3];
        for _ in 0..20_000 {
            let rank = zipf.sample(&mut rng);
            assert!((1..=1000).contains(&rank));
            if rank <= 3 {
                counts[rank as usize - 1] += 1;
            }
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[2], "{counts:?}");
    }
}
