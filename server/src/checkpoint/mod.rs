//! State at rest: the data directory's layout (`data_dir.rs`), rebuilding an engine from a
//! snapshot and the journal after it (`replay.rs`), and snapshots taken while serving
//! (`snapshotter.rs`).

pub mod data_dir;
pub mod replay;
pub mod snapshotter;
