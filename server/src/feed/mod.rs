//! The feed (docs/FEED.md): every event the engine's commands caused, in sequence order,
//! durable and resumable, for the rest of the shop. `stage.rs` is the ring consumer behind
//! the release gate that appends what the engine stage drafted, `writer.rs` keeps the feed
//! log, `log.rs` is its files, `reader.rs` reads it for one consumer, and
//! `port.rs` serves consumers on the feed port. `FeedShared` is what the writer publishes
//! for the readers.

pub mod log;
pub mod port;
pub mod reader;
pub mod stage;
pub mod writer;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::pipeline::shared::Shared;
use crate::telemetry::log::{self as oplog, Level};
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
    /// Every sequence at or below this has its events durable in the log.
    pub synced: u64,
}

/// Shared by the writer, the feed port and its consumers' threads.
pub struct FeedShared {
    pub dir: PathBuf,
    published: Mutex<Option<Published>>,
    changed: Condvar,
    /// The highest sequence someone waits to see durable in the log (`wait_synced`).
    sync_wanted: AtomicU64,
    pub shared: Arc<Shared>,
}

impl FeedShared {
    pub fn new(dir: PathBuf, shared: Arc<Shared>) -> Arc<FeedShared> {
        shared.metrics.feed.enabled.store(1, Relaxed);
        Arc::new(FeedShared {
            dir,
            published: Mutex::new(None),
            changed: Condvar::new(),
            sync_wanted: AtomicU64::new(0),
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

    /// Ask the writer to make the log durable through `seq` and wait until it has (before a
    /// checkpoint or snapshot at `seq` is kept: a restart resumes the feed from there).
    /// False if the feed stopped, or `give_up` said so, first.
    pub fn wait_synced(&self, seq: u64, give_up: &dyn Fn() -> bool) -> bool {
        self.sync_wanted.fetch_max(seq, SeqCst);
        let mut guard = self.published.lock().expect("feed lock");
        loop {
            if guard.is_some_and(|p| p.synced >= seq) {
                return true;
            }
            if self.metrics().enabled.load(Relaxed) == 0 || give_up() {
                return false;
            }
            guard = self
                .changed
                .wait_timeout(guard, Duration::from_millis(10))
                .expect("feed lock")
                .0;
        }
    }

    /// The feed log could not be written: the feed stops (its consumers are told), serving
    /// goes on.
    pub fn stopped(&self, e: &dyn std::fmt::Display) {
        self.metrics().enabled.store(0, Relaxed);
        oplog::line(
            Level::Error,
            "feed_stopped",
            None,
            &[
                ("error", &e.to_string()),
                (
                    "detail",
                    &"the feed log could not be written; consumers are told (223), and it stays as it is until a restart",
                ),
            ],
        );
    }

    /// The sequence someone waits to see durable in the log (0: nobody yet).
    pub fn sync_wanted(&self) -> u64 {
        self.sync_wanted.load(SeqCst)
    }

    /// The highest sequence a consumer may be sent now: in the log, and no higher than
    /// what the node may acknowledge (durable, and acked by the standby as the ack mode
    /// asks), so a consumer never sees an event a failover could take back.
    pub fn sendable(&self, published: &Published) -> u64 {
        let bound = self.shared.release.bound();
        published.through.min(bound)
    }
}
