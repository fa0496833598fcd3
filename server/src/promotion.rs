//! Promotion, a hand-shake between two threads. The admin call (or automatic failover) asks:
//! the role goes standby → promoting, the follower stops and tells the old primary of the
//! new epoch, and the caller waits. The gateway, on its next turn, closes the follower's
//! intake, sequences everything received, stores the new epoch, and completes: promoting →
//! primary, and the next write it reads is numbered by this node.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::crash_point;
use crate::error::PromoteError;
use crate::node::Node;
use crate::ops::log::{self, Level};
use crate::role::{Role, RoleEvent};
use crate::sequencer::Sequencer;

/// The result of a promotion, as the admin call reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promoted {
    pub epoch: u64,
    pub start_seq: u64,
    pub micros: u64,
}

#[derive(Default)]
enum State {
    #[default]
    Idle,
    /// Asked at this `mono_ns`, for this epoch (`None`: the next one).
    Asked(u64, Option<u64>),
    Done(Result<Promoted, PromoteError>),
}

#[derive(Default)]
pub struct Promotion {
    state: Mutex<State>,
    done: Condvar,
    /// Promotions of this node to primary.
    pub count: AtomicU64,
}

impl Promotion {
    /// Ask `node` to promote and wait up to `timeout` for the gateway to do it.
    pub fn ask(node: &Node, now_ns: u64, timeout: Duration) -> Result<Promoted, PromoteError> {
        Promotion::ask_for(node, now_ns, timeout, None)
    }

    /// The same, to `epoch` when given (a fencing token from the coordinator, above every
    /// epoch this node knows), else to the next epoch.
    pub fn ask_for(
        node: &Node,
        now_ns: u64,
        timeout: Duration,
        epoch: Option<u64>,
    ) -> Result<Promoted, PromoteError> {
        let this = &node.promotion;
        let mut state = this.state.lock().expect("promotion lock");
        node.role
            .apply(RoleEvent::PromotionAsked)
            .map_err(|role| PromoteError::NotStandby(role.name()))?;
        *state = State::Asked(now_ns, epoch);
        // Stop following now: the old primary is told of the new epoch (best effort).
        node.follower.stop();
        node.follower
            .link
            .fence_and_close(epoch.unwrap_or(node.epoch() + 1));
        crash_point::reached("promote.asked");
        node.nudge();
        let (mut state, _) = this
            .done
            .wait_timeout_while(state, timeout, |s| matches!(s, State::Asked(..)))
            .expect("promotion lock");
        match std::mem::take(&mut *state) {
            State::Done(result) => result,
            _ => Err(PromoteError::TimedOut(timeout.as_millis() as u64)),
        }
    }

    /// The gateway's half, each turn while the node is promoting: once everything the
    /// follower handed over is in the ring, store the new epoch starting at the next
    /// sequence and become the primary.
    pub fn try_complete(node: &Node, sequencer: &mut Sequencer) {
        if node.role() != Role::Promoting {
            return;
        }
        if !sequencer.close_replicated_intake(&node.follower) {
            return; // the follower is handing a batch over, or the ring is full: next turn
        }
        let start_seq = sequencer.next_seq();
        let this = &node.promotion;
        let mut state = this.state.lock().expect("promotion lock");
        let (asked_ns, to_epoch) = match *state {
            State::Asked(at, epoch) => (Some(at), epoch),
            _ => (None, None),
        };
        crash_point::reached("promote.before_epoch_store");
        let stored = node.epochs.update(|epochs| {
            Some(match to_epoch {
                Some(epoch) => epochs.promote_to(epoch.max(epochs.epoch + 1), start_seq),
                None => epochs.promote(start_seq),
            })
        });
        // Asked → the new epoch durable and the role switched (the store is most of it).
        let now_ns = sequencer.mono_ns();
        let result = match stored {
            Ok(epoch) => {
                let epoch = epoch.expect("a promotion always changes the epochs");
                crash_point::reached("promote.after_epoch_store");
                node.policy
                    .alone_ok
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = node.role.apply(RoleEvent::PromotionDone);
                crash_point::reached("promote.after_role_switch");
                this.count.fetch_add(1, SeqCst);
                Ok(Promoted {
                    epoch,
                    start_seq,
                    micros: asked_ns.map_or(0, |at| now_ns.saturating_sub(at) / 1_000),
                })
            }
            Err(e) => {
                let _ = node.role.apply(RoleEvent::PromotionFailed);
                Err(PromoteError::EpochStore(e.to_string()))
            }
        };
        match &result {
            Ok(p) => log::line(
                Level::Warn,
                "promoted",
                None,
                &[
                    ("epoch", &p.epoch),
                    ("start_seq", &p.start_seq),
                    ("us", &p.micros),
                ],
            ),
            Err(e) => log::line(Level::Error, "promotion_failed", None, &[("error", e)]),
        }
        sequencer.promoted();
        *state = State::Done(result);
        this.done.notify_all();
    }
}
