//! Crash points, for tests that prove a crash at any step of a change of state leaves a node
//! that restarts cleanly: with `SURGE_CRASH_AT=<name>` in its environment, the process
//! SIGKILLs itself when it reaches the step of that name (no destructor, flush or sync runs,
//! as in a real `kill -9`). The variable is read once; unset, a point costs one comparison.

use std::sync::OnceLock;

use crate::telemetry::log;

/// The environment variable that arms one crash point.
pub const CRASH_AT_ENV: &str = "SURGE_CRASH_AT";

/// The steps of a promotion, in order: asked (the follower stopped), the received records
/// sequenced and the epoch not yet stored, the epoch stored and the role not yet switched,
/// the role switched and the caller not yet answered.
pub const PROMOTION_STEPS: [&str; 4] = [
    "promote.asked",
    "promote.before_epoch_store",
    "promote.after_epoch_store",
    "promote.after_role_switch",
];

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Die here if this is the armed point.
pub fn reached(name: &str) {
    let armed = ARMED.get_or_init(|| std::env::var(CRASH_AT_ENV).ok());
    if armed.as_deref() == Some(name) {
        log::line(log::Level::Error, "crash_point", None, &[("at", &name)]);
        // SAFETY: kill(2) on this process's own pid; it does not return.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}
