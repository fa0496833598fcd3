//! This node in a replicated group: its role (`role.rs`), its epochs (the synced `epoch`
//! file), its ack policy (what the release gate waits for from the standbys, and what losing
//! them means), the standbys it streams to (primary side), the follower's state
//! (standby side, `follow.rs`), and the promotion hand-shake (`promotion.rs`). Every thread
//! reads it; each part says who writes it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use engine::Code;
use replicator::checkpoints::Recent;
use replicator::standbys::{Standbys, DETACHED, STREAMING};
use replicator::{Epochs, ReplicationCode};

use crate::config::{AckMode, ReplicationSection};
use crate::error::PromoteError;
use crate::error::Result;
use crate::group::bound::{replication_bound, BoundInputs};
use crate::group::epochs::{EpochFile, EpochStore};
use crate::group::follower_side::FollowerSide;
use crate::group::promotion::{Promoted, Promotion};
use crate::group::role::{Role, RoleCell, RoleEvent};
use crate::group::Nudge;
use crate::telemetry::crash_point;
use crate::telemetry::log::{self, repl_code, Level};

/// What the release gate waits for from the standbys, and what losing them means.
pub struct AckPolicy {
    /// Replication is configured (a primary with a port, or any standby).
    pub replicated: bool,
    /// The mode of a standby not named in `replication.standby_ack`.
    pub ack: AckMode,
    /// A standby in a synchronous mode may hold writes back (`ack`, or a named standby's).
    pub synchronous: bool,
    /// How many of them must ack a write (`replication.sync_standbys`).
    pub needed: usize,
    /// `on_standby_loss = "degrade"`.
    pub degrade: bool,
    /// A promoted node may serve alone until a standby streams from it again.
    pub alone_ok: AtomicBool,
}

/// The node in its group. Its parts are private: each reader gets the handle it needs
/// (`lease()` for the coordinator and `/metrics`, `follower()` for the standby's session and
/// the sequencer's intake, `standbys()` for the primary's sessions), and what decides
/// (the role, the epochs, promotion) changes only through the node's methods and
/// `group::promotion`.
pub struct Node {
    pub(in crate::group) role: RoleCell,
    pub(in crate::group) epochs: EpochStore,
    pub(in crate::group) policy: AckPolicy,
    /// The standbys, as the primary side tracks them (written by the replicator).
    standbys: Arc<Standbys>,
    /// Rolling-hash checkpoints of this node's engine (written by the engine stage).
    checkpoints: Arc<Recent>,
    /// The standby side: link, received sequence, comparison, intake, truncation.
    pub(in crate::group) follower: FollowerSide,
    pub(in crate::group) promotion: Promotion,
    /// With failover through etcd: the lease deadline (the coordinator writes it).
    lease: LeaseGate,
    wake: Mutex<Option<Arc<dyn Nudge>>>,
}

/// Until when this node may acknowledge as the primary, by its lease in etcd
/// (`coordinator::Deadline`); without etcd, always. Written by `coordination.rs`.
#[derive(Default)]
pub struct LeaseGate {
    pub enabled: AtomicBool,
    /// Monotonic nanoseconds.
    pub deadline_ns: AtomicU64,
    /// etcd answered the last call.
    pub reachable: AtomicBool,
    /// This node holds the leader key.
    pub leading: AtomicBool,
    /// etcd records that no standby is in sync (`{prefix}/sync` empty for this epoch): this
    /// primary may acknowledge alone.
    pub sync_cleared: AtomicBool,
    /// Calls no etcd endpoint answered.
    pub unreachable_total: AtomicU64,
    /// Auth tokens bought from etcd (`coordinator.username`): one at the start, one more for
    /// each that expired or was refused.
    pub authentications_total: AtomicU64,
    /// The clock `deadline_ns` is on (the server's).
    pub clock: std::sync::OnceLock<Arc<dyn replicator::clock::Clock>>,
}

impl LeaseGate {
    /// Milliseconds until the deadline (0: passed, or no lease).
    pub fn left_ms(&self) -> u64 {
        self.clock.get().map_or(0, |clock| {
            self.deadline_ns
                .load(SeqCst)
                .saturating_sub(clock.mono_ns())
                / 1_000_000
        })
    }

    /// Whether the deadline has passed at `now_ns` (never without etcd).
    pub fn lapsed(&self, now_ns: u64) -> bool {
        self.enabled.load(SeqCst) && now_ns >= self.deadline_ns.load(SeqCst)
    }
}

impl Node {
    pub fn new(
        epoch_file: Box<dyn EpochFile>,
        role: Role,
        epochs: Epochs,
        r: &ReplicationSection,
        replicated: bool,
    ) -> Result<Node> {
        let standbys = r.standbys()?;
        Ok(Node {
            role: RoleCell::new(role),
            epochs: EpochStore::new(epoch_file, epochs),
            policy: AckPolicy {
                replicated,
                ack: if replicated {
                    r.ack_mode()?
                } else {
                    AckMode::Async
                },
                synchronous: replicated && standbys.any_synchronous(),
                needed: r.sync_standbys,
                degrade: r.degrade(),
                alone_ok: AtomicBool::new(false),
            },
            standbys: Arc::new(standbys),
            checkpoints: Arc::new(Recent::default()),
            follower: FollowerSide::default(),
            promotion: Promotion::default(),
            lease: LeaseGate {
                // With etcd, nothing is acknowledged as the primary until the coordinator has
                // published the lease's deadline (it attaches right after the start).
                enabled: AtomicBool::new(r.etcd_failover()),
                ..LeaseGate::default()
            },
            wake: Mutex::new(None),
        })
    }

    pub fn attach(&self, wake: Arc<dyn Nudge>) {
        *self.wake.lock().expect("node lock") = Some(wake);
    }

    /// Get the gateway to look at the node again (a role change, an ack).
    pub fn nudge(&self) {
        if let Some(w) = self.wake.lock().expect("node lock").as_ref() {
            w.nudge();
        }
    }

    pub fn role(&self) -> Role {
        self.role.get()
    }

    /// The epochs now (a copy).
    pub fn epochs(&self) -> Epochs {
        self.epochs.get()
    }

    pub fn policy(&self) -> &AckPolicy {
        &self.policy
    }

    pub fn standbys(&self) -> &Arc<Standbys> {
        &self.standbys
    }

    pub fn checkpoints(&self) -> &Arc<Recent> {
        &self.checkpoints
    }

    pub fn follower(&self) -> &FollowerSide {
        &self.follower
    }

    pub fn lease(&self) -> &LeaseGate {
        &self.lease
    }

    /// Promotions of this node to primary.
    pub fn promotions(&self) -> u64 {
        self.promotion.count()
    }

    /// Promote this standby and wait up to `timeout` for the gateway to do it: to `epoch`
    /// when given (a fencing token from the coordinator), else to the next epoch.
    pub fn promote(
        &self,
        now_ns: u64,
        timeout: std::time::Duration,
        epoch: Option<u64>,
    ) -> std::result::Result<Promoted, PromoteError> {
        self.request_promotion(now_ns, epoch)?;
        self.promotion.wait(timeout)
    }

    /// Begin a promotion without waiting: the role goes standby → promoting, and the
    /// follower stops and tells the old primary of the new epoch (best effort).
    pub fn request_promotion(
        &self,
        now_ns: u64,
        epoch: Option<u64>,
    ) -> std::result::Result<(), PromoteError> {
        self.promotion.request(&self.role, now_ns, epoch)?;
        self.follower.stop();
        self.follower
            .link
            .fence_and_close(epoch.unwrap_or(self.epoch() + 1));
        crash_point::reached("promote.asked");
        self.nudge();
        Ok(())
    }

    /// A primary re-elected to `epoch` starts it, and waits up to `timeout`.
    pub fn new_term(
        &self,
        now_ns: u64,
        timeout: std::time::Duration,
        epoch: u64,
    ) -> std::result::Result<Promoted, PromoteError> {
        self.request_new_term(now_ns, epoch)?;
        self.promotion.wait(timeout)
    }

    /// Begin a new term without waiting.
    pub fn request_new_term(
        &self,
        now_ns: u64,
        epoch: u64,
    ) -> std::result::Result<(), PromoteError> {
        self.promotion.request_new_term(&self.role, now_ns, epoch)?;
        self.nudge();
        Ok(())
    }

    /// The outcome of the promotion (or new term) requested, once there is one.
    pub fn promotion_outcome(&self) -> Option<std::result::Result<Promoted, PromoteError>> {
        self.promotion.outcome()
    }

    /// Whether the gateway has a promotion or a new term to complete.
    pub fn promotion_pending(&self) -> bool {
        self.promotion.pending(self.role())
    }

    /// The gateway's half (`pipeline::promote`), at a sequence boundary: the new epoch from
    /// `start_seq`.
    pub fn complete_promotion(&self, start_seq: u64, now_ns: u64) {
        self.promotion.complete(
            &self.role,
            &self.epochs,
            &self.policy.alone_ok,
            start_seq,
            now_ns,
        );
    }

    pub fn epoch(&self) -> u64 {
        self.epochs.epoch()
    }

    /// The code a write is refused with now, if it is.
    pub fn write_refusal(&self) -> Option<Code> {
        match self.role() {
            Role::Primary if self.halted() => Some(Code::StandbyUnavailable),
            role => role.write_refusal(),
        }
    }

    /// The replication as one state: whether `needed` counting standbys stream, are
    /// attached, or not; with no synchronous standby, the furthest standby's state.
    pub fn standby_state(&self) -> u8 {
        match self.policy.synchronous {
            true => self.standbys.state_for(self.policy.needed),
            false => self.standbys.best_state(),
        }
    }

    fn standby_detached(&self) -> bool {
        self.standby_state() == DETACHED
    }

    /// Synchronous replication, fewer standbys than it needs, and `halt`: no write can be
    /// acknowledged.
    fn halted(&self) -> bool {
        let p = &self.policy;
        p.synchronous && !p.degrade && !p.alone_ok.load(SeqCst) && self.standby_detached()
    }

    /// Whether synchronous replication is running without the standbys it needs.
    pub fn degraded(&self) -> bool {
        let p = &self.policy;
        p.synchronous
            && self.role() == Role::Primary
            && self.standby_detached()
            && (p.degrade || p.alone_ok.load(SeqCst))
    }

    /// The highest journal sequence whose answer may leave at `now_ns` (the gate holds the
    /// rest).
    pub fn release_bound(&self, now_ns: u64) -> u64 {
        let p = &self.policy;
        let role = self.role();
        let standby = self.standby_state();
        // A plain load first: this runs on every release pass; the swap only once.
        if role == Role::Primary
            && standby == STREAMING
            && p.alone_ok.load(SeqCst)
            && p.alone_ok.swap(false, SeqCst)
        {
            log::info(
                "replication_synchronous",
                &[("detail", &"a standby streams again")],
            );
        }
        replication_bound(BoundInputs {
            role,
            synchronous: p.synchronous,
            degrade: p.degrade,
            alone_ok: p.alone_ok.load(SeqCst),
            standby,
            acked: self.acked(),
            lease_lapsed: self.lease.lapsed(now_ns),
            witnessed: self.witnessed(),
            alone_cleared: !self.lease.enabled.load(SeqCst) || self.lease.sync_cleared.load(SeqCst),
        })
    }

    /// The highest sequence the standbys that count acked, `needed` of them, each in its
    /// own mode.
    pub fn acked(&self) -> u64 {
        self.standbys.acked_by(self.policy.needed)
    }

    /// Past the lease deadline, what may still leave: with one standby in sync, what it
    /// received while it still follows this node (it stops following before it campaigns,
    /// and it holds everything it received when it promotes). With several, nothing: the
    /// one that wins compares positions published once the leader key is gone, and a
    /// standby that received more after publishing must not have its writes acknowledged
    /// (coordinator::candidacy). Counted by the standbys named in sync (their acks count),
    /// attached or not: a named one that detached may be the one that wins, lacking what the
    /// other received (the simulator found this, seed 32).
    fn witnessed(&self) -> u64 {
        match self.standbys.named() {
            1 => self.standbys.received_by(1),
            _ => 0,
        }
    }

    /// Another node is at `epoch`. If it is newer, stop taking writes, durably.
    pub fn fenced_by(&self, epoch: u64, why: &str) {
        let learned = self
            .epochs
            .update(|epochs| epochs.learn(epoch).then_some(()));
        match learned {
            Ok(None) => return,
            Ok(Some(())) => {}
            // Memory keeps the old epoch, but writes stop all the same: a newer primary exists.
            Err(e) => log::line(Level::Error, "epoch_store_failed", None, &[("error", &e)]),
        }
        let _ = self.role.apply(RoleEvent::NewerEpochSeen);
        log::line(
            Level::Warn,
            "fenced",
            Some(repl_code(ReplicationCode::Fenced)),
            &[("epoch", &epoch), ("why", &why)],
        );
        self.nudge();
    }

    /// A standby follows a primary of `epoch` with this history. Refused (`Ok(Err(why))`)
    /// once this node is no longer a plain standby (a promotion began: it never follows
    /// again) or when the primary would move it back (`Epochs::adopt`). Checked under the
    /// epochs' lock, which a promotion's store of its new epoch also takes: either the
    /// adoption comes first and the promotion appends to it, or it sees the promotion.
    pub fn adopt(
        &self,
        epoch: u64,
        history: &[(u64, u64)],
    ) -> std::io::Result<std::result::Result<(), String>> {
        let mut refusal = None;
        self.epochs.update(|epochs| {
            if self.role() != Role::Standby || self.follower.stopped() {
                refusal = Some(format!(
                    "this node is {} now and follows no one",
                    self.role().name()
                ));
                return None;
            }
            let before = epochs.clone();
            if let Err(why) = epochs.adopt(epoch, history) {
                refusal = Some(why);
                return None;
            }
            (*epochs != before).then_some(())
        })?;
        Ok(refusal.map_or(Ok(()), Err))
    }

    /// A standby was lost: say what that means for writes.
    pub fn standby_lost(&self) {
        if !self.policy.synchronous || self.role() != Role::Primary {
            return;
        }
        if !self.standby_detached() {
            let (attached, _) = self.standbys.counting();
            log::info(
                "replication_synchronous",
                &[
                    ("standbys_attached", &attached),
                    ("needed", &self.policy.needed),
                    ("detail", &"enough standbys remain: writes go on"),
                ],
            );
            return;
        }
        if self.degraded() {
            log::line(
                Level::Error,
                "replication_degraded",
                Some(repl_code(ReplicationCode::Degraded)),
                &[("detail", &"fewer standbys than replication.sync_standbys: writes are acknowledged on this node alone (RPO > 0) until enough stream again")],
            );
        } else {
            log::line(
                Level::Error,
                "writes_halted",
                Some(repl_code(ReplicationCode::StandbyLost)),
                &[(
                    "detail",
                    &"fewer standbys than replication.sync_standbys and on_standby_loss = halt: writes are refused until enough attach",
                )],
            );
        }
        self.nudge();
    }

    /// The engine applied checkpoint `seq`: remember it and, on a standby, compare it with
    /// the primary's.
    pub fn checkpoint(&self, seq: u64, hash: u64) {
        self.checkpoints.record(seq, hash);
        if self.role().follows() {
            if let Err(d) = self.follower.comparer.mine(seq, hash) {
                self.follower.diverge(d);
            }
        }
    }

    /// How far behind: on a primary, its durable sequence past what the standbys acked; on a standby,
    /// the primary's last sequence past what this node applied.
    pub fn lag_seq(&self, durable: u64, applied: u64) -> u64 {
        if self.role().follows() {
            return self
                .follower
                .link
                .primary_last_seq
                .load(SeqCst)
                .saturating_sub(applied);
        }
        let synced = self
            .standbys
            .attached_kth(self.policy.needed, |s| s.durable.load(SeqCst));
        synced.map_or(0, |synced| durable.saturating_sub(synced))
    }
}
