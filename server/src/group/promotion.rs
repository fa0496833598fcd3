//! Promotion, a hand-shake between the caller and the gateway. The admin call (or automatic
//! failover, or an election) requests it: the role goes standby → promoting, the follower
//! stops and tells the old primary of the new epoch. The gateway, on its next turn, closes
//! the follower's intake, sequences everything received (`pipeline::promote`), and completes
//! here: the new epoch is stored from the next sequence, promoting → primary, and the next
//! write it reads is numbered by this node. The caller waits for that (`wait`) or, stepping
//! the node by hand, looks (`outcome`). `Node` holds the state and offers the calls
//! (`Node::promote`, `request_promotion`, `complete_promotion`, …); this file knows only the
//! parts it changes.
//!
//! A primary whose lease etcd expired and that won the leader key again starts a new term
//! the same way (`request_new_term`): it stays the primary, and the gateway stores the new
//! epoch at a sequence boundary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::PromoteError;
use crate::group::epochs::EpochStore;
use crate::group::role::{Role, RoleCell, RoleEvent};
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
    count: AtomicU64,
}

impl Promotion {
    /// Promotions of this node to primary so far.
    pub fn count(&self) -> u64 {
        self.count.load(SeqCst)
    }

    /// Begin a promotion (the role goes standby → promoting), to `epoch` when given (a
    /// fencing token from the coordinator, above every epoch this node knows), else to the
    /// next epoch. The node stops following (`Node::request_promotion`).
    pub fn request(
        &self,
        role: &RoleCell,
        now_ns: u64,
        epoch: Option<u64>,
    ) -> Result<(), PromoteError> {
        let mut state = self.state.lock().expect("promotion lock");
        role.apply(RoleEvent::PromotionAsked)
            .map_err(|role| PromoteError::NotStandby(role.name()))?;
        *state = State::Asked(now_ns, epoch);
        Ok(())
    }

    /// Begin a primary's new term at `epoch`.
    pub fn request_new_term(
        &self,
        role: &RoleCell,
        now_ns: u64,
        epoch: u64,
    ) -> Result<(), PromoteError> {
        let mut state = self.state.lock().expect("promotion lock");
        if role.get() != Role::Primary {
            return Err(PromoteError::NotPrimary(role.get().name()));
        }
        *state = State::NewTerm(now_ns, epoch);
        Ok(())
    }

    /// Wait up to `timeout` for the promotion requested to complete.
    pub fn wait(&self, timeout: Duration) -> Result<Promoted, PromoteError> {
        let state = self.state.lock().expect("promotion lock");
        let (mut state, _) = self
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
    pub fn outcome(&self) -> Option<Result<Promoted, PromoteError>> {
        let mut state = self.state.lock().expect("promotion lock");
        match std::mem::take(&mut *state) {
            State::Done(result) => Some(result),
            other => {
                *state = other;
                None
            }
        }
    }

    /// Whether the gateway has a promotion or a new term to complete, the node being `role`.
    pub fn pending(&self, role: Role) -> bool {
        let state = self.state.lock().expect("promotion lock");
        match *state {
            State::Asked(..) => role == Role::Promoting,
            State::NewTerm(..) => role == Role::Primary,
            _ => false,
        }
    }

    /// The gateway's half, at a sequence boundary with everything the follower handed over
    /// in the ring (`pipeline::promote`): store the new epoch starting at `start_seq`, be
    /// the primary (a fresh one may serve alone: `alone_ok`), and tell the caller.
    pub fn complete(
        &self,
        role: &RoleCell,
        epochs: &EpochStore,
        alone_ok: &AtomicBool,
        start_seq: u64,
        now_ns: u64,
    ) {
        if !self.pending(role.get()) {
            return;
        }
        let mut state = self.state.lock().expect("promotion lock");
        let (asked_ns, to_epoch, new_term) = match *state {
            State::Asked(at, epoch) => (at, epoch, false),
            State::NewTerm(at, epoch) => (at, Some(epoch), true),
            _ => return,
        };
        crash_point::reached("promote.before_epoch_store");
        let stored = epochs.update(|epochs| {
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
                    alone_ok.store(true, SeqCst);
                    let _ = role.apply(RoleEvent::PromotionDone);
                    crash_point::reached("promote.after_role_switch");
                    self.count.fetch_add(1, SeqCst);
                }
                Ok(Promoted {
                    epoch,
                    start_seq,
                    micros: now_ns.saturating_sub(asked_ns) / 1_000,
                })
            }
            Err(e) => {
                if !new_term {
                    let _ = role.apply(RoleEvent::PromotionFailed);
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
        self.done.notify_all();
    }
}
