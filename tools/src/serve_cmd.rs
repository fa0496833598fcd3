//! `surge serve`: load the configuration, start the server as a primary (or, with failover
//! through etcd, in the role etcd gives it: `elected_node.rs`), and supervise it
//! (systemd READY, STATUS and WATCHDOG while the gateway loop is alive, STOPPING; drain and
//! exit 0 on SIGTERM or SIGINT). A journal failure exits non-zero so the service manager
//! restarts it into recovery.

use server::start::supervise::{started, stop_on_signals, supervise};
use server::Server;

use crate::node_args::NodeArgs;

pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let stop = stop_on_signals()?;
    if config.replication.etcd_failover() {
        return crate::elected_node::run(config, &stop);
    }
    let server = started(Server::start(&config, None))?;
    supervise(server, &stop)?;
    Ok(())
}
