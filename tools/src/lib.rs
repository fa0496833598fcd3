//! The pieces of the `surge` binary, as a library so benches and tests can drive them: the
//! data directory (journal + snapshots tied to the engine) and one module per subcommand.

pub mod acked;
pub mod ctl_cmd;
pub mod data_dir;
pub mod demo;
pub mod drill;
pub mod flash_sale;
pub mod journal_cmd;
pub mod loadgen_cmd;
pub mod promote_cmd;
pub mod replay_cmd;
pub mod serve_cmd;
pub mod serve_process;
pub mod server;
pub mod standby_cmd;
