//! What the node tells its operators, at the bottom of every other part: structured log lines
//! with their codes (`log.rs`), the Prometheus metrics every stage counts into
//! (`metrics.rs`), and the named points where a test can crash the process (`crash_point.rs`).

pub mod checkpoint_metrics;
pub mod crash_point;
pub mod log;
pub mod metrics;
