//! The hooks through which the replicator's primary side reaches this node: it logs, reports
//! acks and losses, and fences the node when a standby knows of a newer epoch.

use std::sync::Arc;

use replicator::{Epochs, ReplicationCode};

use crate::group::node::Node;
use crate::group::role::Role;
use crate::pipeline::shared::Shared;
use crate::telemetry::log::repl_code;
use crate::telemetry::log::{self, Level};

/// The primary side's view of the server.
pub struct PrimaryHooks {
    pub node: Arc<Node>,
    pub shared: Arc<Shared>,
}

impl replicator::Hooks for PrimaryHooks {
    fn log(
        &self,
        level: replicator::Level,
        event: &str,
        code: Option<ReplicationCode>,
        fields: &str,
    ) {
        let level = match level {
            replicator::Level::Info => Level::Info,
            replicator::Level::Warn => Level::Warn,
            replicator::Level::Error => Level::Error,
        };
        log::raw(level, event, code.map(repl_code), fields);
    }

    fn acked(&self) {
        self.node.nudge();
    }

    fn standby_lost(&self) {
        self.node.standby_lost();
    }

    fn fenced_by(&self, epoch: u64, why: &str) {
        self.node.fenced_by(epoch, why);
    }

    fn is_primary(&self) -> bool {
        self.node.role() == Role::Primary
    }

    fn epochs(&self) -> Epochs {
        self.node.epochs()
    }

    fn durable_seq(&self) -> u64 {
        self.shared.release.durable()
    }
}
