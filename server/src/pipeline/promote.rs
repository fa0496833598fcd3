//! The gateway's half of a promotion (or of a primary's new term), each turn while one is
//! pending: close the follower's intake and publish everything it handed over, then let
//! `group::promotion` store the new epoch from the next sequence. From the next turn this
//! node numbers its own commands in it. A new term ends the standbys' sessions, so that each
//! takes the new history before any record of the new term reaches it.

use crate::group::node::Node;
use crate::group::role::Role;
use crate::pipeline::sequencer::Sequencer;

pub fn try_complete(node: &Node, sequencer: &mut Sequencer) {
    if !node.promotion_pending() {
        return;
    }
    let new_term = node.role() == Role::Primary;
    if !new_term && !sequencer.close_replicated_intake(node.follower()) {
        return; // the follower is handing a batch over, or the ring is full: next turn
    }
    node.complete_promotion(sequencer.next_seq(), sequencer.mono_ns());
    sequencer.promoted();
    if new_term {
        // The standbys' sessions began in the old term: they end, and each standby's next
        // handshake takes the new history (the new term's entry) before any record of it.
        node.standbys().shut_down_all();
    }
}
