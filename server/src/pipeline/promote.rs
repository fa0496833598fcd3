//! The gateway's half of a promotion (or of a primary's new term), each turn while one is
//! pending: close the follower's intake and publish everything it handed over, then let
//! `group::promotion` store the new epoch from the next sequence. From the next turn this
//! node numbers its own commands in it.

use crate::group::node::Node;
use crate::group::promotion::Promotion;
use crate::group::role::Role;
use crate::pipeline::sequencer::Sequencer;

pub fn try_complete(node: &Node, sequencer: &mut Sequencer) {
    if !Promotion::pending(node) {
        return;
    }
    if node.role() == Role::Promoting && !sequencer.close_replicated_intake(&node.follower) {
        return; // the follower is handing a batch over, or the ring is full: next turn
    }
    Promotion::complete(node, sequencer.next_seq(), sequencer.mono_ns());
    sequencer.promoted();
}
