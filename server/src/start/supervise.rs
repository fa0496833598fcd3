//! Running a node as a service: SIGTERM and SIGINT ask it to drain; systemd hears READY with
//! a status line, a WATCHDOG ping while the gateway loop turns (a stuck pipeline gets
//! restarted, not kept alive), and STOPPING; a failed start or stop is logged with its code.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::error::{Result, ServerError};
use crate::group::node::Node;
use crate::start::Server;
use crate::telemetry::log;

/// How often the signal flag is looked at.
const SIGNAL_POLL: Duration = Duration::from_millis(20);

/// A flag that SIGTERM and SIGINT set.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| ServerError::io("registering a signal handler", e))?;
    }
    Ok(stop)
}

/// Log a failed start with its code.
pub fn started(server: Result<Server>) -> Result<Server> {
    server.inspect_err(|e| {
        log::line(
            log::Level::Error,
            "start_failed",
            e.journal_code().map(log::journal_code),
            &[("error", &e)],
        )
    })
}

/// Tell systemd, ping its watchdog while the gateway turns, drain on a signal, and wait for
/// the server to stop. Returns the server's node (what it became, what it was asked to do).
pub fn supervise(server: Server, stop: &AtomicBool) -> Result<Arc<Node>> {
    let node = server.node.clone();
    let _ = sd_notify::notify(
        false,
        &[
            NotifyState::Ready,
            NotifyState::Status(&format!("serving {}", server.summary)),
        ],
    );
    let watchdog = watchdog_interval();
    let mut last_ping = Instant::now();
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
            // Only a gateway that turned recently earns a ping.
            if last_ping.elapsed() >= interval && shared.alive(interval) {
                let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
                last_ping = Instant::now();
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
            &[("error", &e)],
        ),
    }
    result.map(|()| node)
}

/// Half the watchdog timeout systemd gave us, if it gave one.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}
