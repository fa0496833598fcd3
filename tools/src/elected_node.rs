//! `surge serve` with `replication.failover = "etcd"`: every node runs the same command, and
//! etcd decides the roles. The node takes a lease, then joins: it leads (its campaign won the
//! leader key and an epoch) or follows the node that leads, as `surge standby` would. A
//! coordinator thread keeps the lease alive and does the role's duties (`server::drivers::coordination`);
//! a node that loses its leadership exits with status 75 and, restarted by its service
//! manager, joins again as a standby. A clean stop gives the lease back, so the standby takes
//! over at once instead of after the lease's TTL.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use replicator::Epochs;
use server::drivers::coordination::{Attached, Coordination, Joined};
use server::start::supervise::{started, supervise};
use server::{Server, ServerConfig, Start};

use crate::standby_cmd;

pub fn run(config: ServerConfig, stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    let Some(coordination) = Coordination::connect(&config, stop)? else {
        return Ok(()); // stopped while waiting for etcd
    };
    let attached: Attached = Arc::new(Mutex::new(None));
    coordination.spawn(attached.clone())?;
    let local_epoch = Epochs::load(&config.data_dir)?.map_or(0, |e| e.epoch);
    // Read only when a campaign must compare it with other standbys' positions.
    let data_dir = server::checkpoint::data_dir::DataDir::new(&config.data_dir);
    let local_seq = || match data_dir.journal_last_seq() {
        Ok(seq) => Some(seq),
        Err(e) => {
            let detail = "this node does not campaign until it can compare how far it got";
            server::telemetry::log::line(
                server::telemetry::log::Level::Warn,
                "journal_position_unknown",
                None,
                &[("error", &e), ("detail", &detail)],
            );
            None
        }
    };
    let Some(joined) = coordination.join(local_epoch, &local_seq, stop)? else {
        coordination.step_down();
        return Ok(());
    };
    let mut on_start = |server: &Server| {
        coordination.register(
            server.client_addr,
            server.http_addr,
            server.replication_addr,
        );
        coordination.attach(&server.node, &server.shared);
        *attached.lock().expect("attach lock") = Some((server.node.clone(), server.shared.clone()));
    };
    let result = match joined {
        Joined::Lead { epoch } => {
            started(Server::start_node(&config, None, Start::Elected { epoch }))
                .map_err(anyhow::Error::from)
                .and_then(|server| {
                    on_start(&server);
                    supervise(server, stop)
                        .map(|_| ())
                        .map_err(anyhow::Error::from)
                })
        }
        Joined::Follow { replication, .. } => {
            standby_cmd::follow(config, replication, stop, &mut on_start)
        }
    };
    coordination.step_down();
    result
}
