//! Operating the node: the HTTP port (`/metrics`, `/health`, admin calls), the metrics and
//! their Prometheus rendering, structured logs with codes, what the replicator reports into
//! them, TLS for the HTTP port, and supervision under systemd (ready, watchdog, drain on a signal).

pub mod health;
pub mod http;
pub mod log;
pub mod metrics;
pub mod replication;
pub mod supervise;
pub mod tls;
