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

/// A rate that changes over the run: straight lines between `(seconds, requests/s)` points,
/// flat before the first and after the last (a sale day's ramp to its peak and back).
#[derive(Clone, Debug, PartialEq)]
pub struct RateProfile {
    points: Vec<(f64, f64)>,
}

impl RateProfile {
    /// Points in time order, every rate positive.
    pub fn new(points: Vec<(f64, f64)>) -> Result<RateProfile, String> {
        if points.is_empty() {
            return Err("a rate profile needs at least one point".into());
        }
        if points.windows(2).any(|w| w[1].0 <= w[0].0) {
            return Err("rate profile times must increase".into());
        }
        if points
            .iter()
            .any(|&(t, r)| t < 0.0 || r <= 0.0 || !r.is_finite())
        {
            return Err("rate profile times must be ≥ 0 and rates positive".into());
        }
        Ok(RateProfile { points })
    }

    /// `"SECONDS:RATE,SECONDS:RATE,…"`, e.g. `0:20000,300:120000,600:30000`.
    pub fn parse(text: &str) -> Result<RateProfile, String> {
        let points = text
            .split(',')
            .map(|point| {
                let (t, r) = point
                    .split_once(':')
                    .ok_or_else(|| format!("{point:?}: expected SECONDS:RATE"))?;
                let t: f64 = t.trim().parse().map_err(|e| format!("{t:?}: {e}"))?;
                let r: f64 = r.trim().parse().map_err(|e| format!("{r:?}: {e}"))?;
                Ok((t, r))
            })
            .collect::<Result<Vec<_>, String>>()?;
        RateProfile::new(points)
    }

    /// Requests per second at `seconds` into the run.
    pub fn rate_at(&self, seconds: f64) -> f64 {
        let p = &self.points;
        let after = p.partition_point(|&(t, _)| t <= seconds);
        match (after.checked_sub(1).map(|i| p[i]), p.get(after)) {
            (None, _) => p[0].1,
            (Some((_, r)), None) => r,
            (Some((t0, r0)), Some(&(t1, r1))) => r0 + (r1 - r0) * (seconds - t0) / (t1 - t0),
        }
    }

    /// The mean rate over the first `seconds`.
    pub fn mean_rate(&self, seconds: f64) -> f64 {
        let steps = 1000;
        (0..steps)
            .map(|i| self.rate_at(seconds * (i as f64 + 0.5) / steps as f64))
            .sum::<f64>()
            / steps as f64
    }
}

/// The intended send times of one connection, in nanoseconds from the start of the run.
#[derive(Clone, Debug)]
pub struct Schedule {
    spacing: Spacing,
    gap_ns: f64,
    next_ns: f64,
    rng: Rng,
    /// When set, the gap follows this profile (the connection's share of its rate).
    profile: Option<(std::sync::Arc<RateProfile>, f64)>,
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
            profile: None,
        }
    }

    /// Like `new`, the rate following `profile` over the run.
    pub fn with_profile(
        spacing: Spacing,
        profile: std::sync::Arc<RateProfile>,
        index: u64,
        connections: u64,
        seed: u64,
    ) -> Schedule {
        let mut schedule = Schedule::new(spacing, profile.rate_at(0.0), index, connections, seed);
        schedule.profile = Some((profile, connections as f64));
        schedule
    }

    /// The next intended time, without consuming it.
    pub fn peek_ns(&self) -> u64 {
        self.next_ns as u64
    }

    /// Consume the next intended time.
    pub fn advance(&mut self) -> u64 {
        let at = self.next_ns as u64;
        if let Some((profile, connections)) = &self.profile {
            self.gap_ns = 1e9 * connections / profile.rate_at(self.next_ns / 1e9);
        }
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
    fn a_profile_ramps_the_rate_between_its_points() {
        let p = RateProfile::parse("10:1000, 20:3000").unwrap();
        assert_eq!(p.rate_at(0.0), 1000.0);
        assert_eq!(p.rate_at(15.0), 2000.0);
        assert_eq!(p.rate_at(99.0), 3000.0);
        assert!(RateProfile::parse("5:10,5:20").is_err());
        assert!(RateProfile::parse("0:-1").is_err());
        // Constant spacing along the ramp: about 1000/s at the start, 3000/s at the end.
        let profile = std::sync::Arc::new(RateProfile::parse("0:1000,2:3000").unwrap());
        let t = times(
            Schedule::with_profile(Spacing::Constant, profile, 0, 1, 1),
            8000,
        );
        let in_first = t.iter().filter(|&&ns| ns < 100_000_000).count();
        let last_second = t
            .iter()
            .filter(|&&ns| (2_000_000_000..3_000_000_000).contains(&ns))
            .count();
        assert!((95..=115).contains(&in_first), "{in_first}");
        assert!((2900..=3100).contains(&last_second), "{last_second}");
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
