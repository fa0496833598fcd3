//! surge's write-ahead journal. It works in bytes and knows nothing of orders: records are
//! (sequence, timestamp, kind, payload) in fixed-size, pre-zeroed segment files, checksummed,
//! group-committed (commits pipelined: the next is written while the last syncs; io_uring or
//! `pwritev2` + `fdatasync`; or `O_DIRECT` writes that are durable when they complete), read back through memmap2,
//! recovered after a crash (a torn tail is cut, corruption refuses to start), plus snapshot
//! files, checkpoint files and retention. The format is in `format.rs` and docs/FORMAT.md.

pub mod checkpoint_bundle;
pub mod checkpoint_file;
mod direct;
pub mod direct_file;
pub mod durable;
pub mod error;
pub mod fault;
pub mod format;
pub mod recovery;
pub mod retention;
pub mod scan;
pub mod segment_files;
pub mod snapshot;
pub mod snapshot_writer;
pub mod storage;
pub mod syncer;
pub mod tail;
pub mod truncate;
mod uring;
pub mod writer;

pub use durable::DurableSeq;
pub use error::{ErrorCode, JournalError, Location};
pub use fault::{FaultStorage, Faults};
pub use format::{Record, RecordOut};
pub use recovery::{recover, Recovered};
pub use scan::{scan, scan_from, ScanReport};
pub use storage::{FileStorage, IoMode, Storage};
pub use syncer::{DurableHook, Synced};
pub use tail::Tail;
pub use truncate::truncate_after;
pub use writer::JournalWriter;
