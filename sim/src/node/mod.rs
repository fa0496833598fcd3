//! One simulated node: a `surge serve` process with `failover = "etcd"`, its parts the real
//! ones. Its journal is the real journal on `FaultStorage` (a crash keeps only what was
//! synced, and may tear the last write); its epochs go to a store that survives crashes.
//! While it runs, it is the real pipeline (sequencer, journal stage, engine stage, gate,
//! stepped in turn as the gateway thread would), the real `group::Node`, the coordinator's
//! machine (`group::coordinator`), the standby's session machine and the primary's
//! per-standby sessions (`replicator`), and promotion through `pipeline::promote`. Where the
//! server has threads and sockets, `turn` carries the machines' inputs and actions, as the
//! drivers do: it is one turn of every thread of the process, with no wait.
//!
//! A node that is down has only its storage. Started, it first keeps a lease and joins
//! (leads or follows) as `surge serve` does, then builds its pipeline from the journal.

mod checkpoints;
mod running;
mod vocabulary;

use running::{Follow, Up};
pub use vocabulary::*;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};

use ::coordinator::call::Call;
use ::coordinator::NodeRecord;
use engine::feed_items::FeedItems;
use engine::ring::{RingBuilder, WaitStrategy};
use engine::Engine;
use journal::{FaultStorage, Storage};
use replicator::follower::FollowerMachine;
use replicator::primary::Sources;
use replicator::{Backlog, Epochs};
use server::checkpoint::replay::Applier;
use server::drivers::coordination::{apply_to_node, running_view};
use server::group::coordinator::{self as machine, Coordinator, Joined};
use server::group::epochs::EpochFile;
use server::group::node::Node;
use server::group::role::Role;
use server::pipeline::engine_stage::EngineStage;
use server::pipeline::gate::Gate;
use server::pipeline::journal_stage::JournalStage;
use server::pipeline::journaler::Journaler;
use server::pipeline::sequencer::Sequencer;
use server::pipeline::shared::{Shared, Wake};
use server::pipeline::slot::Slot;
use server::Clock;

use crate::clock::{Now, SimClock};
use crate::net::NodeId;

/// Ring slots of a simulated node.
const RING_SLOTS: usize = 1024;
/// Log lines kept per node for a failure's report.
const LOG_KEPT: usize = 400;

/// Epochs that survive a crash: stored, they are durable (the real store is one
/// `fdatasync` of a slot, torn-safe).
#[derive(Default)]
pub struct EpochDisk(Mutex<Option<Epochs>>);

impl EpochDisk {
    pub fn load(&self) -> Option<Epochs> {
        self.0.lock().expect("epoch disk").clone()
    }
}

struct EpochSlot(Arc<EpochDisk>);

impl EpochFile for EpochSlot {
    fn store(&self, epochs: &Epochs) -> std::io::Result<()> {
        *self.0 .0.lock().expect("epoch disk") = Some(epochs.clone());
        Ok(())
    }
}

/// A process that keeps a lease and asks etcd who leads, before it starts its pipeline.
struct Joining {
    clock: Arc<SimClock>,
    asked: bool,
}

enum Life {
    Down,
    Joining(Joining),
    Up(Box<Up>),
}

pub struct SimNode {
    pub id: NodeId,
    pub name: String,
    params: Params,
    storage: Arc<FaultStorage>,
    pub epochs: Arc<EpochDisk>,
    /// Its engine's checkpoints, as on disk.
    checkpoints: Arc<checkpoints::CheckpointDisk>,
    life: Life,
    coordinator: Option<Coordinator>,
    /// The etcd call in flight, by id.
    call: Option<u64>,
    next_call: u64,
    pub paused: bool,
    /// The journal syncs slowly: a commit at most every few tens of milliseconds.
    pub slow_disk: bool,
    /// Planted violation (`world::Plant`): release on the node's own sync alone.
    pub release_early: bool,
    /// Planted: a standby changes the record at this sequence before applying it; every
    /// write is refused.
    pub corrupt_seq: Option<u64>,
    pub refuse_writes: bool,
    pub inbox: VecDeque<In>,
    /// (client, request) of each record in the journal, by sequence (from the journal
    /// after every start, and from each commit since).
    pub history: Arc<Mutex<History>>,
    /// What the running process's engine stage drafted for the feed, by sequence (a hash of
    /// the bytes), for each command it released; begun again at each start. The end checks
    /// it against a replay's derivation (`feed_hash`).
    pub drafted: Arc<Mutex<BTreeMap<u64, u64>>>,
    pub log: VecDeque<String>,
    now: Now,
    skew_ppm: i64,
    pub starts: u64,
}

impl SimNode {
    pub fn new(id: NodeId, params: Params, now: Now, skew_ppm: i64) -> SimNode {
        SimNode {
            id,
            name: params.names[id].clone(),
            params,
            storage: Arc::new(FaultStorage::new()),
            epochs: Arc::new(EpochDisk::default()),
            checkpoints: Arc::default(),
            life: Life::Down,
            coordinator: None,
            call: None,
            next_call: 0,
            paused: false,
            slow_disk: false,
            release_early: false,
            corrupt_seq: None,
            refuse_writes: false,
            inbox: VecDeque::new(),
            history: Arc::new(Mutex::new(BTreeMap::new())),
            drafted: Arc::new(Mutex::new(BTreeMap::new())),
            log: VecDeque::new(),
            now,
            skew_ppm,
            starts: 0,
        }
    }

    pub fn up(&self) -> bool {
        !matches!(self.life, Life::Down)
    }

    pub fn storage(&self) -> &Arc<FaultStorage> {
        &self.storage
    }

    /// The running node, once it has joined.
    pub fn node(&self) -> Option<&Arc<Node>> {
        match &self.life {
            Life::Up(up) => Some(&up.node),
            _ => None,
        }
    }

    pub fn role(&self) -> Option<Role> {
        self.node().map(|n| n.role())
    }

    pub fn engine(&self) -> Option<&Engine> {
        match &self.life {
            Life::Up(up) => Some(up.engine.engine()),
            _ => None,
        }
    }

    /// The last sequence the engine applied, while it runs.
    pub fn applied(&self) -> Option<u64> {
        match &self.life {
            Life::Up(up) => Some(up.shared.metrics.applied_seq.load(SeqCst)),
            _ => None,
        }
    }

    /// The durable sequence and the release bound, while it runs.
    pub fn durable_and_bound(&self) -> Option<(u64, u64)> {
        match &self.life {
            Life::Up(up) => {
                let m = &up.shared.metrics;
                let _ = m;
                Some((up.shared.release.durable(), up.shared.release.bound()))
            }
            _ => None,
        }
    }

    pub fn note(&mut self, line: String) {
        if self.log.len() == LOG_KEPT {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    /// Start the process: a lease first, then the join.
    pub fn start(&mut self) {
        assert!(!self.up(), "{} runs already", self.name);
        self.starts += 1;
        let clock = Arc::new(SimClock::new(self.now.clone(), self.skew_ppm));
        self.coordinator = Some(Coordinator::new(self.params.coordinator(&self.name)));
        self.call = None;
        self.inbox.clear();
        self.rebuild_history();
        self.drafted.lock().expect("drafted").clear();
        self.life = Life::Joining(Joining {
            clock,
            asked: false,
        });
    }

    /// The process is gone (SIGKILL, a crash, an exit): only the storage is left, as a power
    /// cut leaves it when `tear` (a random prefix of each unsynced write landed), else what
    /// was synced.
    pub fn stop(&mut self, ctx: &mut Ctx, tear: bool) {
        let image = if tear {
            let rng = &mut *ctx.rng;
            self.storage
                .crash_image_tearing(|_, bytes| rng.below(bytes.len() as u64 + 1) as usize)
        } else {
            self.storage.crash_image()
        };
        self.life = Life::Down;
        self.coordinator = None;
        self.call = None;
        self.inbox.clear();
        self.paused = false;
        self.storage = Arc::new(image);
        ctx.due.extend(ctx.net.node_down(ctx.now, ctx.rng, self.id));
        self.rebuild_history();
    }

    /// Fail the next journal sync (a crash mid-commit follows: the write is torn).
    pub fn fail_next_sync(&self, sticky: bool) {
        self.storage.set_faults(journal::Faults {
            fail_sync: Some(1),
            sticky,
            ..journal::Faults::default()
        });
    }

    pub fn clear_disk_faults(&self) {
        self.storage.set_faults(journal::Faults::default());
    }

    /// A failback: cut the journal after `seq` and the epochs that began after it.
    pub fn cut_after(&mut self, seq: u64) {
        self.checkpoints.cut_after(seq);
        journal::truncate_after(self.storage.as_ref(), seq).expect("cutting a simulated journal");
        if let Some(mut epochs) = self.epochs.load() {
            epochs.cut_after(seq);
            *self.epochs.0.lock().expect("epoch disk") = Some(epochs);
        }
        self.rebuild_history();
    }

    fn rebuild_history(&mut self) {
        let mut history = BTreeMap::new();
        let _ = journal::scan(self.storage.as_ref(), |record, _| {
            if let Ok(request) = engine::codec::decode_request(record.payload) {
                history.insert(record.seq, (request.client.0, request.request.0));
            }
        });
        *self.history.lock().expect("history") = history;
    }

    /// Each command's feed events as a replay of this node's journal drafts them (the
    /// derivation the feed was first written with), by sequence, hashed as `feed_hash`.
    pub fn derived_feed(&self) -> BTreeMap<u64, u64> {
        let mut engine: Option<Engine> = None;
        let mut out = engine::Output::default();
        let (mut items, mut scratch) = (FeedItems::default(), Vec::new());
        let mut derived = BTreeMap::new();
        journal::scan(self.storage.as_ref(), |record, _| {
            if record.kind == engine::codec::kind::ENGINE_CONFIG {
                let config = engine::codec::decode_config(record.payload).expect("a config");
                engine = Some(Engine::new(config));
                return;
            }
            let engine = engine.get_or_insert_with(|| Engine::new(self.params.engine));
            let request = engine::codec::decode_request(record.payload).expect("a request");
            engine.apply(record.timestamp_ns, &request, &mut out);
            items.draft(
                engine,
                record.seq,
                record.timestamp_ns,
                &request,
                &out,
                &mut scratch,
            );
            derived.insert(record.seq, feed_hash(items.bytes()));
        })
        .expect("a simulated journal scans");
        derived
    }

    /// The rolling hash of the engine rebuilt from this node's journal up to `seq`.
    pub fn hash_at(&self, seq: u64) -> u64 {
        let mut applier = Applier::new(None);
        journal::scan(self.storage.as_ref(), |record, _| {
            if record.seq <= seq {
                applier
                    .push(record)
                    .expect("a simulated journal record applies");
            }
        })
        .expect("a simulated journal scans");
        applier
            .finish()
            .unwrap_or_else(|| Engine::new(self.params.engine))
            .hash()
    }

    /// The engine a start begins with: the newest checkpoint chain and the journal after
    /// it, checked against a replay of the journal alone (`Seen::Restored`; the replay is
    /// used when the chain does not restore); the chain it came from (number, deltas).
    fn recover(&self, ctx: &mut Ctx) -> (Engine, u64, Option<(u64, u32)>) {
        let (replayed, last) = self.replay();
        let restored = match self.checkpoints.restore() {
            None => return (replayed, last, None),
            Some(Ok(restored)) => restored,
            Some(Err((checkpoint, seq, why))) => {
                ctx.seen.push(Seen::Restored {
                    node: self.id,
                    checkpoint,
                    seq,
                    problem: Some(format!("does not restore: {why}")),
                });
                return (replayed, last, None);
            }
        };
        let (number, deltas, from_seq) = (restored.number, restored.deltas, restored.seq);
        let mut applier = Applier::new(Some(restored.engine));
        let mut restored_last = from_seq;
        journal::scan_from(self.storage.as_ref(), from_seq + 1, |record, _| {
            if record.seq > from_seq {
                applier
                    .push(record)
                    .expect("a simulated journal record applies");
                restored_last = record.seq;
            }
        })
        .expect("a simulated journal scans");
        let engine = applier.finish().expect("a restored engine");
        let same = restored_last == last
            && engine.snapshot().to_bytes()[..] == replayed.snapshot().to_bytes()[..];
        ctx.seen.push(Seen::Restored {
            node: self.id,
            checkpoint: number,
            seq: from_seq,
            problem: (!same).then(|| "differs from a replay of its journal".to_string()),
        });
        (engine, last, Some((number, deltas)))
    }

    /// The engine rebuilt from the journal, and its last sequence.
    fn replay(&self) -> (Engine, u64) {
        let mut applier = Applier::new(None);
        let mut last = 0;
        journal::scan(self.storage.as_ref(), |record, _| {
            applier
                .push(record)
                .expect("a simulated journal record applies");
            last = record.seq;
        })
        .expect("a simulated journal scans");
        let engine = applier
            .finish()
            .unwrap_or_else(|| Engine::new(self.params.engine));
        (engine, last)
    }

    /// One turn of every thread of the process. `Some(exit)`: the process ended.
    pub fn turn(&mut self, ctx: &mut Ctx) -> Option<Exit> {
        if self.paused || !self.up() {
            return None;
        }
        if let Life::Joining(_) = self.life {
            return self.join_turn(ctx);
        }
        let exit = self.up_turn(ctx);
        if let Life::Up(up) = &self.life {
            ctx.seen.push(Seen::Epochs {
                node: self.id,
                epochs: up.node.epochs(),
            });
        }
        exit
    }

    fn next_call(&mut self, ctx: &mut Ctx, call: Call) {
        self.next_call += 1;
        self.call = Some(self.next_call);
        ctx.etcd.push((self.id, self.next_call, call));
    }

    /// Before the pipeline: the lease and the join.
    fn join_turn(&mut self, ctx: &mut Ctx) -> Option<Exit> {
        let Life::Joining(joining) = &mut self.life else {
            unreachable!()
        };
        let clock = joining.clock.clone();
        let mut inputs = vec![machine::Input::Tick];
        for item in std::mem::take(&mut self.inbox) {
            if let In::Etcd { call, answer } = item {
                if Some(call) == self.call {
                    self.call = None;
                    inputs.push(machine::Input::Answer(answer));
                }
            }
            // Nothing else reaches a node that has not started its ports.
        }
        let local_epoch = self.epochs.load().map_or(0, |e| e.epoch);
        let local_seq = self.history.lock().expect("history").keys().last().copied();
        let view = machine::View {
            local_epoch,
            local_seq: Some(local_seq.unwrap_or(0)),
            running: None,
        };
        let mut joined = None;
        let coordinator = self.coordinator.as_mut().expect("a coordinator");
        let mut pending: VecDeque<machine::Action> = VecDeque::new();
        for input in inputs {
            pending.extend(coordinator.step(clock.mono_ns(), input, &view));
        }
        let mut calls = Vec::new();
        let mut exit = None;
        while let Some(action) = pending.pop_front() {
            match action {
                machine::Action::Call(call) => calls.push(call),
                machine::Action::Connected => {
                    if let Life::Joining(j) = &mut self.life {
                        if !j.asked {
                            j.asked = true;
                            pending.extend(coordinator.step(
                                clock.mono_ns(),
                                machine::Input::Join,
                                &view,
                            ));
                        }
                    }
                }
                machine::Action::Joined(j) => joined = Some(j),
                machine::Action::Lost(why) => exit = Some(Exit::Rejoin(why)),
                _ => {}
            }
        }
        for call in calls {
            self.next_call(ctx, call);
        }
        if exit.is_some() {
            return exit;
        }
        let joined = joined?;
        self.begin(ctx, clock, joined)
    }

    /// Joined: build the pipeline from the journal and run as the primary or a standby.
    fn begin(&mut self, ctx: &mut Ctx, clock: Arc<SimClock>, joined: Joined) -> Option<Exit> {
        let params = &self.params;
        let (engine, recovered_seq, restored) = self.recover(ctx);
        let config = *engine.config();
        let storage: Arc<dyn Storage> = self.storage.clone();
        let opened = Journaler::open_on(
            storage.clone(),
            &config,
            journal::writer::SEGMENT_LEN_MIN,
            recovered_seq + 1,
        );
        let mut journaler = match opened {
            Ok((journaler, _)) => journaler,
            // A full disk, say: the start fails, and the supervisor tries again.
            Err(e) => return Some(Exit::Failed(format!("start_failed: {e}"))),
        };
        let next_seq = journaler.next_seq();
        let mut epochs = self.epochs.load().unwrap_or(Epochs {
            epoch: 0,
            history: Vec::new(),
        });
        let (role, primary) = match &joined {
            Joined::Lead { epoch } => {
                epochs.promote_to((*epoch).max(epochs.epoch + 1), next_seq);
                *self.epochs.0.lock().expect("epoch disk") = Some(epochs.clone());
                (Role::Primary, None)
            }
            Joined::Follow { replication, .. } => {
                if epochs.drop_unwritten(next_seq) {
                    *self.epochs.0.lock().expect("epoch disk") = Some(epochs.clone());
                    ctx.seen.push(Seen::Dropped {
                        node: self.id,
                        epochs: epochs.clone(),
                    });
                }
                let id = match replication.ip() {
                    std::net::IpAddr::V4(ip) => ip.octets()[3] as NodeId,
                    _ => unreachable!("simulated addresses are IPv4"),
                };
                (Role::Standby, Some(id))
            }
        };
        let node = Arc::new(
            Node::new(
                Box::new(EpochSlot(self.epochs.clone())),
                role,
                epochs,
                &params.replication(&self.name),
                true,
            )
            .expect("simulated replication settings are valid"),
        );
        node.follower().received_seq.store(next_seq - 1, SeqCst);
        let backlog = Arc::new(Backlog::new(4 << 20, next_seq - 1));
        {
            let (backlog, history) = (backlog.clone(), self.history.clone());
            journaler.set_tap(Box::new(move |first, last, bytes| {
                backlog.push(first, last, bytes);
                let mut history = history.lock().expect("history");
                let mut offset = 0;
                while offset < bytes.len() {
                    let record = journal::format::decode_record(&bytes[offset..])
                        .expect("a record just encoded decodes");
                    if let Ok(request) = engine::codec::decode_request(record.payload) {
                        history.insert(record.seq, (request.client.0, request.request.0));
                    }
                    offset += record.total_len;
                }
                debug_assert!(history.contains_key(&last) || first > last);
            }));
        }
        let shared = Arc::new(Shared::new(clock.clone() as Arc<dyn Clock>));
        let (saver, checkpointer) = checkpoints::SimSaver::start(
            self.checkpoints.clone(),
            restored,
            shared.clone(),
            next_seq - 1,
        );
        shared.release.publish_durable(next_seq - 1);
        shared.metrics.applied_seq.store(next_seq - 1, SeqCst);
        let mut ring = RingBuilder::<Slot>::new(RING_SLOTS, WaitStrategy::Block);
        let j = ring.stage(&[]);
        let e = ring.stage(&[]);
        let g = ring.stage(&[j, e]);
        let (producer, mut consumers) = ring.build();
        let gate = Gate::new(consumers.remove(g.index()));
        let engine_ring = consumers.remove(e.index());
        let journal_ring = consumers.remove(j.index());
        let (intake, intake_rx) = crossbeam_channel::unbounded();
        let wake = Arc::new(Wake::none());
        node.attach(wake.clone());
        let sequencer = Sequencer::new(
            producer,
            clock.clone(),
            next_seq,
            params.tick,
            (role == Role::Standby).then_some(intake_rx),
        );
        let config_record = engine::codec::encode_config(&config);
        let coordinator = self.coordinator.as_mut().expect("a coordinator");
        // What `Coordination::attach` does for a server that started.
        let _ = node.lease().clock.set(clock.clone());
        node.lease()
            .deadline_ns
            .store(coordinator.deadline().at_ns, SeqCst);
        node.lease().reachable.store(true, SeqCst);
        node.lease().leading.store(coordinator.leading(), SeqCst);
        node.lease().enabled.store(true, SeqCst);
        coordinator.step(
            clock.mono_ns(),
            machine::Input::Register(NodeRecord {
                client: format!("sim:{}", self.name),
                http: format!("sim:{}", self.name),
                replication: Some(replication_addr(self.id).to_string()),
            }),
            &machine::View::default(),
        );
        let follow = primary.map(|primary| Follow {
            machine: FollowerMachine::new(
                params.settings(),
                self.name.clone(),
                config_record.clone(),
            ),
            primary,
            conn: None,
        });
        if role == Role::Primary {
            ctx.seen.push(Seen::Leads {
                node: self.id,
                epoch: node.epoch(),
                last_seq: next_seq - 1,
            });
        }
        let up = Up {
            settings: params.settings(),
            journal: JournalStage::new(
                journal_ring,
                journaler,
                1,
                shared.clone(),
                wake.clone(),
                None,
            ),
            engine: EngineStage::new(
                engine_ring,
                engine,
                next_seq,
                shared.clone(),
                wake,
                node.clone(),
            )
            .with_checkpoints(checkpointer)
            .with_feed(),
            saver,
            idle_turns: 0,
            sources: Sources {
                backlog,
                checkpoints: node.checkpoints().clone(),
                journal: storage,
                snapshots: Arc::new(FaultStorage::new()),
                newest_chain: None,
                config: config_record,
            },
            node,
            shared,
            clock,
            sequencer,
            gate,
            intake,
            follow,
            sessions: BTreeMap::new(),
            closing: Arc::new(Mutex::new(Vec::new())),
            drafted: self.drafted.clone(),
            waiting: VecDeque::new(),
            promoting: false,
            journal_next_ns: 0,
            release_early: self.release_early,
            corrupt_seq: self.corrupt_seq,
            refuse_writes: self.refuse_writes,
        };
        self.life = Life::Up(Box::new(up));
        None
    }

    fn up_turn(&mut self, ctx: &mut Ctx) -> Option<Exit> {
        let id = self.id;
        let name = self.name.clone();
        let timeout = self.params.timeout;
        let Life::Up(up) = &mut self.life else {
            unreachable!()
        };
        let coordinator = self.coordinator.as_mut().expect("a coordinator");
        let now_ns = up.clock.mono_ns();
        let mut coordinator_inputs = Vec::new();
        for item in std::mem::take(&mut self.inbox) {
            match item {
                In::Etcd { call, answer } => {
                    if Some(call) == self.call {
                        self.call = None;
                        coordinator_inputs.push(machine::Input::Answer(answer));
                    }
                }
                In::Request(r) => up.waiting.push_back(r),
                In::Net(delivery) => up.deliver(ctx, id, &name, delivery),
            }
        }
        up.follower_tick(ctx, id);
        up.sessions_tick(ctx, id);
        // The coordinator: a round when due, each answer stepped.
        coordinator_inputs.insert(0, machine::Input::Tick);
        let mut exit = None;
        for input in coordinator_inputs {
            let view = machine::View {
                local_epoch: 0,
                local_seq: None,
                running: Some(running_view(&up.node, &up.shared, timeout)),
            };
            let actions = coordinator.step(up.clock.mono_ns(), input, &view);
            for action in actions {
                if apply_to_node(&action, &up.node, &|at| at) {
                    continue;
                }
                match action {
                    machine::Action::Call(call) => {
                        self.next_call += 1;
                        self.call = Some(self.next_call);
                        ctx.etcd.push((id, self.next_call, call));
                    }
                    machine::Action::Promote { epoch } => {
                        let asked = match up.node.role() {
                            Role::Primary => up.node.request_new_term(now_ns, epoch),
                            _ => up.node.request_promotion(now_ns, Some(epoch)),
                        };
                        match asked {
                            Ok(()) => up.promoting = true,
                            Err(e) => exit = Some(Exit::Rejoin(format!("promotion failed: {e}"))),
                        }
                    }
                    machine::Action::Lost(why) => exit = Some(Exit::Rejoin(why)),
                    _ => {}
                }
            }
        }
        if exit.is_some() {
            return exit;
        }
        up.refuse_writes = self.refuse_writes;
        up.pipeline_turn(ctx, id, self.slow_disk)
    }
}

/// The hash by which drafted and derived feed events are compared (SipHash with fixed keys:
/// the same in every run).
pub fn feed_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}
