//! A long run measured window by window: latency and counts for each `len` of intended send
//! time (the window a request belongs to is when it was meant to go out, as its latency is
//! measured from then). Connections add what they measured as they move on; a reader (the
//! sale-day benchmark) takes the windows that are over while the run goes on.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::measured::latency_histogram;

pub struct Window {
    pub latency: Histogram<u64>,
    pub answered: u64,
    pub refused: u64,
}

impl Window {
    pub fn new() -> Window {
        Window {
            latency: latency_histogram(),
            answered: 0,
            refused: 0,
        }
    }

    fn add(&mut self, other: &Window) {
        self.latency.add(&other.latency).expect("same bounds");
        self.answered += other.answered;
        self.refused += other.refused;
    }
}

impl Default for Window {
    fn default() -> Self {
        Window::new()
    }
}

pub struct Windows {
    len_ns: u64,
    windows: Mutex<BTreeMap<u64, Window>>,
}

impl std::fmt::Debug for Windows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Windows({} ns)", self.len_ns)
    }
}

impl Windows {
    pub fn new(len: Duration) -> Windows {
        assert!(!len.is_zero());
        Windows {
            len_ns: len.as_nanos() as u64,
            windows: Mutex::new(BTreeMap::new()),
        }
    }

    /// The window a request meant at `at_ns` (from the start of the run) belongs to.
    pub fn index(&self, at_ns: u64) -> u64 {
        at_ns / self.len_ns
    }

    /// Add a connection's measurements of window `index`.
    pub fn add(&self, index: u64, window: &Window) {
        self.windows
            .lock()
            .expect("windows lock")
            .entry(index)
            .or_default()
            .add(window);
    }

    /// Take every window before `index` (those no answer can still be counted in).
    pub fn take_before(&self, index: u64) -> Vec<(u64, Window)> {
        let mut windows = self.windows.lock().expect("windows lock");
        let later = windows.split_off(&index);
        std::mem::replace(&mut *windows, later)
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_add_up_and_are_taken_in_order() {
        let windows = Windows::new(Duration::from_secs(10));
        assert_eq!(windows.index(9_999_999_999), 0);
        assert_eq!(windows.index(10_000_000_000), 1);
        let mut w = Window::new();
        w.latency.record(1_000).unwrap();
        w.answered = 1;
        windows.add(0, &w);
        windows.add(0, &w);
        windows.add(2, &w);
        let taken = windows.take_before(2);
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].0, taken[0].1.answered), (0, 2));
        assert_eq!(windows.take_before(3)[0].0, 2);
        assert!(windows.take_before(10).is_empty());
    }
}
