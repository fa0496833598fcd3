//! `surge serve`: load the configuration, start the server, tell systemd (READY, STATUS,
//! WATCHDOG while the gateway loop is alive, STOPPING), and on SIGTERM or SIGINT drain and
//! exit 0. A journal failure exits non-zero so the service manager restarts it into recovery.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::server::config::ServerConfig;
use crate::server::{log, Server};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Data directory (journal/ and snapshots/). Overrides `data_dir`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Client protocol address. Overrides `listen`.
    #[arg(long)]
    pub listen: Option<String>,
    /// /metrics and /health address. Overrides `http`.
    #[arg(long)]
    pub http: Option<String>,
    /// TOML configuration file (deploy/surge.toml shows every key).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any key: `--set gateway.tick_ms=50` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// How often the signal flag is looked at.
const SIGNAL_POLL: Duration = Duration::from_millis(20);

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let stop = stop_on_signals()?;
    let server = started(Server::start(&config, None))?;
    supervise(server, &stop).map(|_| ())
}

impl ServeArgs {
    /// The file, then `--set`, then the dedicated flags.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut overrides = self.overrides.clone();
        if let Some(dir) = &self.data_dir {
            overrides.push(format!("data_dir={:?}", dir.display().to_string()));
        }
        if let Some(listen) = &self.listen {
            overrides.push(format!("listen={listen:?}"));
        }
        if let Some(http) = &self.http {
            overrides.push(format!("http={http:?}"));
        }
        ServerConfig::load(self.config.as_deref(), &overrides)
    }
}

/// SIGTERM and SIGINT set the flag.
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    Ok(stop)
}

/// Log a failed start with its code.
pub fn started(server: anyhow::Result<Server>) -> anyhow::Result<Server> {
    server.inspect_err(|e| {
        log::line(
            log::Level::Error,
            "start_failed",
            error_code(e),
            &[("error", &format!("{e:#}"))],
        )
    })
}

/// Tell systemd, ping its watchdog while the gateway turns, drain on a signal, and wait for
/// the server to stop. Returns the server's node (what it became, what it was asked to do).
pub fn supervise(
    server: Server,
    stop: &AtomicBool,
) -> anyhow::Result<Arc<crate::server::node::Node>> {
    let node = server.node.clone();
    let _ = sd_notify::notify(
        false,
        &[
            NotifyState::Ready,
            NotifyState::Status(&format!("serving {}", server.summary)),
        ],
    );
    let watchdog = watchdog_interval();
    let mut last_ping = std::time::Instant::now();
    let shared = server.shared.clone();
    loop {
        std::thread::sleep(SIGNAL_POLL);
        if stop.load(SeqCst) {
            log::info("shutdown_requested", &[]);
            let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
            server.shutdown();
            break;
        }
        if shared.failed.load(SeqCst) || shared.draining.load(SeqCst) {
            break; // failed, or draining on its own (a standby restarting to rejoin)
        }
        if let Some(interval) = watchdog {
            // Only a gateway that turned recently earns a ping: a stuck pipeline gets
            // restarted by systemd instead of kept alive by this thread.
            if last_ping.elapsed() >= interval && shared.alive(interval) {
                let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
                last_ping = std::time::Instant::now();
            }
        }
    }
    let result = server.wait();
    match &result {
        Ok(()) => log::info("stopped", &[]),
        Err(e) => log::line(
            log::Level::Error,
            "stopped",
            Some(log::engine_code(engine::Code::ServerFailed)),
            &[("error", &format!("{e:#}"))],
        ),
    }
    result.map(|()| node)
}

/// Half the watchdog timeout systemd gave us, if it gave one.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

fn error_code(e: &anyhow::Error) -> Option<log::LogCode> {
    e.chain()
        .find_map(|c| c.downcast_ref::<journal::JournalError>())
        .map(|j| log::journal_code(j.code))
}
