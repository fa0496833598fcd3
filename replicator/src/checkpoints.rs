//! Rolling-hash checkpoints: at every sequence that is a multiple of `EVERY`, both sides note
//! the engine's rolling hash after applying it. The primary sends its own; the standby
//! compares as soon as it has both. Any difference means the two engines no longer hold the
//! same state, found within `EVERY` commands of where it happened.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Sequences between checkpoints (a power of two: the engine stage tests it per command).
pub const EVERY: u64 = 1024;
/// Checkpoints kept (the primary's for the sender; the standby's awaiting the primary's).
const KEPT: usize = 256;

pub fn is_checkpoint(seq: u64) -> bool {
    seq.is_multiple_of(EVERY)
}

/// The primary's recent checkpoints.
#[derive(Default)]
pub struct Recent {
    inner: Mutex<VecDeque<(u64, u64)>>,
}

impl Recent {
    pub fn record(&self, seq: u64, hash: u64) {
        let mut inner = self.inner.lock().expect("checkpoints lock");
        if inner.len() == KEPT {
            inner.pop_front();
        }
        inner.push_back((seq, hash));
    }

    /// Checkpoints with `after < seq <= upto`.
    pub fn between(&self, after: u64, upto: u64) -> Vec<(u64, u64)> {
        let inner = self.inner.lock().expect("checkpoints lock");
        inner
            .iter()
            .filter(|(s, _)| *s > after && *s <= upto)
            .copied()
            .collect()
    }

    pub fn hash_at(&self, seq: u64) -> Option<u64> {
        let inner = self.inner.lock().expect("checkpoints lock");
        inner.iter().find(|(s, _)| *s == seq).map(|&(_, h)| h)
    }
}

/// A difference found: the sequence and both hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub seq: u64,
    pub primary: u64,
    pub standby: u64,
}

/// The standby's side: its own hashes and the primary's, matched by sequence.
#[derive(Default)]
pub struct Comparer {
    inner: Mutex<Pairs>,
}

#[derive(Default)]
struct Pairs {
    mine: BTreeMap<u64, u64>,
    theirs: BTreeMap<u64, u64>,
    compared: u64,
}

impl Comparer {
    /// The standby's engine applied `seq` (a checkpoint) and has `hash`.
    pub fn mine(&self, seq: u64, hash: u64) -> Result<(), Divergence> {
        let mut p = self.inner.lock().expect("comparer lock");
        p.mine.insert(seq, hash);
        p.settle(seq)
    }

    /// The primary's hash at `seq`.
    pub fn theirs(&self, seq: u64, hash: u64) -> Result<(), Divergence> {
        let mut p = self.inner.lock().expect("comparer lock");
        p.theirs.insert(seq, hash);
        p.settle(seq)
    }

    /// Checkpoints compared and found equal.
    pub fn compared(&self) -> u64 {
        self.inner.lock().expect("comparer lock").compared
    }
}

impl Pairs {
    fn settle(&mut self, seq: u64) -> Result<(), Divergence> {
        let result = match (self.mine.get(&seq), self.theirs.get(&seq)) {
            (Some(&standby), Some(&primary)) => {
                self.mine.remove(&seq);
                self.theirs.remove(&seq);
                if standby == primary {
                    self.compared += 1;
                    Ok(())
                } else {
                    Err(Divergence {
                        seq,
                        primary,
                        standby,
                    })
                }
            }
            _ => Ok(()),
        };
        for map in [&mut self.mine, &mut self.theirs] {
            while map.len() > KEPT {
                map.pop_first();
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_hashes_pass_in_either_order_and_a_difference_is_reported() {
        let c = Comparer::default();
        assert!(c.mine(1024, 7).is_ok());
        assert!(c.theirs(1024, 7).is_ok());
        assert!(c.theirs(2048, 9).is_ok());
        assert!(c.mine(2048, 9).is_ok());
        assert_eq!(c.compared(), 2);
        assert!(c.theirs(3072, 1).is_ok());
        assert_eq!(
            c.mine(3072, 2),
            Err(Divergence {
                seq: 3072,
                primary: 1,
                standby: 2
            })
        );
    }

    #[test]
    fn recent_keeps_a_window() {
        let r = Recent::default();
        for i in 1..=300 {
            r.record(i * EVERY, i);
        }
        assert_eq!(r.hash_at(EVERY), None);
        assert_eq!(r.hash_at(300 * EVERY), Some(300));
        assert_eq!(
            r.between(298 * EVERY, 299 * EVERY),
            vec![(299 * EVERY, 299)]
        );
    }
}
