//! The last few times units came back from reservations for one SKU, to estimate how fast a
//! waitlist moves. A fixed array: no allocation, bounded by `RELEASE_HISTORY_LEN`.

use crate::config::RELEASE_HISTORY_LEN;
use crate::ids::{TimestampNs, Units};

#[derive(
    Clone, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct ReleaseHistory {
    /// (when, units), a ring; `len` valid entries ending at `next - 1`.
    releases: [(TimestampNs, Units); RELEASE_HISTORY_LEN],
    next: u8,
    len: u8,
}

impl ReleaseHistory {
    pub fn record(&mut self, now_ns: TimestampNs, units: Units) {
        self.releases[self.next as usize] = (now_ns, units);
        self.next = ((self.next as usize + 1) % RELEASE_HISTORY_LEN) as u8;
        self.len = (self.len as usize + 1).min(RELEASE_HISTORY_LEN) as u8;
    }

    /// Time until `units` more are released at the recent rate: units over the span from the
    /// oldest remembered release to the newest. `None` with fewer than two releases or no span.
    pub fn eta_ns(&self, units: Units) -> Option<u64> {
        if self.len < 2 {
            return None;
        }
        let newest = (self.next as usize + RELEASE_HISTORY_LEN - 1) % RELEASE_HISTORY_LEN;
        let oldest =
            (self.next as usize + RELEASE_HISTORY_LEN - self.len as usize) % RELEASE_HISTORY_LEN;
        let span_ns = self.releases[newest]
            .0
            .checked_sub(self.releases[oldest].0)?;
        // The oldest release opens the span; the units released within it are the rest.
        let released: Units = (1..self.len as usize)
            .map(|back| {
                self.releases[(newest + RELEASE_HISTORY_LEN + 1 - back) % RELEASE_HISTORY_LEN].1
            })
            .sum();
        if span_ns == 0 || released == 0 {
            return None;
        }
        let eta = u128::from(units) * u128::from(span_ns) / u128::from(released);
        Some(u64::try_from(eta).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_from_recent_rate() {
        let mut h = ReleaseHistory::default();
        assert_eq!(h.eta_ns(1), None);
        h.record(1_000, 1);
        assert_eq!(h.eta_ns(1), None);
        h.record(3_000, 2); // 2 units in 2 µs → 1 unit per µs
        assert_eq!(h.eta_ns(5), Some(5_000));
        for i in 0..100 {
            h.record(10_000 + i * 100, 1);
        }
        // Only the last 16 count: 15 units over 1.5 µs.
        assert_eq!(h.eta_ns(1), Some(100));
    }
}
