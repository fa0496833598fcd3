//! The journal's errors. Each has a stable code (300–399, listed in docs/ERRORS.md) used in
//! logs and exit messages, and says where: segment, offset and sequence.

use std::fmt;
use std::io;

macro_rules! journal_codes {
    ($($(#[$doc:meta])* $name:ident = $num:literal => $text:literal,)*) => {
        /// A stable journal/recovery code. See `docs/ERRORS.md`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ErrorCode {
            $($(#[$doc])* $name = $num,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            pub const fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                }
            }

            pub const fn number(self) -> u16 {
                self as u16
            }
        }
    };
}

journal_codes! {
    /// Reading or writing the journal failed at the OS level.
    Io = 300 => "JOURNAL_IO",
    /// A record before the tail fails its checksum or is malformed.
    CorruptRecord = 301 => "JOURNAL_CORRUPT_RECORD",
    /// A record has a valid checksum but not the sequence that should come next.
    SequenceGap = 302 => "JOURNAL_SEQUENCE_GAP",
    /// A segment's header is damaged or names the wrong first sequence.
    BadSegmentHeader = 303 => "JOURNAL_BAD_SEGMENT_HEADER",
    /// A segment or snapshot of a format version this build does not read.
    UnsupportedVersion = 304 => "JOURNAL_UNSUPPORTED_VERSION",
    /// Segments do not follow each other (one is missing).
    MissingSegment = 305 => "JOURNAL_MISSING_SEGMENT",
    /// A snapshot file is damaged; it is skipped (a warning, not fatal).
    SnapshotCorrupt = 306 => "SNAPSHOT_CORRUPT",
    /// A torn record at the very tail was cut off at recovery (a notice, not fatal).
    TailTruncated = 307 => "JOURNAL_TAIL_TRUNCATED",
    /// A record larger than the journal accepts.
    RecordTooLarge = 308 => "JOURNAL_RECORD_TOO_LARGE",
    /// An earlier write or sync failed; the writer refuses to go on (restart to recover).
    WriterPoisoned = 309 => "JOURNAL_WRITER_POISONED",
    /// The newest snapshot is ahead of the journal's end: records it covers are missing.
    SnapshotAheadOfJournal = 310 => "SNAPSHOT_AHEAD_OF_JOURNAL",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

/// Where in the journal something was found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub segment: String,
    pub offset: u64,
    /// The sequence found there, or the one expected if the record could not be read.
    pub sequence: u64,
}

#[derive(Debug)]
pub struct JournalError {
    pub code: ErrorCode,
    pub location: Option<Location>,
    pub detail: String,
    pub source: Option<io::Error>,
}

impl JournalError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> JournalError {
        JournalError {
            code,
            location: None,
            detail: detail.into(),
            source: None,
        }
    }

    pub fn at(mut self, location: Location) -> JournalError {
        self.location = Some(location);
        self
    }

    pub fn io(detail: impl Into<String>, source: io::Error) -> JournalError {
        JournalError {
            code: ErrorCode::Io,
            location: None,
            detail: detail.into(),
            source: Some(source),
        }
    }

    /// What an operator should do about it.
    pub fn remedy(&self) -> &'static str {
        match self.code {
            ErrorCode::CorruptRecord
            | ErrorCode::SequenceGap
            | ErrorCode::BadSegmentHeader
            | ErrorCode::MissingSegment
            | ErrorCode::SnapshotAheadOfJournal => {
                "the journal is damaged before its tail; do not start on it. Restore the data \
                 directory from the standby's journal (docs/OPERATIONS.md), or keep a copy \
                 and inspect it with `surge journal verify` / `surge journal dump`"
            }
            ErrorCode::UnsupportedVersion => "use the surge version that wrote this journal",
            ErrorCode::WriterPoisoned => {
                "restart surge: recovery will keep exactly what was durable"
            }
            ErrorCode::Io => "check the disk, its free space and the data directory permissions",
            _ => "no action needed",
        }
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)?;
        if let Some(at) = &self.location {
            write!(
                f,
                " (segment {}, offset {}, sequence {})",
                at.segment, at.offset, at.sequence
            )?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

pub type Result<T, E = JournalError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_md_lists_every_journal_code() {
        let doc = include_str!("../../docs/ERRORS.md");
        for &code in ErrorCode::ALL {
            let row = format!("| {} | `{}` |", code.number(), code.name());
            assert!(doc.contains(&row), "docs/ERRORS.md lacks {row}");
        }
    }
}
