//! `surge serve`: the LMAX pipeline.
//!
//! ```text
//!  clients ─TCP─▶ gateway ─publish─▶ [ ring ] ─▶ journaler (group commit, sync) ─┐
//!                    ▲                      └──▶ engine (apply, answer)  ─────────┴▶ gate
//!                    └──────────── answers whose sequence is durable ◀────────────────┘
//! ```
//!
//! One gateway thread is the ring's producer and its release gate; the journaler and the
//! engine are consumers side by side, on threads of their own (pinned to cores when there
//! are enough). The engine applies speculatively; nothing it computed leaves the process
//! until the journaler has synced that sequence. `/metrics` and `/health` are served by a
//! small HTTP thread.

pub mod config;
mod connection;
mod follow;
mod gateway;
pub mod http;
pub mod log;
pub mod metrics;
pub mod node;
mod slot;
mod stages;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use engine::ring::{RingBuilder, WaitStrategy};
use engine::{Engine, EngineConfig};
use journal::{IoMode, Storage};
use replicator::{Backlog, Epochs};

use crate::data_dir::{DataDir, Journaler};
use config::ServerConfig;
use metrics::Metrics;
use node::{Node, Role};
use slot::Slot;

/// Flags and figures every thread of one server shares.
pub struct Shared {
    pub metrics: Metrics,
    /// Stop taking requests, answer what is in flight, then stop (SIGTERM).
    pub draining: AtomicBool,
    /// The journal failed: answer nothing more.
    pub failed: AtomicBool,
    /// Stages stop once the gateway has drained.
    pub stop: AtomicBool,
    /// Milliseconds since start at the gateway's last turn (the watchdog's evidence of life).
    heartbeat_ms: AtomicU64,
    /// The engine's rolling hash after the last batch it applied (`/health`).
    pub engine_hash: AtomicU64,
    started: Instant,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(0),
            engine_hash: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    pub fn fail(&self) {
        self.failed.store(true, SeqCst);
        self.metrics.serving.store(0, SeqCst);
    }

    fn heartbeat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.heartbeat_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the gateway loop turned within `within`, and nothing failed.
    pub fn alive(&self, within: Duration) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.heartbeat_ms.load(std::sync::atomic::Ordering::Relaxed);
        !self.failed.load(SeqCst) && now.saturating_sub(last) <= within.as_millis() as u64
    }

    /// "serving", "draining", "failed" or "starting".
    pub fn status(&self) -> &'static str {
        if self.failed.load(SeqCst) {
            "failed"
        } else if self.draining.load(SeqCst) {
            "draining"
        } else if self.metrics.serving.load(SeqCst) == 1 {
            "serving"
        } else {
            "starting"
        }
    }
}

/// Wakes the gateway out of `poll` when the gate may have something to release. Stages call
/// `nudge` after every release; it costs an eventfd write only when the gateway is asleep.
pub struct Wake {
    sleeping: AtomicBool,
    waker: mio::Waker,
}

impl Wake {
    pub fn nudge(&self) {
        if self.sleeping.load(SeqCst) && self.sleeping.swap(false, SeqCst) {
            let _ = self.waker.wake();
        }
    }
}

/// How a node starts: a primary, or a standby of the primary at `primary` (its replication
/// port). A standby with an empty journal takes `engine` (the primary's configuration).
pub enum Start {
    Primary,
    Standby {
        primary: SocketAddr,
        engine: Option<EngineConfig>,
    },
}

/// A running server.
pub struct Server {
    pub client_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Where a standby connects while this node is the primary, if replication is on.
    pub replication_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    pub node: Arc<Node>,
    /// What start-up did, for the log and the READY status.
    pub summary: String,
    gateway: JoinHandle<Result<(), String>>,
    stages: Vec<JoinHandle<()>>,
    http: JoinHandle<()>,
    replication: Option<replicator::primary::Primary>,
    follower: Option<JoinHandle<()>>,
    _dir_lock: crate::data_dir::DirLock,
}

/// Busy threads in the pipeline: gateway, journaler, engine.
const PIPELINE_THREADS: usize = 3;

impl Server {
    /// Recover the data directory, open the journal (on `storage` if given, for tests that
    /// slow or break it), bind the ports and start every thread.
    pub fn start(config: &ServerConfig, storage: Option<Arc<dyn Storage>>) -> anyhow::Result<Self> {
        Server::start_node(config, storage, Start::Primary)
    }

    /// Start as a primary or as a standby.
    pub fn start_node(
        config: &ServerConfig,
        storage: Option<Arc<dyn Storage>>,
        start: Start,
    ) -> anyhow::Result<Self> {
        let dir = DataDir::new(&config.data_dir);
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        let dir_lock = dir.lock()?;
        let replay_started = Instant::now();
        let replayed = dir.replay()?;
        for warning in &replayed.warnings {
            log::line(
                log::Level::Warn,
                "recovery_notice",
                None,
                &[("detail", warning)],
            );
        }
        let configured = match &start {
            Start::Standby {
                engine: Some(engine),
                ..
            } => *engine,
            _ => config.engine_config(),
        };
        let mut engine = if replayed.last_seq == 0 {
            Engine::new(configured)
        } else {
            if *replayed.engine.config() != configured {
                log::line(
                    log::Level::Warn,
                    "engine_config_from_journal",
                    None,
                    &[(
                        "detail",
                        &"the journal's engine configuration differs from the \
                                    configured one; the journal's is used",
                    )],
                );
            }
            replayed.engine
        };
        engine.preallocate(config.engine.preallocate_orders);
        log::info(
            "recovered",
            &[
                ("last_seq", &replayed.last_seq),
                ("records_replayed", &replayed.records_replayed),
                ("snapshot_seq", &replayed.snapshot_seq.unwrap_or(0)),
                ("ms", &replay_started.elapsed().as_millis()),
            ],
        );
        let (role, epochs) = node_epochs(&config.data_dir, &start)?;
        let replication_listen = config.replication.listen_addr()?;
        let replicated = replication_listen.is_some() || role == Role::Standby;
        if replicated && config.replication.secret.is_empty() {
            anyhow::bail!("replication.secret must be set when replication is on (the same in every node's file)");
        }
        let node = Arc::new(Node::new(
            config.data_dir.clone(),
            role,
            epochs,
            &config.replication,
            replicated,
        )?);
        let catch_up_storage: Arc<dyn Storage> = match &storage {
            Some(storage) => storage.clone(),
            None => Arc::new(dir.journal(IoMode::Pwritev2)?),
        };
        let (mut journaler, io) = match storage {
            Some(storage) => Journaler::open_on(storage, engine.config(), config.segment_len())?,
            None => Journaler::open_dir(
                &dir,
                config.io_mode()?,
                engine.config(),
                config.segment_len(),
            )?,
        };
        let next_seq = journaler.next_seq();
        node.received_seq.store(next_seq - 1, SeqCst);
        let backlog = Arc::new(Backlog::new(
            (config.replication.backlog_mib << 20) as usize,
            next_seq - 1,
        ));
        if replicated {
            let backlog = backlog.clone();
            journaler.set_tap(Box::new(move |first, last, bytes| {
                backlog.push(first, last, bytes)
            }));
        }
        let config_record = engine::codec::encode_config(engine.config());

        let strategy = config.wait_strategy(PIPELINE_THREADS)?;
        let cores = pinning(config)?;
        let shared = Arc::new(Shared::new());
        shared.metrics.durable_seq.store(next_seq - 1, SeqCst);
        shared.metrics.applied_seq.store(next_seq - 1, SeqCst);
        shared
            .metrics
            .ring_slots
            .store(config.ring.slots as u64, SeqCst);

        let mut ring = RingBuilder::<Slot>::new(config.ring.slots, strategy);
        let journal_stage = ring.stage(&[]);
        let engine_stage = ring.stage(&[]);
        let gate_stage = ring.stage(&[journal_stage, engine_stage]);
        let (producer, stages) = ring.build();
        let mut stages: Vec<Option<_>> = stages.into_iter().map(Some).collect();
        let take = |stages: &mut Vec<Option<_>>, i: usize| stages[i].take().expect("once");
        let journal_consumer = take(&mut stages, journal_stage.index());
        let engine_consumer = take(&mut stages, engine_stage.index());
        let gate = take(&mut stages, gate_stage.index());

        let poll = mio::Poll::new().context("creating the poller")?;
        let waker =
            mio::Waker::new(poll.registry(), gateway::WAKER).context("creating the waker")?;
        let wake = Arc::new(Wake {
            sleeping: AtomicBool::new(false),
            waker,
        });
        let std_listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("listening on {}", config.listen))?;
        std_listener.set_nonblocking(true)?;
        let client_addr = std_listener.local_addr()?;
        let listener = mio::net::TcpListener::from_std(std_listener);
        let http_listener = std::net::TcpListener::bind(config.http)
            .with_context(|| format!("serving HTTP on {}", config.http))?;
        let http_addr = http_listener.local_addr()?;

        let (intake_tx, intake_rx) = crossbeam_channel::bounded(follow::INTAKE_BATCHES);
        node.attach(wake.clone());
        let gateway = gateway::Gateway::new(
            poll,
            listener,
            producer,
            gate,
            shared.clone(),
            wake.clone(),
            config.gateway.clone(),
            strategy,
            gateway::Feed {
                node: node.clone(),
                intake: (role == Role::Standby).then_some(intake_rx),
                next_seq,
            },
        )?;
        let spawn_stage = |name: &str, core: Option<usize>, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    pin(core);
                    f()
                })
                .context("spawning a stage")
        };
        let stages = vec![
            spawn_stage("surge-journaler", cores.journaler, {
                let (shared, wake, node) = (shared.clone(), wake.clone(), node.clone());
                Box::new(move || {
                    stages::run_journaler(journal_consumer, journaler, shared, wake, node)
                })
            })?,
            spawn_stage("surge-engine", cores.engine, {
                let (shared, wake, node) = (shared.clone(), wake.clone(), node.clone());
                Box::new(move || {
                    stages::run_engine(engine_consumer, engine, next_seq, shared, wake, node)
                })
            })?,
        ];
        let gateway_core = cores.gateway;
        let gateway = std::thread::Builder::new()
            .name("surge-gateway".into())
            .spawn(move || {
                pin(gateway_core);
                gateway.run()
            })?;
        let replication = match replication_listen {
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .with_context(|| format!("replication.listen {addr}"))?;
                let primary = replicator::primary::Primary::start(
                    listener,
                    config.replication.settings(),
                    replicator::primary::Sources {
                        backlog: backlog.clone(),
                        checkpoints: node.checkpoints.clone(),
                        journal: catch_up_storage,
                        config: config_record.clone(),
                    },
                    Arc::new(node::PrimaryHooks {
                        node: node.clone(),
                        shared: shared.clone(),
                    }),
                    node.standby.clone(),
                )?;
                Some(primary)
            }
            None => None,
        };
        let replication_addr = replication.as_ref().map(|r| r.addr);
        let follower = match start {
            Start::Standby { primary, .. } => Some(
                follow::FollowerThread {
                    primary,
                    settings: config.replication.settings(),
                    name: config.replication.node.clone(),
                    auto_failover: config.replication.auto_failover(),
                    config: config_record,
                    node: node.clone(),
                    shared: shared.clone(),
                    wake: wake.clone(),
                    intake: intake_tx,
                }
                .spawn()?,
            ),
            Start::Primary => None,
        };
        if config.replication.auto_failover()
            && (node.ack == config::AckMode::Async || node.degrade)
        {
            log::line(
                log::Level::Warn,
                "unsafe_failover",
                Some(node::repl_code(replicator::ReplicationCode::UnsafeFailover)),
                &[(
                    "detail",
                    &"failover = auto without synchronous acks and on_standby_loss = halt: \
                      both nodes may acknowledge writes during a partition",
                )],
            );
        }
        let http = http::spawn(
            http_listener,
            shared.clone(),
            node.clone(),
            config.admin.token.clone(),
        )?;
        shared.metrics.serving.store(1, SeqCst);
        let replication_shown =
            replication_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
        let summary = format!(
            "role={} epoch={} listen={client_addr} http={http_addr} replication={replication_shown} \
             next_seq={next_seq} io={io} wait={} cores={} pinned={}",
            node.role().name(),
            node.epoch(),
            strategy.name(),
            config::available_cores(),
            cores.describe()
        );
        log::info(
            "serving",
            &[
                ("role", &node.role().name()),
                ("epoch", &node.epoch()),
                ("listen", &client_addr),
                ("http", &http_addr),
                ("replication", &replication_shown),
                ("next_seq", &next_seq),
                ("io", &io),
                ("wait", &strategy.name()),
                ("cores", &config::available_cores()),
                ("pinned", &cores.describe()),
            ],
        );
        if strategy == WaitStrategy::BusySpin && cores.gateway.is_none() {
            log::line(
                log::Level::Warn,
                "spinning_unpinned",
                None,
                &[(
                    "detail",
                    &"busy-spin without pinned cores: stages may share a core",
                )],
            );
        }
        Ok(Server {
            client_addr,
            http_addr,
            replication_addr,
            shared,
            node,
            summary,
            gateway,
            stages,
            http,
            replication,
            follower,
            _dir_lock: dir_lock,
        })
    }

    /// Begin a graceful stop: no new requests, answer what is in flight.
    pub fn shutdown(&self) {
        self.shared.draining.store(true, SeqCst);
    }

    /// Wait for the server to stop (after `shutdown`, or on its own after a failure).
    pub fn wait(self) -> anyhow::Result<()> {
        let result = self
            .gateway
            .join()
            .map_err(|_| anyhow!("the gateway thread panicked"))?;
        self.shared.stop.store(true, SeqCst);
        self.node.stop_following.store(true, SeqCst);
        self.node.link.fence_and_close(0);
        if let Some(follower) = self.follower {
            let _ = follower.join();
        }
        drop(self.replication);
        for stage in self.stages {
            stage
                .join()
                .map_err(|_| anyhow!("a stage thread panicked"))?;
        }
        let _ = self.http.join();
        result.map_err(|e| anyhow!("{}: {e}", engine::Code::ServerFailed))
    }
}

/// This node's role and epochs at start. A primary whose epoch file names a newer epoch than
/// it leads was replaced while it was away: it starts fenced.
fn node_epochs(dir: &std::path::Path, start: &Start) -> anyhow::Result<(Role, Epochs)> {
    let loaded = Epochs::load(dir).context("reading the epoch file")?;
    Ok(match (start, loaded) {
        (Start::Primary, None) => {
            let epochs = Epochs::first();
            epochs.store(dir).context("writing the epoch file")?;
            (Role::Primary, epochs)
        }
        (Start::Primary, Some(epochs)) if epochs.leads() => (Role::Primary, epochs),
        (Start::Primary, Some(epochs)) => {
            log::line(
                log::Level::Warn,
                "starting_fenced",
                Some(node::repl_code(replicator::ReplicationCode::Fenced)),
                &[
                    ("epoch", &epochs.epoch),
                    (
                        "detail",
                        &"a newer primary exists: writes are refused; rejoin with `surge standby`",
                    ),
                ],
            );
            (Role::Fenced, epochs)
        }
        (Start::Standby { .. }, loaded) => (
            Role::Standby,
            loaded.unwrap_or(Epochs {
                epoch: 0,
                history: Vec::new(),
            }),
        ),
    })
}

/// The core each stage runs on, if pinned.
#[derive(Clone, Copy, Debug, Default)]
struct Cores {
    gateway: Option<usize>,
    journaler: Option<usize>,
    engine: Option<usize>,
}

impl Cores {
    fn describe(&self) -> String {
        match (self.gateway, self.journaler, self.engine) {
            (None, None, None) => "none".into(),
            (g, j, e) => format!(
                "gateway:{},journaler:{},engine:{}",
                show(g),
                show(j),
                show(e)
            ),
        }
    }
}

fn show(core: Option<usize>) -> String {
    core.map_or("-".into(), |c| c.to_string())
}

/// "auto" pins stage i to core i+1 (core 0 is left to the OS, interrupts and the HTTP
/// thread) when there are cores for all of them; "manual" takes the configured ids.
fn pinning(config: &ServerConfig) -> anyhow::Result<Cores> {
    let available = config::available_cores();
    let c = &config.cores;
    Ok(match c.pin.as_str() {
        "off" => Cores::default(),
        "manual" => {
            let ids = core_affinity::get_core_ids().unwrap_or_default();
            for core in [c.gateway, c.journaler, c.engine].into_iter().flatten() {
                if !ids.iter().any(|id| id.id == core) {
                    anyhow::bail!("cores: core {core} is not available to this process");
                }
            }
            Cores {
                gateway: c.gateway,
                journaler: c.journaler,
                engine: c.engine,
            }
        }
        _ if available > PIPELINE_THREADS => {
            let ids = core_affinity::get_core_ids().unwrap_or_default();
            Cores {
                gateway: ids.get(1).map(|c| c.id),
                journaler: ids.get(2).map(|c| c.id),
                engine: ids.get(3).map(|c| c.id),
            }
        }
        _ => Cores::default(),
    })
}

fn pin(core: Option<usize>) {
    if let Some(id) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            log::line(log::Level::Warn, "pin_failed", None, &[("core", &id)]);
        }
    }
}
