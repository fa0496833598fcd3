//! Putting a node together: recover the data directory (snapshot + journal), decide the role
//! and epochs, open the journal, build the ring (journal stage and engine stage side by side,
//! the gate after both), bind the ports, and start every thread: gateway, stages, HTTP,
//! replication (the primary's listener or the standby's follower). `Server` is the running
//! node: its addresses, its shared state, and how to stop it. `supervise.rs` runs it under a
//! service manager; `allocator.rs` tunes malloc first.

pub mod allocator;
mod recover;
pub mod supervise;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::thread::JoinHandle;

use engine::ring::{RingBuilder, WaitStrategy};
use engine::EngineConfig;
use journal::{IoMode, Storage};
use replicator::net::TcpAcceptor;
use replicator::tls::TlsAcceptor;

use replicator::Backlog;

use crate::checkpoint::data_dir::{DataDir, DirLock};
use crate::checkpoint::snapshotter::{Policy, Snapshotter};
use crate::config::{self, ServerConfig};
use crate::drivers::follower::FollowerThread;
use crate::drivers::primary_hooks::PrimaryHooks;
use crate::error::{Result, ServerError};
use crate::feed::port::{FeedPort, PortLimits};
use crate::feed::stage::FeedStage;
use crate::feed::writer::FeedLimits;
use crate::feed::FeedShared;
use crate::group::epochs::EpochDir;
use crate::group::follower_side::INTAKE_BATCHES;
use crate::group::node::Node;
use crate::group::role::Role;
use crate::pipeline::cores::{pin, Cores};
use crate::pipeline::engine_stage::EngineStage;
use crate::pipeline::gate::Gate;
use crate::pipeline::gateway::{Gateway, Parts, Stages, WAKER};
use crate::pipeline::journal_io::JournalIo;
use crate::pipeline::journal_stage::JournalStage;
use crate::pipeline::journaler::Journaler;
use crate::pipeline::layout::{self, Layout};
use crate::pipeline::net_tls::TlsListener;
use crate::pipeline::sequencer::Sequencer;
use crate::pipeline::shared::{Shared, Wake};
use crate::pipeline::slot::Slot;
use crate::telemetry::log;
use crate::telemetry::log::repl_code;
use crate::{Clock, SystemClock};

use recover::{node_epochs, recover};

/// How long a standby has for the TLS handshake at the replication port.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How a node starts: a primary, the primary of `epoch` by election (failover through etcd:
/// the epoch is the fencing token its campaign won), or a standby of the primary at `primary`
/// (its replication port). A standby with an empty journal takes `engine` (the primary's
/// configuration).
pub enum Start {
    Primary,
    Elected {
        epoch: u64,
    },
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
    gateway: JoinHandle<Result<()>>,
    stages: Vec<JoinHandle<()>>,
    http: JoinHandle<()>,
    replication: Option<replicator::primary::Primary>,
    follower: Option<JoinHandle<()>>,
    snapshotter: Option<JoinHandle<()>>,
    faulter: Option<JoinHandle<()>>,
    /// The feed port, if this node keeps a feed.
    pub feed_addr: Option<SocketAddr>,
    feed: Option<JoinHandle<()>>,
    _dir_lock: DirLock,
}

impl Server {
    /// Recover the data directory, open the journal (on `storage` if given, for tests that
    /// slow or break it), bind the ports and start every thread.
    pub fn start(config: &ServerConfig, storage: Option<Arc<dyn Storage>>) -> Result<Self> {
        Server::start_node(config, storage, Start::Primary)
    }

    /// Start as a primary or as a standby.
    pub fn start_node(
        config: &ServerConfig,
        storage: Option<Arc<dyn Storage>>,
        start: Start,
    ) -> Result<Self> {
        crate::start::allocator::tune();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let dir = DataDir::new(&config.data_dir);
        dir.create()?;
        let dir_lock = dir.lock()?;
        let shared = Arc::new(Shared::new(clock.clone()));
        let feed_addr = config.feed.listen_addr()?;
        let feed_limits = FeedLimits {
            segment_bytes: config.feed.segment_mib << 20,
            max_bytes: config.feed.max_mib << 20,
        };
        let feed_to_keep = feed_addr.map(|_| {
            (
                FeedShared::new(config.feed_dir(), shared.clone()),
                feed_limits,
            )
        });
        let recovered = recover(&dir, config, &start, clock.as_ref(), &feed_to_keep)?;
        let (engine, recovered_seq, faulter) = (recovered.engine, recovered.seq, recovered.faulter);
        let feed_writer = recovered.feed;
        let (role, epochs) = node_epochs(&dir, &start, recovered_seq + 1)?;
        let replication_listen = config.replication.listen_addr()?;
        let replicated = replication_listen.is_some() || role == Role::Standby;
        if replicated && config.replication.secret.is_empty() {
            return Err(ServerError::config(
                "replication.secret",
                "must be set when replication is on (the same in every node's file)",
            ));
        }
        let node = Arc::new(Node::new(
            Box::new(EpochDir(config.data_dir.clone())),
            role,
            epochs,
            &config.replication,
            replicated,
        )?);
        let catch_up_storage: Arc<dyn Storage> = match &storage {
            Some(storage) => storage.clone(),
            None => Arc::new(dir.journal(IoMode::Pwritev2)?),
        };
        let journal_io = JournalIo::choose(&config.journal, config.io_mode()?);
        let (mut journaler, _) = match storage {
            Some(storage) => Journaler::open_on(
                storage,
                engine.config(),
                config.segment_len(),
                recovered_seq + 1,
            )?,
            None => dir.journaler(
                journal_io.mode,
                engine.config(),
                config.segment_len(),
                recovered_seq + 1,
            )?,
        };
        let next_seq = journaler.next_seq();
        node.follower().received_seq.store(next_seq - 1, SeqCst);
        // A new journal's first record (the configuration) is not applied to the engine.
        assert!(
            recovered_seq == next_seq - 1 || (recovered_seq == 0 && next_seq == 2),
            "the engine was rebuilt to {recovered_seq} but the journal continues at {next_seq}"
        );
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

        let layout = Layout::for_config(config);
        let strategy = config.wait_strategy(layout.busy_threads())?;
        let cores = Cores::for_config(config)?;
        shared.release.publish_durable(next_seq - 1);
        shared.metrics.applied_seq.store(next_seq - 1, SeqCst);
        shared
            .metrics
            .ring_slots
            .store(config.ring.slots as u64, SeqCst);

        let feed_on = feed_writer.is_some();
        let mut ring =
            RingBuilder::<Slot>::with_fill(config.ring.slots, strategy, move || match feed_on {
                true => Slot::with_feed_room(),
                false => Slot::default(),
            });
        let journal_stage = ring.stage(&[]);
        let engine_stage = ring.stage(&[]);
        let gate_stage = ring.stage(&[journal_stage, engine_stage]);
        let feed_stage = feed_writer.as_ref().map(|_| ring.stage(&[gate_stage]));
        let (producer, consumers) = ring.build();
        let mut consumers: Vec<Option<_>> = consumers.into_iter().map(Some).collect();
        let mut take = |i: usize| consumers[i].take().expect("each stage once");
        let journal_consumer = take(journal_stage.index());
        let engine_consumer = take(engine_stage.index());
        let gate = Gate::new(take(gate_stage.index()));
        let feed_stage = match (feed_stage, feed_writer, &feed_to_keep) {
            (Some(stage), Some(writer), Some((feed, _))) => {
                Some(FeedStage::new(take(stage.index()), writer, feed.clone()))
            }
            _ => None,
        };

        let poll = mio::Poll::new().map_err(|e| ServerError::io("creating the poller", e))?;
        let waker = mio::Waker::new(poll.registry(), WAKER)
            .map_err(|e| ServerError::io("creating the waker", e))?;
        let wake = Arc::new(Wake::new(waker));
        let std_listener = std::net::TcpListener::bind(config.listen)
            .map_err(|e| ServerError::io(format!("listening on {}", config.listen), e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| ServerError::io("a non-blocking listener", e))?;
        let client_addr = std_listener
            .local_addr()
            .map_err(|e| ServerError::io("the listener's address", e))?;
        let listener = mio::net::TcpListener::from_std(std_listener);
        let http_tls = config.http_tls()?;
        let http_listener = std::net::TcpListener::bind(config.http)
            .map_err(|e| ServerError::io(format!("serving HTTP on {}", config.http), e))?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|e| ServerError::io("the HTTP listener's address", e))?;

        let (intake_tx, intake_rx) = crossbeam_channel::bounded(INTAKE_BATCHES);
        node.attach(wake.clone());
        let sequencer = Sequencer::new(
            producer,
            clock.clone(),
            next_seq,
            config.tick_interval(),
            (role == Role::Standby).then_some(intake_rx),
        );
        macro_rules! parts {
            ($listener:expr) => {
                Parts {
                    poll,
                    listener: $listener,
                    sequencer,
                    gate,
                    shared: shared.clone(),
                    wake: wake.clone(),
                    node: node.clone(),
                }
            };
        }
        let journal = JournalStage::new(
            journal_consumer,
            journaler,
            journal_io.commits_in_flight,
            shared.clone(),
            wake.clone(),
            replicated.then(|| node.follower().ack_signal.clone()),
        );
        let io = match &journal_io.why {
            Some(why) => format!("{} ({why})", journal.describe_io()),
            None => journal.describe_io(),
        };
        let engine = EngineStage::new(
            engine_consumer,
            engine,
            next_seq,
            shared.clone(),
            wake.clone(),
            node.clone(),
        );
        let checkpoints = crate::checkpoint::saver::start(
            config,
            &dir,
            &shared,
            &node,
            recovered.checkpoint,
            next_seq - 1,
            feed_to_keep.as_ref().map(|(feed, _)| feed.clone()),
        )?;
        let (engine, saver) = match checkpoints {
            Some((checkpointer, saver)) => (engine.with_checkpoints(checkpointer), Some(saver)),
            None => (engine, None),
        };
        let engine = match feed_stage {
            Some(_) => engine.with_feed(),
            None => engine,
        };
        let (mut stages, single) = match layout {
            Layout::Threads => (
                vec![
                    spawn_pipeline("surge-journaler", cores.journaler, move || journal.run())?,
                    spawn_pipeline("surge-engine", cores.engine, move || engine.run())?,
                ],
                None,
            ),
            Layout::Shared => {
                let shared = shared.clone();
                let thread = spawn_pipeline("surge-stages", cores.engine, move || {
                    layout::run_shared(journal, engine, shared)
                })?;
                (vec![thread], None)
            }
            Layout::Single => (Vec::new(), Some(Stages { journal, engine })),
        };
        stages.extend(saver);
        if let Some(feed_stage) = feed_stage {
            stages.push(
                std::thread::Builder::new()
                    .name("surge-feeder".into())
                    .spawn(move || feed_stage.run())
                    .map_err(|e| ServerError::io("spawning the feed stage", e))?,
            );
        }
        // One gateway type per kind of client port: plain TCP, or TLS over it.
        let gateway: Box<dyn FnOnce() -> Result<()> + Send> = match config.client_tls()? {
            None => {
                let gateway = Gateway::new(parts!(listener), config.gateway.clone(), strategy)?;
                let gateway = match single {
                    Some(stages) => gateway.with_stages(stages),
                    None => gateway,
                };
                Box::new(move || gateway.run())
            }
            Some(tls) => {
                let listener = TlsListener::new(listener, tls);
                let gateway = Gateway::new(parts!(listener), config.gateway.clone(), strategy)?;
                let gateway = match single {
                    Some(stages) => gateway.with_stages(stages),
                    None => gateway,
                };
                Box::new(move || gateway.run())
            }
        };
        let gateway = spawn_pipeline("surge-gateway", cores.gateway, gateway)?;
        let replication = match replication_listen {
            Some(addr) => {
                let bound = std::net::TcpListener::bind(addr)
                    .and_then(TcpAcceptor::new)
                    .map_err(|e| ServerError::io(format!("replication.listen {addr}"), e))?;
                let addr = bound
                    .local_addr()
                    .map_err(|e| ServerError::io("the replication listener's address", e))?;
                let listener: Box<dyn replicator::net::Listener> = match config.replication.tls()? {
                    Some(tls) => Box::new(TlsAcceptor::new(bound, tls, HANDSHAKE_TIMEOUT)),
                    None => Box::new(bound),
                };
                let primary = replicator::primary::Primary::start(
                    addr,
                    listener,
                    config.replication.settings(),
                    replicator::primary::Sources {
                        backlog: backlog.clone(),
                        checkpoints: node.checkpoints().clone(),
                        journal: catch_up_storage.clone(),
                        snapshots: Arc::new(dir.snapshots()?),
                        newest_chain: Some({
                            let dir = DataDir::new(dir.root());
                            Arc::new(move || dir.newest_chain_files().map_err(|e| e.to_string()))
                        }),
                        config: config_record.clone(),
                    },
                    Arc::new(PrimaryHooks {
                        node: node.clone(),
                        shared: shared.clone(),
                    }),
                    node.standbys().clone(),
                    clock.clone(),
                )
                .map_err(|e| ServerError::io("starting the replication listener", e))?;
                Some(primary)
            }
            None => None,
        };
        let replication_addr = replication.as_ref().map(|r| r.addr);
        let feed = match (feed_addr, &feed_to_keep) {
            (Some(addr), Some((feed, _))) => {
                let listener = std::net::TcpListener::bind(addr)
                    .map_err(|e| ServerError::io(format!("binding the feed port {addr}"), e))?;
                let port = FeedPort::start(
                    listener,
                    feed.clone(),
                    PortLimits {
                        max_subscribers: config.feed.max_subscribers as usize,
                        batch_bytes: (config.feed.batch_kib as usize) << 10,
                    },
                )
                .map_err(|e| ServerError::io("starting the feed port", e))?;
                Some((feed.clone(), port))
            }
            _ => None,
        };
        let feed_addr = feed.as_ref().map(|(_, port)| port.addr);
        let snapshotter = match config.snapshots_on() {
            true => Some(
                Snapshotter::new(
                    DataDir::new(&config.data_dir),
                    catch_up_storage.clone(),
                    Policy {
                        every_records: config.snapshot.every_records,
                        every_secs: config.snapshot.every_secs,
                        keep: config.snapshot.keep as usize,
                        retention: config.retention()?,
                        pace: journal::snapshot::Pace {
                            piece_bytes: (config.snapshot.write_piece_kib << 10) as usize,
                            pause: std::time::Duration::from_millis(config.snapshot.write_pause_ms),
                        },
                    },
                    shared.clone(),
                    node.clone(),
                    feed.as_ref().map(|(feed, _)| feed.clone()),
                )?
                .spawn()
                .map_err(|e| ServerError::io("spawning the snapshotter", e))?,
            ),
            false => None,
        };
        let follower = match start {
            Start::Standby { primary, .. } => Some(
                FollowerThread {
                    primary,
                    settings: config.replication.settings(),
                    name: config.replication.node.clone(),
                    auto_failover: config.replication.auto_failover(),
                    dialer: config.replication.dialer()?,
                    config: config_record,
                    node: node.clone(),
                    shared: shared.clone(),
                    wake: wake.clone(),
                    intake: intake_tx,
                    dir: config.data_dir.clone(),
                }
                .spawn()
                .map_err(|e| ServerError::io("spawning the follower", e))?,
            ),
            Start::Primary | Start::Elected { .. } => None,
        };
        if config.replication.auto_failover()
            && (!node.policy().synchronous || node.policy().degrade)
        {
            log::line(
                log::Level::Warn,
                "unsafe_failover",
                Some(repl_code(replicator::ReplicationCode::UnsafeFailover)),
                &[(
                    "detail",
                    &"failover = auto without synchronous acks and on_standby_loss = halt: \
                      both nodes may acknowledge writes during a partition",
                )],
            );
        }
        let http = crate::ops::http::spawn(
            http_listener,
            shared.clone(),
            node.clone(),
            config.admin.token.clone(),
            http_tls,
        )
        .map_err(|e| ServerError::io("starting the HTTP thread", e))?;
        shared.metrics.serving.store(1, SeqCst);
        let replication_shown =
            replication_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
        let feed_shown = feed_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
        let summary = format!(
            "role={} epoch={} listen={client_addr} http={http_addr} replication={replication_shown} \
             feed={feed_shown} next_seq={next_seq} io={io} wait={} cores={} layout={} pinned={}",
            node.role().name(),
            node.epoch(),
            strategy.name(),
            config::available_cores(),
            layout.name(),
            cores.describe()
        );
        log::info(
            "serving",
            &[
                ("role", &node.role().name()),
                ("epoch", &node.epoch()),
                ("listen", &client_addr),
                ("client_tls", &!config.gateway.tls_cert.is_empty()),
                ("http", &http_addr),
                ("replication", &replication_shown),
                ("feed", &feed_shown),
                ("next_seq", &next_seq),
                ("io", &io),
                ("wait", &strategy.name()),
                ("cores", &config::available_cores()),
                ("layout", &layout.name()),
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
            snapshotter,
            faulter,
            feed_addr,
            feed: feed.map(|(_, port)| port.thread),
            _dir_lock: dir_lock,
        })
    }

    /// Begin a graceful stop: no new requests, answer what is in flight.
    pub fn shutdown(&self) {
        self.shared.draining.store(true, SeqCst);
    }

    /// Wait for the server to stop (after `shutdown`, or on its own after a failure).
    pub fn wait(self) -> Result<()> {
        let result = self
            .gateway
            .join()
            .map_err(|_| ServerError::Panicked("gateway"))?;
        self.shared.stop.store(true, SeqCst);
        self.node.follower().stop();
        self.node.follower().link.fence_and_close(0);
        if let Some(follower) = self.follower {
            let _ = follower.join();
        }
        drop(self.replication);
        if let Some(snapshotter) = self.snapshotter {
            let _ = snapshotter.join();
        }
        if let Some(faulter) = self.faulter {
            let _ = faulter.join();
        }
        if let Some(feed) = self.feed {
            let _ = feed.join();
        }
        for stage in self.stages {
            stage.join().map_err(|_| ServerError::Panicked("stage"))?;
        }
        let _ = self.http.join();
        result
    }
}

/// Start a pipeline thread on `core`. A panic in one (a broken invariant, a sequence that
/// does not match) stops the whole process at once: the pipeline cannot go on without it,
/// and a restart recovers exactly what the journal holds.
fn spawn_pipeline<T: Send + 'static>(
    name: &'static str,
    core: Option<usize>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            pin(core);
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(result) => result,
                Err(_) => {
                    log::line(
                        log::Level::Error,
                        "pipeline_thread_panicked",
                        None,
                        &[
                            ("thread", &name),
                            ("detail", &"aborting; restart to recover"),
                        ],
                    );
                    std::process::abort();
                }
            }
        })
        .map_err(|e| ServerError::io(format!("spawning {name}"), e))
}
