//! What decides which answers may leave, in one place the gate owns: the durable sequence
//! (the journal's sync side publishes it, in order), and the bound the gate released under
//! last (the lower of it and the group's replication bound, `group::bound`). The standby's
//! acker, the coordinator, the feed and `/metrics` read them here.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use crate::group::node::Node;

#[derive(Default)]
pub struct Release {
    durable_seq: AtomicU64,
    bound_seq: AtomicU64,
}

impl Release {
    /// Everything up to here is synced to this node's journal.
    pub fn durable(&self) -> u64 {
        self.durable_seq.load(SeqCst)
    }

    /// The journal's sync side: everything up to `seq` is durable now (it never goes back).
    pub fn publish_durable(&self, seq: u64) {
        let before = self.durable_seq.swap(seq, SeqCst);
        debug_assert!(
            seq >= before,
            "the durable sequence went from {before} back to {seq}"
        );
    }

    /// The highest sequence whose answer the gate may release, as it last computed it.
    pub fn bound(&self) -> u64 {
        self.bound_seq.load(SeqCst)
    }

    /// The bound now, at `now_ns`: durable here and within the replication bound. Kept for
    /// the readers.
    pub fn compute(&self, node: &Node, now_ns: u64) -> u64 {
        let bound = node.release_bound(now_ns).min(self.durable());
        self.bound_seq.store(bound, SeqCst);
        bound
    }

    /// A bound computed by hand (a simulation's planted fault, a test).
    pub fn set_bound(&self, bound: u64) {
        self.bound_seq.store(bound, SeqCst);
    }
}
