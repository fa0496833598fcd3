//! When each request is meant to go out. The load generator measures latency from these
//! intended times, not from when a request actually left, so a server that stalls is charged
//! for every request it held back (no coordinated omission).

use crate::rng::Rng;

/// How arrivals are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spacing {
    /// Evenly, `1 / rate` apart.
    Constant,
    /// Exponential gaps with mean `1 / rate`: independent arrivals, as real shoppers make.
    Poisson,
}

/// The intended send times of one connection, in nanoseconds from the start of the run.
#[derive(Clone, Debug)]
pub struct Schedule {
    spacing: Spacing,
    gap_ns: f64,
    next_ns: f64,
    rng: Rng,
}

impl Schedule {
    /// Connection `index` of `connections` sharing `rate` requests per second. With constant
    /// spacing the connections are phase-shifted so that together they are evenly spaced.
    pub fn new(spacing: Spacing, rate: f64, index: u64, connections: u64, seed: u64) -> Schedule {
        assert!(rate > 0.0 && connections > 0);
        let gap_ns = 1e9 * connections as f64 / rate;
        let mut rng = Rng::new(seed ^ 0x5ced_u64.wrapping_mul(index + 1));
        let next_ns = match spacing {
            Spacing::Constant => gap_ns * index as f64 / connections as f64,
            Spacing::Poisson => rng.exponential(gap_ns),
        };
        Schedule {
            spacing,
            gap_ns,
            next_ns,
            rng,
        }
    }

    /// The next intended time, without consuming it.
    pub fn peek_ns(&self) -> u64 {
        self.next_ns as u64
    }

    /// Consume the next intended time.
    pub fn advance(&mut self) -> u64 {
        let at = self.next_ns as u64;
        self.next_ns += match self.spacing {
            Spacing::Constant => self.gap_ns,
            Spacing::Poisson => self.rng.exponential(self.gap_ns),
        };
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(mut s: Schedule, n: usize) -> Vec<u64> {
        (0..n).map(|_| s.advance()).collect()
    }

    #[test]
    fn constant_spacing_is_exact_and_connections_interleave() {
        let a = times(Schedule::new(Spacing::Constant, 1_000.0, 0, 2, 1), 5);
        let b = times(Schedule::new(Spacing::Constant, 1_000.0, 1, 2, 1), 5);
        assert_eq!(a, [0, 2_000_000, 4_000_000, 6_000_000, 8_000_000]);
        assert_eq!(b, [1_000_000, 3_000_000, 5_000_000, 7_000_000, 9_000_000]);
    }

    #[test]
    fn poisson_keeps_the_mean_rate_and_is_seeded() {
        let n = 200_000;
        let t = times(Schedule::new(Spacing::Poisson, 50_000.0, 0, 1, 7), n);
        let mean_gap = t[n - 1] as f64 / (n - 1) as f64;
        assert!((mean_gap - 20_000.0).abs() < 20_000.0 * 0.01, "{mean_gap}");
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        // Gaps of an exponential: about 1/e of them are longer than the mean.
        let long = t.windows(2).filter(|w| w[1] - w[0] > 20_000).count() as f64;
        assert!((long / n as f64 - (-1f64).exp()).abs() < 0.01);
        assert_eq!(
            t[..100],
            times(Schedule::new(Spacing::Poisson, 50_000.0, 0, 1, 7), 100)[..]
        );
        assert_ne!(
            t[..100],
            times(Schedule::new(Spacing::Poisson, 50_000.0, 0, 1, 8), 100)[..]
        );
    }
}
