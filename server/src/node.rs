//! What this node is in a replicated pair, and what that allows: its role (primary,
//! standby, fenced), its epochs (the synced `epoch` file), what the release gate waits for
//! from the standby, which writes it refuses and with what code, and the promotion
//! hand-shake between the admin call and the gateway thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use engine::Code;
use replicator::checkpoints::{Comparer, Recent};
use replicator::follower::{AckSignal, Link};
use replicator::primary::{StandbyStatus, CATCHING_UP, DETACHED, STREAMING};
use replicator::{Epochs, ReplicationCode};

use super::config::{AckMode, ReplicationSection};
use super::log::{self, Level};
use super::{Shared, Wake};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary = 1,
    Standby = 2,
    /// A primary that learned of a newer epoch: it answers queries, refuses writes.
    Fenced = 3,
}

impl Role {
    fn from_u8(v: u8) -> Role {
        match v {
            1 => Role::Primary,
            2 => Role::Standby,
            _ => Role::Fenced,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
            Role::Fenced => "fenced",
        }
    }
}

/// The result of a promotion, as the admin call reports it.
#[derive(Clone, Debug)]
pub struct Promoted {
    pub epoch: u64,
    pub start_seq: u64,
    pub micros: u64,
}

pub struct Node {
    role: AtomicU8,
    epochs: Mutex<Epochs>,
    dir: PathBuf,
    /// Replication is configured (a primary with a port, or any standby).
    pub replicated: bool,
    pub ack: AckMode,
    pub degrade: bool,
    /// A promoted node may serve alone until a standby streams from it again.
    alone_ok: AtomicBool,
    /// The attached standby, as the primary side tracks it.
    pub standby: Arc<StandbyStatus>,
    /// Standby side: the link to the primary and the follower's stop flag.
    pub link: Arc<Link>,
    pub stop_following: Arc<AtomicBool>,
    pub ack_signal: Arc<AckSignal>,
    /// Sequences handed to this standby's pipeline by its follower.
    pub received_seq: AtomicU64,
    /// Rolling-hash checkpoints: this node's recent ones, and (standby) the comparison.
    pub checkpoints: Arc<Recent>,
    pub comparer: Comparer,
    pub diverged: AtomicBool,
    /// Promotion: asked by the admin call, done by the gateway.
    promotion: Mutex<PromotionState>,
    promoted: Condvar,
    /// The follower takes this before handing records to the gateway; promotion closes it.
    pub intake: Mutex<bool>,
    /// Set when a failback needs this node's journal cut after the given sequence.
    pub truncate_to: Mutex<Option<u64>>,
    pub promotions: AtomicU64,
    wake: Mutex<Option<Arc<Wake>>>,
}

#[derive(Default)]
enum PromotionState {
    #[default]
    Idle,
    Asked(Instant),
    Done(Result<Promoted, String>),
}

impl Node {
    pub fn new(
        dir: PathBuf,
        role: Role,
        epochs: Epochs,
        r: &ReplicationSection,
        replicated: bool,
    ) -> anyhow::Result<Node> {
        Ok(Node {
            role: AtomicU8::new(role as u8),
            epochs: Mutex::new(epochs),
            dir,
            replicated,
            ack: if replicated {
                r.ack_mode()?
            } else {
                AckMode::Async
            },
            degrade: r.degrade(),
            alone_ok: AtomicBool::new(false),
            standby: Arc::new(StandbyStatus::default()),
            link: Arc::new(Link::default()),
            stop_following: Arc::new(AtomicBool::new(false)),
            ack_signal: Arc::new(AckSignal::default()),
            received_seq: AtomicU64::new(0),
            checkpoints: Arc::new(Recent::default()),
            comparer: Comparer::default(),
            diverged: AtomicBool::new(false),
            promotion: Mutex::new(PromotionState::Idle),
            promoted: Condvar::new(),
            intake: Mutex::new(false),
            truncate_to: Mutex::new(None),
            promotions: AtomicU64::new(0),
            wake: Mutex::new(None),
        })
    }

    pub fn attach(&self, wake: Arc<Wake>) {
        *self.wake.lock().expect("node lock") = Some(wake);
    }

    fn nudge(&self) {
        if let Some(w) = self.wake.lock().expect("node lock").as_ref() {
            w.nudge();
        }
    }

    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(SeqCst))
    }

    pub fn epoch(&self) -> u64 {
        self.epochs.lock().expect("epochs lock").epoch
    }

    pub fn epochs(&self) -> Epochs {
        self.epochs.lock().expect("epochs lock").clone()
    }

    /// The code a write is refused with now, if it is.
    pub fn write_refusal(&self) -> Option<Code> {
        match self.role() {
            Role::Standby => Some(Code::NotPrimary),
            Role::Fenced => Some(Code::Fenced),
            Role::Primary if self.halted() => Some(Code::StandbyUnavailable),
            Role::Primary => None,
        }
    }

    /// Synchronous replication, no standby, and `halt`: no write can be acknowledged.
    fn halted(&self) -> bool {
        self.ack != AckMode::Async
            && !self.degrade
            && !self.alone_ok.load(SeqCst)
            && self.standby.state.load(SeqCst) == DETACHED
    }

    /// Whether synchronous replication is running without its standby.
    pub fn degraded(&self) -> bool {
        self.ack != AckMode::Async
            && self.role() == Role::Primary
            && self.standby.state.load(SeqCst) == DETACHED
            && (self.degrade || self.alone_ok.load(SeqCst))
    }

    /// The highest journal sequence whose answer may leave now (the gate holds the rest).
    pub fn release_bound(&self) -> u64 {
        match self.role() {
            Role::Standby => return u64::MAX,
            // Replaced: nothing more leaves that the standby (now primary) may lack.
            Role::Fenced => return self.acked(),
            Role::Primary if self.ack == AckMode::Async => return u64::MAX,
            Role::Primary => {}
        }
        let state = self.standby.state.load(SeqCst);
        // A plain load first: this runs on every release pass; the swap only once.
        if state == STREAMING && self.alone_ok.load(SeqCst) && self.alone_ok.swap(false, SeqCst) {
            log::info(
                "replication_synchronous",
                &[("detail", &"a standby streams again")],
            );
        }
        if state == DETACHED && (self.degrade || self.alone_ok.load(SeqCst)) {
            return u64::MAX;
        }
        debug_assert!(state == DETACHED || state == CATCHING_UP || state == STREAMING);
        self.acked()
    }

    /// What the standby acked, as the ack mode counts it (`durable` for `async`).
    fn acked(&self) -> u64 {
        match self.ack {
            AckMode::Received => self.standby.received.load(SeqCst),
            _ => self.standby.durable.load(SeqCst),
        }
    }

    /// Another node is at `epoch`. If it is newer, stop taking writes, durably.
    pub fn fenced_by(&self, epoch: u64, why: &str) {
        let mut epochs = self.epochs.lock().expect("epochs lock");
        if !epochs.learn(epoch) {
            return;
        }
        if let Err(e) = epochs.store(&self.dir) {
            log::line(Level::Error, "epoch_store_failed", None, &[("error", &e)]);
        }
        drop(epochs);
        if self.role() == Role::Primary {
            self.role.store(Role::Fenced as u8, SeqCst);
        }
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
        let mut epochs = self.epochs.lock().expect("epochs lock");
        let before = epochs.clone();
        epochs.adopt(epoch, history);
        if *epochs != before {
            epochs.store(&self.dir)?;
        }
        Ok(())
    }

    /// The standby was lost: say what that means for writes.
    pub fn standby_lost(&self) {
        if self.ack == AckMode::Async || self.role() != Role::Primary {
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

    /// The standby's engine applied checkpoint `seq`: compare with the primary's.
    pub fn checkpoint(&self, seq: u64, hash: u64) {
        self.checkpoints.record(seq, hash);
        if self.role() == Role::Standby {
            if let Err(d) = self.comparer.mine(seq, hash) {
                self.diverge(d);
            }
        }
    }

    pub fn diverge(&self, d: replicator::checkpoints::Divergence) {
        if self.diverged.swap(true, SeqCst) {
            return;
        }
        log::line(
            Level::Error,
            "replication_diverged",
            Some(repl_code(ReplicationCode::Diverged)),
            &[
                ("seq", &d.seq),
                ("primary_hash", &format!("{:#018x}", d.primary)),
                ("standby_hash", &format!("{:#018x}", d.standby)),
                (
                    "detail",
                    &"the standby's state differs from the primary's; it stops following",
                ),
            ],
        );
        self.stop_following.store(true, SeqCst);
        self.link.fence_and_close(0);
    }

    /// Ask for promotion and wait for the gateway to do it.
    pub fn promote(&self, timeout: Duration) -> Result<Promoted, String> {
        if self.role() != Role::Standby {
            return Err(format!(
                "this node is {}, not a standby",
                self.role().name()
            ));
        }
        let asked = Instant::now();
        *self.promotion.lock().expect("promotion lock") = PromotionState::Asked(asked);
        // Stop following now: the old primary is told of the new epoch (best effort).
        self.stop_following.store(true, SeqCst);
        self.link.fence_and_close(self.epoch() + 1);
        self.nudge();
        let state = self.promotion.lock().expect("promotion lock");
        let (mut state, _) = self
            .promoted
            .wait_timeout_while(state, timeout, |s| matches!(s, PromotionState::Asked(_)))
            .expect("promotion lock");
        match std::mem::take(&mut *state) {
            PromotionState::Done(result) => result,
            _ => Err("the gateway did not promote in time".into()),
        }
    }

    /// Whether promotion was asked for (the gateway looks each turn).
    pub fn promotion_asked(&self) -> bool {
        matches!(
            *self.promotion.lock().expect("promotion lock"),
            PromotionState::Asked(_)
        )
    }

    /// The gateway's half: everything received is in the ring; `start_seq` is the first
    /// sequence of the new epoch.
    pub fn complete_promotion(&self, start_seq: u64) {
        let mut state = self.promotion.lock().expect("promotion lock");
        let PromotionState::Asked(asked) = *state else {
            return;
        };
        let result = {
            let mut epochs = self.epochs.lock().expect("epochs lock");
            let mut next = epochs.clone();
            let epoch = next.promote(start_seq);
            match next.store(&self.dir) {
                Ok(()) => {
                    *epochs = next;
                    self.alone_ok.store(true, SeqCst);
                    self.role.store(Role::Primary as u8, SeqCst);
                    self.promotions.fetch_add(1, SeqCst);
                    Ok(Promoted {
                        epoch,
                        start_seq,
                        micros: asked.elapsed().as_micros() as u64,
                    })
                }
                Err(e) => Err(format!("storing the new epoch: {e}")),
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
        *state = PromotionState::Done(result);
        self.promoted.notify_all();
    }
}

impl Node {
    /// How far behind: on a primary, its durable sequence past the standby's; on a standby,
    /// the primary's last sequence past what this node applied.
    pub fn lag_seq(&self, durable: u64, applied: u64) -> u64 {
        match self.role() {
            Role::Standby => self
                .link
                .primary_last_seq
                .load(SeqCst)
                .saturating_sub(applied),
            _ if self.standby.state.load(SeqCst) == DETACHED => 0,
            _ => durable.saturating_sub(self.standby.durable.load(SeqCst)),
        }
    }

    /// The replication lines of `/metrics`.
    pub fn render_metrics(&self, durable: u64, applied: u64, out: &mut String) {
        use super::metrics::{counter_value, gauge_value};
        let flag = |b: bool| u64::from(b);
        let gauges = [
            (
                "surge_role",
                "1 primary, 2 standby, 3 fenced (a replaced primary).",
                self.role() as u64,
            ),
            (
                "surge_epoch",
                "The highest epoch this node knows.",
                self.epoch(),
            ),
            (
                "surge_fenced",
                "1 once this node learned that a newer primary exists.",
                flag(self.role() == Role::Fenced),
            ),
            (
                "surge_replication_standby_state",
                "Primary: 0 no standby, 1 catching up, 2 streaming.",
                u64::from(self.standby.state.load(SeqCst)),
            ),
            (
                "surge_replication_standby_received_seq",
                "Primary: highest sequence the standby acked as received.",
                self.standby.received.load(SeqCst),
            ),
            (
                "surge_replication_standby_durable_seq",
                "Primary: highest sequence the standby acked as synced.",
                self.standby.durable.load(SeqCst),
            ),
            (
                "surge_replication_standby_applied_seq",
                "Primary: highest sequence the standby acked as applied.",
                self.standby.applied.load(SeqCst),
            ),
            (
                "surge_replication_sent_seq",
                "Primary: highest sequence sent to the standby.",
                self.standby.sent.load(SeqCst),
            ),
            (
                "surge_replication_lag_seq",
                "Sequences the standby is behind (on either node).",
                self.lag_seq(durable, applied),
            ),
            (
                "surge_replication_degraded",
                "1 while synchronous replication runs without its standby (RPO > 0).",
                flag(self.degraded()),
            ),
            (
                "surge_replication_halted",
                "1 while writes are refused for want of a standby (on_standby_loss = halt).",
                flag(self.write_refusal() == Some(Code::StandbyUnavailable)),
            ),
            (
                "surge_replication_connected",
                "Standby: 1 while following a primary.",
                flag(self.link.connected.load(SeqCst)),
            ),
            (
                "surge_replication_diverged",
                "Standby: 1 once its rolling hash differed from the primary's.",
                flag(self.diverged.load(SeqCst)),
            ),
        ];
        for (name, help, value) in gauges {
            gauge_value(out, name, help, value);
        }
        let counters = [
            (
                "surge_replication_checkpoints_matched_total",
                "Standby: rolling-hash checkpoints compared and equal.",
                self.comparer.compared(),
            ),
            (
                "surge_replication_standby_sessions_total",
                "Primary: standby sessions begun.",
                self.standby.sessions.load(SeqCst),
            ),
            (
                "surge_replication_standby_losses_total",
                "Primary: standbys lost.",
                self.standby.losses.load(SeqCst),
            ),
            (
                "surge_promotions_total",
                "Promotions of this node to primary.",
                self.promotions.load(SeqCst),
            ),
        ];
        for (name, help, value) in counters {
            counter_value(out, name, help, value);
        }
    }
}

pub fn repl_code(code: ReplicationCode) -> log::LogCode {
    (code.number(), code.name())
}

/// The primary side's view of the server.
pub struct PrimaryHooks {
    pub node: Arc<Node>,
    pub shared: Arc<Shared>,
}

impl replicator::Hooks for PrimaryHooks {
    fn log(
        &self,
        level: replicator::Level,
        event: &str,
        code: Option<ReplicationCode>,
        fields: &str,
    ) {
        let level = match level {
            replicator::Level::Info => Level::Info,
            replicator::Level::Warn => Level::Warn,
            replicator::Level::Error => Level::Error,
        };
        log::raw(level, event, code.map(repl_code), fields);
    }

    fn acked(&self) {
        self.node.nudge();
    }

    fn standby_lost(&self) {
        self.node.standby_lost();
    }

    fn fenced_by(&self, epoch: u64, why: &str) {
        self.node.fenced_by(epoch, why);
    }

    fn is_primary(&self) -> bool {
        self.node.role() == Role::Primary
    }

    fn epochs(&self) -> Epochs {
        self.node.epochs()
    }

    fn durable_seq(&self) -> u64 {
        self.shared.metrics.durable_seq.load(SeqCst)
    }
}
