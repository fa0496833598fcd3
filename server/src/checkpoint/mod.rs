//! State at rest: the data directory's layout (`data_dir.rs`), rebuilding an engine from a
//! snapshot or a checkpoint chain and the journal after it (`replay.rs`, `chain.rs`),
//! snapshots taken while serving (`snapshotter.rs`), and the writer of the serving engine's
//! own checkpoints (`saver.rs`).

pub mod chain;
pub mod data_dir;
pub mod replay;
pub mod saver;
pub mod snapshotter;
