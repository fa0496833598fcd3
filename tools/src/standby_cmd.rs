//! `surge standby`: a hot standby of the primary at `--primary` (its replication port). It
//! journals and applies everything the primary sequences, answers queries, and becomes the
//! primary on `surge promote` (or by itself with `failover = "auto"`). A new data directory
//! first takes the primary's engine configuration, and its newest snapshot when the primary's
//! journal no longer starts at the beginning; a node told to cut its journal (failback) does
//! so and starts again, and one too far behind to follow starts over from the snapshot the
//! primary sends it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use replicator::follower::{self, Ended, Hello};
use replicator::net::Stream;
use replicator::wire::{self, Message};
use replicator::Epochs;
use replicator::ReplicationCode;

use server::data_dir::DataDir;
use server::ops::log;
use server::ops::supervise::{started, stop_on_signals, supervise};
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
        let cut = node.follower.truncate_to.lock().expect("node lock").take();
        let snapshot = node.follower.snapshot_to.lock().expect("node lock").take();
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

/// A new standby: wait for the primary, take its epochs and engine configuration.
fn bootstrap(
    config: &ServerConfig,
    primary: SocketAddr,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<Option<engine::EngineConfig>> {
    let settings = config.replication.settings();
    let dialer = config.replication.dialer()?;
    let hello = Hello {
        node: config.replication.node.clone(),
        epochs: Epochs {
            epoch: 0,
            history: Vec::new(),
        },
        last_seq: 0,
        hash: 0,
    };
    let mut said = false;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        match follower::handshake(dialer.as_ref(), primary, &settings, &hello) {
            Ok((mut stream, accepted)) => {
                let engine = engine::codec::decode_config(&accepted.config)
                    .context("the primary's engine configuration")?;
                Epochs {
                    epoch: accepted.epoch,
                    history: accepted.history,
                }
                .store(&config.data_dir)
                .context("writing the epoch file")?;
                // A primary whose journal no longer starts at the beginning sends its newest
                // snapshot next; otherwise it closes the stream.
                let snapshot = take_snapshot(&mut stream, &DataDir::new(&config.data_dir))?;
                log::info(
                    "bootstrapped",
                    &[
                        ("primary", &primary),
                        ("epoch", &accepted.epoch),
                        ("snapshot_seq", &snapshot.unwrap_or(0)),
                    ],
                );
                return Ok(Some(engine));
            }
            Err(Ended::Refused(code, why)) => {
                anyhow::bail!("{code}: the handshake with the primary failed: {why}")
            }
            Err(e) => {
                if !said {
                    log::info(
                        "waiting_for_primary",
                        &[("primary", &primary), ("why", &format!("{e:?}"))],
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(config.replication.heartbeat_ms));
            }
        }
    }
    Ok(None)
}

/// After a bootstrap welcome: receive the snapshot the primary sends, if it sends one, and
/// start the data directory from it. Its sequence.
fn take_snapshot(stream: &mut Stream, dir: &DataDir) -> anyhow::Result<Option<u64>> {
    let mut buf = Vec::new();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let (seq, len) = match wire::receive(stream, &mut buf) {
        Ok(Message::Snapshot { seq, len }) => (seq, len),
        Ok(Message::Refuse { code, message }) => {
            anyhow::bail!("the primary cannot bootstrap this standby ({code}): {message}")
        }
        _ => return Ok(None), // closed: the journal from the start is there to follow
    };
    follower::receive_snapshot(stream, &mut buf, len, |at, bytes| {
        dir.stage_snapshot_piece(at, bytes)
            .map_err(|e| (ReplicationCode::BadFrame, e.to_string()))
    })
    .map_err(|(code, why)| anyhow::anyhow!("{code}: receiving the primary's snapshot: {why}"))?;
    dir.adopt_staged_snapshot(seq)?;
    Ok(Some(seq))
}
