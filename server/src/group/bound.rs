//! The replication bound: the highest journal sequence whose answer may leave this node
//! now, from its role, its ack policy, what the standbys that count acked, and its lease. A
//! pure function of `BoundInputs`; the gate takes the lower of it and the durable sequence.

use replicator::standbys::{CATCHING_UP, DETACHED, STREAMING};

use crate::group::role::Role;

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
}
