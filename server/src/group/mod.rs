//! This node in a replicated group: what it is (`role.rs`), its epochs, what it waits for
//! from its standbys and what losing them means (`bound.rs`), the standby side's state
//! (`follower_side.rs`), promotion, and the lease and campaign through etcd
//! (`coordinator/`). Decisions only: threads, sockets, files and etcd
//! live in `drivers/`, which feeds these their inputs and carries out what they decide.

pub mod bound;
pub mod coordinator;
pub mod epochs;
pub mod follower_side;
pub mod node;
pub mod promotion;
pub mod role;

/// Gets the gateway to look at the node again (a role change, an ack): the pipeline's
/// `Wake`, or nothing in a test that steps the stages by hand.
pub trait Nudge: Send + Sync {
    fn nudge(&self);
}
