//! `surge standby`: a hot standby of the primary at `--primary` (its replication port). It
//! journals and applies everything the primary sequences, answers queries, and becomes the
//! primary on `surge promote` (or by itself with `failover = "auto"`). A new data directory
//! first takes the primary's engine configuration, and its newest snapshot when the primary's
//! journal no longer starts at the beginning; a node told to cut its journal (failback) does
//! so and starts again, and one too far behind to follow starts over from the snapshot the
//! primary sends it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use replicator::follower::{AckSignal, Ended, Follower, Link, Sink, StandbyNode, Standing};
use replicator::{Epochs, ReplicationCode};
use server::SystemClock;

use server::checkpoint::data_dir::DataDir;
use server::start::supervise::{started, stop_on_signals, supervise};
use server::telemetry::log;
use server::{Server, ServerConfig, Start};

use crate::node_args::NodeArgs;

#[derive(clap::Args)]
pub struct StandbyArgs {
    #[command(flatten)]
    pub serve: NodeArgs,
    /// The primary's replication address (its `replication.listen`).
    #[arg(long)]
    pub primary: String,
}

pub fn run(args: StandbyArgs) -> anyhow::Result<()> {
    let config = args.serve.config()?;
    anyhow::ensure!(
        !config.replication.secret.is_empty(),
        "replication.secret must be set (the same in every node's file)"
    );
    let primary: SocketAddr = args
        .primary
        .parse()
        .with_context(|| format!("--primary {:?}: expected IP:PORT", args.primary))?;
    let stop = stop_on_signals()?;
    follow(config, primary, &stop, &mut |_| {})
}

/// Run as the standby of `primary` until stopped: bootstrap a new data directory, start,
/// and start again after a failback cut or a snapshot hand-over. `on_start` sees each
/// server started (failover through etcd registers and attaches it).
pub fn follow(
    mut config: ServerConfig,
    primary: SocketAddr,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    on_start: &mut dyn FnMut(&Server),
) -> anyhow::Result<()> {
    loop {
        let dir = DataDir::new(&config.data_dir);
        dir.create()?;
        let engine = if dir.is_empty()? {
            match bootstrap(&config, primary, stop)? {
                Some(engine) => Some(engine),
                None => return Ok(()), // stopped while waiting
            }
        } else {
            None
        };
        let server = started(Server::start_node(
            &config,
            None,
            Start::Standby { primary, engine },
        ))?;
        on_start(&server);
        // A restart (to cut the journal) keeps the addresses the first start bound, ephemeral
        // ones included: clients and operators already know them.
        config.listen = server.client_addr;
        config.http = server.http_addr;
        if let Some(addr) = server.replication_addr {
            config.replication.listen = addr.to_string();
        }
        if let Some(addr) = server.feed_addr {
            config.feed.listen = addr.to_string();
        }
        let node = supervise(server, stop)?;
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let cut = node
            .follower()
            .truncate_to
            .lock()
            .expect("node lock")
            .take();
        let snapshot = node
            .follower()
            .snapshot_to
            .lock()
            .expect("node lock")
            .take();
        match (cut, snapshot) {
            (Some(seq), _) => {
                let records = dir.truncate_after(seq)?;
                log::info(
                    "journal_truncated",
                    &[("after_seq", &seq), ("records_cut", &records)],
                );
            }
            (None, Some(seq)) => {
                dir.adopt_staged_snapshot(seq)?;
                log::info("restarting_from_snapshot", &[("snapshot_seq", &seq)]);
            }
            (None, None) => return Ok(()),
        }
    }
}

/// A new standby: wait for the primary, take its epochs and engine configuration, and its
/// newest snapshot if it sends one (a primary whose journal no longer starts at the
/// beginning does; otherwise it closes after the welcome).
fn bootstrap(
    config: &ServerConfig,
    primary: SocketAddr,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Option<engine::EngineConfig>> {
    let dir = DataDir::new(&config.data_dir);
    let node = Bootstrap {
        dir: config.data_dir.clone(),
        adopted: Mutex::new(None),
    };
    let follower = Follower::new(
        config.replication.settings(),
        config.replication.node.clone(),
        Vec::new(), // any configuration: this node takes the primary's
        Arc::new(Link::default()),
        Arc::new(SystemClock::new()),
        stop.clone(),
        Arc::new(AckSignal::default()),
    );
    let dialer = config.replication.dialer()?;
    let mut staging = Staging { dir: &dir };
    let mut said = false;
    while !stop.load(SeqCst) {
        let ended = follower.session(dialer.as_ref(), primary, &node, &mut staging);
        let adopted = *node.adopted.lock().expect("bootstrap lock");
        let Some((epoch, engine)) = adopted else {
            match ended {
                Ended::Refused(code, why) => {
                    anyhow::bail!("{code}: the handshake with the primary failed: {why}")
                }
                Ended::Halted => return Ok(None),
                e => {
                    if !said {
                        log::info(
                            "waiting_for_primary",
                            &[("primary", &primary), ("why", &format!("{e:?}"))],
                        );
                        said = true;
                    }
                    continue;
                }
            }
        };
        let snapshot = match ended {
            Ended::Snapshot(seq) => {
                dir.adopt_staged_snapshot(seq)?;
                Some(seq)
            }
            Ended::Refused(code, why) => {
                anyhow::bail!("the primary cannot bootstrap this standby ({code}): {why}")
            }
            Ended::Stopped(code, why) => {
                anyhow::bail!("{code}: receiving the primary's snapshot: {why}")
            }
            // Closed after the welcome: the journal from the start is there to follow.
            _ => None,
        };
        log::info(
            "bootstrapped",
            &[
                ("primary", &primary),
                ("epoch", &epoch),
                ("snapshot_seq", &snapshot.unwrap_or(0)),
            ],
        );
        return Ok(Some(engine));
    }
    Ok(None)
}

/// A new standby as its first session sees it: no epochs, nothing received; it keeps the
/// primary's epochs (stored in the data directory) and engine configuration.
struct Bootstrap {
    dir: std::path::PathBuf,
    adopted: Mutex<Option<(u64, engine::EngineConfig)>>,
}

impl StandbyNode for Bootstrap {
    fn standing(&self) -> Standing {
        Standing {
            epochs: Epochs {
                epoch: 0,
                history: Vec::new(),
            },
            follows: true,
            received: 0,
            durable: 0,
            applied: 0,
            hash: 0,
        }
    }

    fn adopt(
        &self,
        epoch: u64,
        history: &[(u64, u64)],
        config: &[u8],
    ) -> std::io::Result<Result<(), String>> {
        let engine = match engine::codec::decode_config(config) {
            Ok(engine) => engine,
            Err(e) => return Ok(Err(format!("the primary's engine configuration: {e}"))),
        };
        Epochs {
            epoch,
            history: history.to_vec(),
        }
        .store(&self.dir)?;
        *self.adopted.lock().expect("bootstrap lock") = Some((epoch, engine));
        Ok(Ok(()))
    }

    fn following(&self, _epoch: u64, _from_seq: u64, _primary_last_seq: u64) {}
}

/// Where a new standby puts the snapshot the primary sends; records do not come before it.
struct Staging<'a> {
    dir: &'a DataDir,
}

impl Sink for Staging<'_> {
    fn records(&mut self, first: u64, _: u64, _: &[u8]) -> Result<(), (ReplicationCode, String)> {
        Err((
            ReplicationCode::SequenceGap,
            format!("records from {first} before the bootstrap's snapshot"),
        ))
    }

    fn checkpoint(&mut self, _: u64, _: u64) -> Result<(), (ReplicationCode, String)> {
        Ok(())
    }

    fn snapshot_piece(
        &mut self,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), (ReplicationCode, String)> {
        self.dir
            .stage_snapshot_piece(offset, bytes)
            .map_err(|e| (ReplicationCode::BadFrame, e.to_string()))
    }
}
