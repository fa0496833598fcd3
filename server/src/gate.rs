//! The release gate: the ring's last stage, after the journal stage and the engine stage. An
//! answer for sequence N leaves only when N is applied (the gate follows the engine stage),
//! durable here (the gate follows the journal stage, which passes a slot once written, and
//! its bound is at most the durable sequence, published as syncs return), and, in the
//! synchronous replication modes, at or below the replication bound (what `sync_standbys`
//! of the standbys acked). `replication_bound` is that rule as a pure function; `Gate::release` hands every
//! slot it lets through, in order, to the caller (connections encode and send).

use engine::ring::Consumer;
use replicator::standbys::{CATCHING_UP, DETACHED, STREAMING};

use crate::role::Role;
use crate::slot::Slot;

/// Sequences the gate releases per pass.
pub const GATE_BATCH_MAX: usize = 4096;

/// Everything the replication bound depends on, read from the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundInputs {
    pub role: Role,
    /// A standby in a synchronous ack mode may hold writes back.
    pub synchronous: bool,
    /// `on_standby_loss = "degrade"`.
    pub degrade: bool,
    /// A newly promoted node may serve alone until a standby streams from it.
    pub alone_ok: bool,
    /// The standbys that count, as one state (`Standbys::state_for`): `STREAMING` when
    /// enough stream, `CATCHING_UP` when enough are attached, else `DETACHED`.
    pub standby: u8,
    /// The highest sequence enough of them acked, each as its ack mode counts.
    pub acked: u64,
    /// With failover through etcd: this node's lease may have run out (its deadline passed).
    /// Past it, an answer leaves only for a sequence the standby has received while it
    /// still follows this node: a standby that campaigns has stopped following first.
    pub lease_lapsed: bool,
    /// What a following standby has received that may leave past the deadline (0: none;
    /// `Node::witnessed`).
    pub witnessed: u64,
    /// This node may acknowledge alone (`degrade`, or freshly promoted): without etcd always;
    /// with etcd only once etcd records that no standby is in sync (`{prefix}/sync` empty),
    /// so that a standby lacking those writes cannot win an election.
    pub alone_cleared: bool,
}

/// The highest journal sequence whose answer may leave now.
pub fn replication_bound(i: BoundInputs) -> u64 {
    debug_assert!([DETACHED, CATCHING_UP, STREAMING].contains(&i.standby));
    match i.role {
        // A standby's answers are queries on what it holds: nothing to wait for.
        Role::Standby | Role::Promoting => u64::MAX,
        // Replaced: nothing more leaves that the standby (now primary) may lack.
        Role::Fenced => i.acked,
        Role::Primary if i.lease_lapsed => i.witnessed.min(primary_bound(i)),
        Role::Primary => primary_bound(i),
    }
}

/// A primary's bound from its ack modes and standbys alone.
fn primary_bound(i: BoundInputs) -> u64 {
    let alone = i.standby == DETACHED && (i.degrade || i.alone_ok) && i.alone_cleared;
    if !i.synchronous || alone {
        u64::MAX
    } else {
        i.acked
    }
}

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
    use replicator::AckMode::{self, *};
    use Role::*;

    fn bound(role: Role, ack: AckMode, degrade: bool, alone_ok: bool, standby: u8) -> u64 {
        replication_bound(BoundInputs {
            role,
            synchronous: ack != Async,
            degrade,
            alone_ok,
            standby,
            acked: 42,
            lease_lapsed: false,
            witnessed: 0,
            alone_cleared: true,
        })
    }

    #[test]
    fn the_replication_bound() {
        const ALL: u64 = u64::MAX;
        let table = [
            // role, ack, degrade, alone_ok, standby state → bound
            (Standby, Durable, false, false, DETACHED, ALL),
            (Promoting, Durable, false, false, DETACHED, ALL),
            (Fenced, Durable, false, false, STREAMING, 42),
            (Fenced, Async, true, true, DETACHED, 42),
            (Primary, Async, false, false, DETACHED, ALL),
            (Primary, Async, false, false, STREAMING, ALL),
            (Primary, Durable, false, false, STREAMING, 42),
            (Primary, Received, false, false, CATCHING_UP, 42),
            // halt: no standby, nothing leaves past what was acked
            (Primary, Durable, false, false, DETACHED, 42),
            // degrade: alone, everything leaves
            (Primary, Durable, true, false, DETACHED, ALL),
            (Primary, Durable, true, false, STREAMING, 42),
            // freshly promoted: alone until a standby streams
            (Primary, Durable, false, true, DETACHED, ALL),
            (Primary, Durable, false, true, CATCHING_UP, 42),
        ];
        for (role, ack, degrade, alone_ok, standby, want) in table {
            assert_eq!(
                bound(role, ack, degrade, alone_ok, standby),
                want,
                "{role:?} {ack:?} degrade={degrade} alone_ok={alone_ok} standby={standby}"
            );
        }
    }

    #[test]
    fn past_the_lease_deadline_only_what_a_following_standby_received_leaves() {
        let lapsed = |ack, standby, witnessed| {
            replication_bound(BoundInputs {
                role: Primary,
                synchronous: ack != Async,
                degrade: true,
                alone_ok: false,
                standby,
                acked: 42,
                lease_lapsed: true,
                witnessed,
                alone_cleared: true,
            })
        };
        // async acks alone, but not past the deadline: only what the standby received.
        assert_eq!(lapsed(Async, STREAMING, 50), 50);
        assert_eq!(lapsed(Async, DETACHED, 0), 0);
        // Synchronous: the ack bound still applies, and is the lower one.
        assert_eq!(lapsed(Durable, STREAMING, 50), 42);
        // degrade with no standby would release everything; past the deadline, nothing.
        assert_eq!(lapsed(Durable, DETACHED, 0), 0);
        // A standby is not held by a lease it does not have.
        let standby = replication_bound(BoundInputs {
            role: Standby,
            synchronous: true,
            degrade: false,
            alone_ok: false,
            standby: DETACHED,
            acked: 0,
            lease_lapsed: true,
            witnessed: 0,
            alone_cleared: true,
        });
        assert_eq!(standby, u64::MAX);
    }

    #[test]
    fn with_etcd_a_primary_acknowledges_alone_only_once_no_standby_is_in_sync() {
        let alone = |alone_cleared| {
            replication_bound(BoundInputs {
                role: Primary,
                synchronous: true,
                degrade: true,
                alone_ok: false,
                standby: DETACHED,
                acked: 42,
                lease_lapsed: false,
                witnessed: 0,
                alone_cleared,
            })
        };
        assert_eq!(
            alone(false),
            42,
            "etcd still names the lost standby as in sync"
        );
        assert_eq!(alone(true), u64::MAX);
    }

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
