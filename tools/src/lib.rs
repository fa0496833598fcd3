//! The pieces of the `surge` binary, as a library so benches and tests can drive them: one
//! module per subcommand (`*_cmd`, `demo`, `drill`, `flash_sale`), and the few helpers they
//! share: the node flags, the offline data-directory argument, the admin HTTP client, a
//! `surge serve` child process, and the acknowledged-answer checks. The server itself is the
//! `server` crate.

pub mod acked;
pub mod admin_client;
pub mod admin_cmd;
pub mod ctl_cmd;
pub mod demo;
pub mod drill;
pub mod elected_node;
pub mod feed_client;
pub mod feed_cmd;
pub mod flash_sale;
pub mod journal_cmd;
pub mod loadgen_cmd;
pub mod node_args;
pub mod offline;
pub mod order_history;
pub mod replay_cmd;
pub mod serve_cmd;
pub mod serve_process;
pub mod sink_cmd;
pub mod standby_cmd;
pub mod status_cmd;
