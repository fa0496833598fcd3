//! How the journal writes, chosen at start from `journal.io` and `journal.commits_in_flight`.
//!
//! `auto` picks buffered writes with commits in flight (`pwritev2`, `fdatasync` on sync
//! workers; with `commits_in_flight = 1`, io_uring linking each write to its sync where the
//! kernel allows). Not direct writes: they drop the pages they write from the page cache, and
//! the snapshotter (which replays the durable journal) and replication catch-up read those
//! pages right after, so with direct writes they read the journal back from the device.
//! Measured on the 2-vCPU VM at 120,000 req/s for 10 s: 332 MB read from the disk with
//! direct writes against 12 KB buffered, and a higher p99 in 8 of 11 runs (snapshots on,
//! bench/README.md). With snapshots off, direct writes were the faster ones (p99 2.7–2.9 ms
//! against 3.4–6.3 ms): `io = "direct"` is there for that.

use journal::IoMode;

use crate::config::JournalSection;

/// Buffered commits in flight when the config does not say.
pub const BUFFERED_COMMITS_IN_FLIGHT_DEFAULT: usize = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalIo {
    pub mode: IoMode,
    pub commits_in_flight: usize,
    /// Why `auto` chose this, for the `serving` line.
    pub why: Option<String>,
}

impl JournalIo {
    /// Resolve `section` (already validated; `mode` is its `io`).
    pub fn choose(section: &JournalSection, mode: IoMode) -> JournalIo {
        let asked = section.commits_in_flight;
        let buffered = |mode, why: Option<String>| JournalIo {
            mode,
            commits_in_flight: asked.unwrap_or(BUFFERED_COMMITS_IN_FLIGHT_DEFAULT),
            why,
        };
        match mode {
            IoMode::Direct | IoMode::Uring => JournalIo {
                mode,
                commits_in_flight: 1,
                why: None,
            },
            IoMode::Pwritev2 => buffered(IoMode::Pwritev2, None),
            IoMode::Auto if asked == Some(1) => JournalIo {
                mode: IoMode::Auto,
                commits_in_flight: 1,
                why: Some("auto: one commit at a time, as journal.commits_in_flight asks".into()),
            },
            IoMode::Auto => buffered(
                IoMode::Pwritev2,
                Some(
                    "auto: buffered, so the snapshotter and catch-up read the journal from \
                     the page cache"
                        .into(),
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(io: &str, commits_in_flight: Option<usize>) -> JournalSection {
        JournalSection {
            io: io.into(),
            segment_mib: 64,
            commits_in_flight,
        }
    }

    #[test]
    fn auto_is_buffered_with_two_in_flight_unless_told_otherwise() {
        let choose = |io: &str, mode, k| {
            let chosen = JournalIo::choose(&section(io, k), mode);
            (chosen.mode, chosen.commits_in_flight)
        };
        assert_eq!(choose("auto", IoMode::Auto, None), (IoMode::Pwritev2, 2));
        assert_eq!(choose("auto", IoMode::Auto, Some(3)), (IoMode::Pwritev2, 3));
        assert_eq!(choose("auto", IoMode::Auto, Some(1)), (IoMode::Auto, 1));
        assert_eq!(choose("direct", IoMode::Direct, None), (IoMode::Direct, 1));
        assert_eq!(choose("uring", IoMode::Uring, None), (IoMode::Uring, 1));
        assert_eq!(
            choose("pwritev2", IoMode::Pwritev2, None),
            (IoMode::Pwritev2, 2)
        );
        assert!(
            JournalIo::choose(&section("pwritev2", None), IoMode::Pwritev2)
                .why
                .is_none()
        );
    }
}
