//! The feed (docs/FEED.md): every event the engine's commands caused, in sequence order,
//! durable and resumable, for the rest of the shop. `writer.rs` keeps the feed log on the
//! snapshotter's thread, `log.rs` is its files, `reader.rs` reads it for one consumer, and
//! `port.rs` serves consumers on the feed port. `FeedShared` is what the writer publishes
//! for the readers.

pub mod log;
pub mod port;
pub mod reader;
pub mod writer;

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::pipeline::shared::Shared;
use crate::telemetry::metrics::FeedMetrics;

/// How far the log goes, as the writer last published it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Every sequence at or below this has its events in the log.
    pub through: u64,
    /// The file being appended to, and its length: a reader reads no further in it.
    pub file_after: u64,
    pub file_len: u64,
    /// The oldest `after` a consumer may subscribe with.
    pub begins_after: u64,
}

/// Shared by the writer, the feed port and its consumers' threads.
pub struct FeedShared {
    pub dir: PathBuf,
    published: Mutex<Option<Published>>,
    changed: Condvar,
    pub shared: Arc<Shared>,
}

impl FeedShared {
    pub fn new(dir: PathBuf, shared: Arc<Shared>) -> Arc<FeedShared> {
        shared.metrics.feed.enabled.store(1, Relaxed);
        Arc::new(FeedShared {
            dir,
            published: Mutex::new(None),
            changed: Condvar::new(),
            shared,
        })
    }

    /// The feed's figures, in the server's metrics.
    pub fn metrics(&self) -> &FeedMetrics {
        &self.shared.metrics.feed
    }

    pub fn publish(&self, published: Published) {
        self.metrics().through_seq.store(published.through, Relaxed);
        let mut guard = self.published.lock().expect("feed lock");
        *guard = Some(published);
        self.changed.notify_all();
    }

    /// What the writer published last; `None` until it has opened the log.
    pub fn published(&self) -> Option<Published> {
        *self.published.lock().expect("feed lock")
    }

    /// Wait up to `timeout` for the writer to open the log (at a start).
    pub fn wait_open(&self, timeout: Duration) -> Option<Published> {
        let guard = self.published.lock().expect("feed lock");
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |p| p.is_none())
            .expect("feed lock");
        *guard
    }

    /// Wait up to `timeout` for the log to go past `through`.
    pub fn wait_past(&self, through: u64, timeout: Duration) -> Option<Published> {
        let guard = self.published.lock().expect("feed lock");
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |p| p.is_none_or(|p| p.through <= through))
            .expect("feed lock");
        *guard
    }

    /// The highest sequence a consumer may be sent now: in the log, and no higher than
    /// what the node may acknowledge (durable, and acked by the standby as the ack mode
    /// asks), so a consumer never sees an event a failover could take back.
    pub fn sendable(&self, published: &Published) -> u64 {
        let bound = self.shared.release.bound();
        published.through.min(bound)
    }
}
