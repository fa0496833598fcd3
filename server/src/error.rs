//! The server's errors at its seams: what start-up, the data directory, the pipeline and the
//! admin calls can fail with. Each says what failed and carries the typed cause (a journal
//! code, an io error, a snapshot error) so the binary logs it with its code and the hint.

use std::path::PathBuf;

use journal::JournalError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A configuration key has a value the server cannot run with.
    #[error("configuration: {key}: {why}")]
    Config { key: String, why: String },
    /// The configuration file could not be read or parsed.
    #[error("configuration file {path}: {why}")]
    ConfigFile { path: PathBuf, why: String },
    /// An operating-system call failed: `what` says which and on what.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The journal refused (corruption, a failed write, a missing segment).
    #[error("{context}: {source}")]
    Journal {
        context: String,
        #[source]
        source: JournalError,
    },
    /// A snapshot file decoded but its state cannot be used.
    #[error("snapshot at sequence {seq}: {why}")]
    Snapshot { seq: u64, why: String },
    /// A journal record's payload is not a request this build understands.
    #[error("record {seq}: {why}")]
    Record { seq: u64, why: String },
    /// Another surge process holds the data directory.
    #[error("{dir} is in use by another surge process ({source})")]
    DataDirInUse {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The pipeline stopped: the journal failed, or a stage broke an invariant.
    #[error("the pipeline stopped: {0}")]
    Pipeline(String),
    /// A thread of the server panicked.
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
}

impl ServerError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> ServerError {
        ServerError::Io {
            what: what.into(),
            source,
        }
    }

    pub fn journal(context: impl Into<String>, source: JournalError) -> ServerError {
        ServerError::Journal {
            context: context.into(),
            source,
        }
    }

    pub fn config(key: impl Into<String>, why: impl Into<String>) -> ServerError {
        ServerError::Config {
            key: key.into(),
            why: why.into(),
        }
    }

    /// The journal's code, if a journal error is behind this one (for the log line).
    pub fn journal_code(&self) -> Option<journal::ErrorCode> {
        match self {
            ServerError::Journal { source, .. } => Some(source.code),
            _ => None,
        }
    }
}

pub type Result<T, E = ServerError> = std::result::Result<T, E>;

/// What a promotion call can end with, as the admin API reports it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PromoteError {
    #[error("this node is {0}, not a standby")]
    NotStandby(&'static str),
    #[error("this node is {0}, not a primary")]
    NotPrimary(&'static str),
    #[error("the gateway did not promote within {0} ms")]
    TimedOut(u64),
    #[error("storing the new epoch: {0}")]
    EpochStore(String),
}
