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
use crate::error::Result;
use crate::group::bound::{replication_bound, BoundInputs};
use crate::group::epochs::{EpochFile, EpochStore};
use crate::group::follower_side::FollowerSide;
use crate::group::promotion::Promotion;
use crate::group::role::{Role, RoleCell, RoleEvent};
use crate::group::Nudge;
use crate::telemetry::log::{self, Level};

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

pub struct Node {
    pub role: RoleCell,
    pub epochs: EpochStore,
    pub policy: AckPolicy,
    /// The standbys, as the primary side tracks them (written by the replicator).
    pub standbys: Arc<Standbys>,
    /// Rolling-hash checkpoints of this node's engine (written by the engine stage).
    pub checkpoints: Arc<Recent>,
    /// The standby side: link, received sequence, comparison, intake, truncation.
    pub follower: FollowerSide,
    pub promotion: Promotion,
    /// With failover through etcd: the lease deadline (`coordination.rs` writes it).
    pub lease: LeaseGate,
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
    /// (coordinator::candidacy).
    fn witnessed(&self) -> u64 {
        let (attached, _) = self.standbys.counting();
        match attached {
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

pub fn repl_code(code: ReplicationCode) -> log::LogCode {
    (code.number(), code.name())
}
