//! Promotion, a hand-shake between the caller and the gateway. The admin call (or automatic
//! failover, or an election) requests it: the role goes standby → promoting, the follower
//! stops and tells the old primary of the new epoch. The gateway, on its next turn, closes
//! the follower's intake, sequences everything received (`pipeline::promote`), and completes
//! here: the new epoch is stored from the next sequence, promoting → primary, and the next
//! write it reads is numbered by this node. The caller waits for that (`wait`) or, stepping
//! the node by hand, looks (`outcome`).
//!
//! A primary whose lease etcd expired and that won the leader key again starts a new term
//! the same way (`request_new_term`): it stays the primary, and the gateway stores the new
//! epoch at a sequence boundary.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::PromoteError;
use crate::group::node::Node;
use crate::group::role::{Role, RoleEvent};
use crate::telemetry::crash_point;
use crate::telemetry::log::{self, Level};

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
    /// A standby asked at this `mono_ns`, for this epoch (`None`: the next one).
    Asked(u64, Option<u64>),
    /// A primary re-elected at this `mono_ns` to this epoch.
    NewTerm(u64, u64),
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
        Promotion::request(node, now_ns, epoch)?;
        Promotion::wait(node, timeout)
    }

    /// Begin a promotion, without waiting for it.
    pub fn request(node: &Node, now_ns: u64, epoch: Option<u64>) -> Result<(), PromoteError> {
        let this = &node.promotion;
        let mut state = this.state.lock().expect("promotion lock");
        node.role
            .apply(RoleEvent::PromotionAsked)
            .map_err(|role| PromoteError::NotStandby(role.name()))?;
        *state = State::Asked(now_ns, epoch);
        drop(state);
        // Stop following now: the old primary is told of the new epoch (best effort).
        node.follower.stop();
        node.follower
            .link
            .fence_and_close(epoch.unwrap_or(node.epoch() + 1));
        crash_point::reached("promote.asked");
        node.nudge();
        Ok(())
    }

    /// A primary re-elected to `epoch` starts it and waits up to `timeout`.
    pub fn new_term(
        node: &Node,
        now_ns: u64,
        timeout: Duration,
        epoch: u64,
    ) -> Result<Promoted, PromoteError> {
        Promotion::request_new_term(node, now_ns, epoch)?;
        Promotion::wait(node, timeout)
    }

    /// Begin a primary's new term, without waiting for it.
    pub fn request_new_term(node: &Node, now_ns: u64, epoch: u64) -> Result<(), PromoteError> {
        let this = &node.promotion;
        let mut state = this.state.lock().expect("promotion lock");
        if node.role() != Role::Primary {
            return Err(PromoteError::NotPrimary(node.role().name()));
        }
        *state = State::NewTerm(now_ns, epoch);
        drop(state);
        node.nudge();
        Ok(())
    }

    /// Wait up to `timeout` for the promotion requested to complete.
    pub fn wait(node: &Node, timeout: Duration) -> Result<Promoted, PromoteError> {
        let this = &node.promotion;
        let state = this.state.lock().expect("promotion lock");
        let (mut state, _) = this
            .done
            .wait_timeout_while(state, timeout, |s| {
                matches!(s, State::Asked(..) | State::NewTerm(..))
            })
            .expect("promotion lock");
        match std::mem::take(&mut *state) {
            State::Done(result) => result,
            _ => Err(PromoteError::TimedOut(timeout.as_millis() as u64)),
        }
    }

    /// The outcome of the promotion requested, once there is one (taken).
    pub fn outcome(node: &Node) -> Option<Result<Promoted, PromoteError>> {
        let mut state = node.promotion.state.lock().expect("promotion lock");
        match std::mem::take(&mut *state) {
            State::Done(result) => Some(result),
            other => {
                *state = other;
                None
            }
        }
    }

    /// Whether the gateway has a promotion or a new term to complete.
    pub fn pending(node: &Node) -> bool {
        let state = node.promotion.state.lock().expect("promotion lock");
        match *state {
            State::Asked(..) => node.role() == Role::Promoting,
            State::NewTerm(..) => node.role() == Role::Primary,
            _ => false,
        }
    }

    /// The gateway's half, at a sequence boundary with everything the follower handed over
    /// in the ring (`pipeline::promote`): store the new epoch starting at `start_seq`, be
    /// the primary, and tell the caller.
    pub fn complete(node: &Node, start_seq: u64, now_ns: u64) {
        if !Promotion::pending(node) {
            return;
        }
        let this = &node.promotion;
        let mut state = this.state.lock().expect("promotion lock");
        let (asked_ns, to_epoch, new_term) = match *state {
            State::Asked(at, epoch) => (at, epoch, false),
            State::NewTerm(at, epoch) => (at, Some(epoch), true),
            _ => return,
        };
        crash_point::reached("promote.before_epoch_store");
        let stored = node.epochs.update(|epochs| {
            Some(match to_epoch {
                Some(epoch) => epochs.promote_to(epoch.max(epochs.epoch + 1), start_seq),
                None => epochs.promote(start_seq),
            })
        });
        // Asked → the new epoch durable and the role switched (the store is most of it).
        let result = match stored {
            Ok(epoch) => {
                let epoch = epoch.expect("a promotion always changes the epochs");
                crash_point::reached("promote.after_epoch_store");
                if !new_term {
                    node.policy.alone_ok.store(true, SeqCst);
                    let _ = node.role.apply(RoleEvent::PromotionDone);
                    crash_point::reached("promote.after_role_switch");
                    this.count.fetch_add(1, SeqCst);
                }
                Ok(Promoted {
                    epoch,
                    start_seq,
                    micros: now_ns.saturating_sub(asked_ns) / 1_000,
                })
            }
            Err(e) => {
                if !new_term {
                    let _ = node.role.apply(RoleEvent::PromotionFailed);
                }
                Err(PromoteError::EpochStore(e.to_string()))
            }
        };
        let event = if new_term { "new_term" } else { "promoted" };
        match &result {
            Ok(p) => log::line(
                Level::Warn,
                event,
                None,
                &[
                    ("epoch", &p.epoch),
                    ("start_seq", &p.start_seq),
                    ("us", &p.micros),
                ],
            ),
            Err(e) => log::line(Level::Error, "promotion_failed", None, &[("error", e)]),
        }
        *state = State::Done(result);
        this.done.notify_all();
    }
}
