//! The release gate: the ring's last stage, after the journal stage and the engine stage. An
//! answer for sequence N leaves only when N is applied (the gate follows the engine stage),
//! durable here (the gate follows the journal stage, which passes a slot once written, and
//! its bound is at most the durable sequence, published as syncs return), and, in the
//! synchronous replication modes, at or below the replication bound (what `sync_standbys`
//! of the standbys acked: `group::bound`). `Gate::release` hands every slot it lets through,
//! in order, to the caller (connections encode and send).

use crate::pipeline::slot::Slot;
use engine::ring::Consumer;

/// Sequences the gate releases per pass.
pub const GATE_BATCH_MAX: usize = 4096;

/// The first command in `seqs` (journal sequences, `None` for queries) above `bound`: the
/// answers from there on wait. Queries are never held by themselves, but leave in order.
pub fn first_held(seqs: impl Iterator<Item = Option<u64>>, bound: u64) -> Option<(usize, u64)> {
    if bound == u64::MAX {
        return None; // nothing is looked at twice without a bound
    }
    seqs.enumerate()
        .find_map(|(i, seq)| seq.filter(|&s| s > bound).map(|s| (i, s)))
}

pub struct Gate {
    ring: Consumer<Slot>,
    /// The gate stopped at a command whose sequence the standby has not acked.
    held_for: Option<u64>,
}

impl Gate {
    pub fn new(ring: Consumer<Slot>) -> Gate {
        Gate {
            ring,
            held_for: None,
        }
    }

    /// The highest ring sequence released.
    pub fn processed(&self) -> u64 {
        self.ring.processed()
    }

    /// Whether there are answers it may release now under `bound`.
    pub fn ready(&mut self, bound: u64) -> bool {
        self.ring.has_ready() && self.held_for.is_none_or(|held| bound >= held)
    }

    /// Hand every slot that may leave under `bound` to `deliver`, in order; how many.
    pub fn release(&mut self, bound: u64, mut deliver: impl FnMut(&Slot)) -> u64 {
        let mut released = 0;
        self.held_for = None;
        while let Some(mut batch) = self.ring.try_read_up_to(GATE_BATCH_MAX) {
            let first = batch.first_sequence();
            let seqs = batch
                .iter()
                .map(|(_, slot)| slot.is_command().then_some(slot.seq));
            if let Some((index, seq)) = first_held(seqs, bound) {
                self.held_for = Some(seq);
                batch.release_before(first + index as u64);
                if batch.is_empty() {
                    break;
                }
            }
            released += batch.len() as u64;
            for (_, slot) in batch.iter() {
                deliver(slot);
            }
            if self.held_for.is_some() {
                break;
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_wait_from_the_first_command_above_the_bound() {
        let seqs = [Some(5), None, Some(6), Some(7), None, Some(8)];
        let held = |bound| first_held(seqs.iter().copied(), bound);
        assert_eq!(held(u64::MAX), None);
        assert_eq!(held(8), None);
        assert_eq!(held(7), Some((5, 8)));
        assert_eq!(
            held(5),
            Some((2, 6)),
            "the query between waits behind nothing"
        );
        assert_eq!(held(4), Some((0, 5)));
        assert_eq!(
            first_held([None, None].into_iter(), 0),
            None,
            "queries alone"
        );
    }
}
