//! This node in a replicated pair: its role (`role.rs`), its epochs (the synced `epoch`
//! file), its ack policy (what the release gate waits for from the standby, and what losing
//! the standby means), the standby it streams to (primary side), the follower's state
//! (standby side, `follow.rs`), and the promotion hand-shake (`promotion.rs`). Every thread
//! reads it; each part says who writes it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use engine::Code;
use replicator::checkpoints::Recent;
use replicator::primary::{StandbyStatus, DETACHED, STREAMING};
use replicator::{Epochs, ReplicationCode};

use crate::config::{AckMode, ReplicationSection};
use crate::error::Result;
use crate::follow::FollowerSide;
use crate::gate::{replication_bound, BoundInputs};
use crate::ops::log::{self, Level};
use crate::promotion::Promotion;
use crate::role::{Role, RoleCell, RoleEvent};
use crate::shared::Wake;

/// The epoch file and its contents in memory; stored before memory changes.
pub struct EpochStore {
    dir: PathBuf,
    epochs: Mutex<Epochs>,
}

impl EpochStore {
    pub fn new(dir: PathBuf, epochs: Epochs) -> EpochStore {
        EpochStore {
            dir,
            epochs: Mutex::new(epochs),
        }
    }

    pub fn get(&self) -> Epochs {
        self.epochs.lock().expect("epochs lock").clone()
    }

    pub fn epoch(&self) -> u64 {
        self.epochs.lock().expect("epochs lock").epoch
    }

    /// Change the epochs with `f`, store the result (synced), and only then keep it.
    /// `f` returns whether there is a change to store.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut Epochs) -> Option<T>,
    ) -> std::io::Result<Option<T>> {
        let mut epochs = self.epochs.lock().expect("epochs lock");
        let mut next = epochs.clone();
        let Some(result) = f(&mut next) else {
            return Ok(None);
        };
        next.store(&self.dir)?;
        *epochs = next;
        Ok(Some(result))
    }
}

/// What the release gate waits for from the standby, and what losing it means.
pub struct AckPolicy {
    /// Replication is configured (a primary with a port, or any standby).
    pub replicated: bool,
    pub ack: AckMode,
    /// `on_standby_loss = "degrade"`.
    pub degrade: bool,
    /// A promoted node may serve alone until a standby streams from it again.
    pub alone_ok: AtomicBool,
}

pub struct Node {
    pub role: RoleCell,
    pub epochs: EpochStore,
    pub policy: AckPolicy,
    /// The attached standby, as the primary side tracks it (written by the replicator).
    pub standby: Arc<StandbyStatus>,
    /// Rolling-hash checkpoints of this node's engine (written by the engine stage).
    pub checkpoints: Arc<Recent>,
    /// The standby side: link, received sequence, comparison, intake, truncation.
    pub follower: FollowerSide,
    pub promotion: Promotion,
    /// With failover through etcd: the lease deadline (`coordination.rs` writes it).
    pub lease: LeaseGate,
    wake: Mutex<Option<Arc<Wake>>>,
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
        dir: PathBuf,
        role: Role,
        epochs: Epochs,
        r: &ReplicationSection,
        replicated: bool,
    ) -> Result<Node> {
        Ok(Node {
            role: RoleCell::new(role),
            epochs: EpochStore::new(dir, epochs),
            policy: AckPolicy {
                replicated,
                ack: if replicated {
                    r.ack_mode()?
                } else {
                    AckMode::Async
                },
                degrade: r.degrade(),
                alone_ok: AtomicBool::new(false),
            },
            standby: Arc::new(StandbyStatus::default()),
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

    pub fn attach(&self, wake: Arc<Wake>) {
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

    fn standby_detached(&self) -> bool {
        self.standby.state.load(SeqCst) == DETACHED
    }

    /// Synchronous replication, no standby, and `halt`: no write can be acknowledged.
    fn halted(&self) -> bool {
        let p = &self.policy;
        p.ack != AckMode::Async && !p.degrade && !p.alone_ok.load(SeqCst) && self.standby_detached()
    }

    /// Whether synchronous replication is running without its standby.
    pub fn degraded(&self) -> bool {
        let p = &self.policy;
        p.ack != AckMode::Async
            && self.role() == Role::Primary
            && self.standby_detached()
            && (p.degrade || p.alone_ok.load(SeqCst))
    }

    /// The highest journal sequence whose answer may leave at `now_ns` (the gate holds the
    /// rest).
    pub fn release_bound(&self, now_ns: u64) -> u64 {
        let p = &self.policy;
        let role = self.role();
        let standby = self.standby.state.load(SeqCst);
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
            ack: p.ack,
            degrade: p.degrade,
            alone_ok: p.alone_ok.load(SeqCst),
            standby,
            acked: self.acked(),
            lease_lapsed: self.lease.lapsed(now_ns),
            witnessed: if standby == STREAMING {
                self.standby.received.load(SeqCst)
            } else {
                0
            },
            alone_cleared: !self.lease.enabled.load(SeqCst) || self.lease.sync_cleared.load(SeqCst),
        })
    }

    /// What the standby acked, as the ack mode counts it (`durable` for `async`).
    fn acked(&self) -> u64 {
        match self.policy.ack {
            AckMode::Received => self.standby.received.load(SeqCst),
            _ => self.standby.durable.load(SeqCst),
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

    /// A standby follows a primary of `epoch` with this history.
    pub fn adopt(&self, epoch: u64, history: &[(u64, u64)]) -> std::io::Result<()> {
        self.epochs
            .update(|epochs| {
                let before = epochs.clone();
                epochs.adopt(epoch, history);
                (*epochs != before).then_some(())
            })
            .map(|_| ())
    }

    /// The standby was lost: say what that means for writes.
    pub fn standby_lost(&self) {
        if self.policy.ack == AckMode::Async || self.role() != Role::Primary {
            return;
        }
        if self.degraded() {
            log::line(
                Level::Error,
                "replication_degraded",
                Some(repl_code(ReplicationCode::Degraded)),
                &[("detail", &"no standby: writes are acknowledged on this node alone (RPO > 0) until one streams again")],
            );
        } else {
            log::line(
                Level::Error,
                "writes_halted",
                Some(repl_code(ReplicationCode::StandbyLost)),
                &[(
                    "detail",
                    &"no standby and on_standby_loss = halt: writes are refused until one attaches",
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

    /// How far behind: on a primary, its durable sequence past the standby's; on a standby,
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
        if self.standby_detached() {
            return 0;
        }
        durable.saturating_sub(self.standby.durable.load(SeqCst))
    }
}

pub fn repl_code(code: ReplicationCode) -> log::LogCode {
    (code.number(), code.name())
}
