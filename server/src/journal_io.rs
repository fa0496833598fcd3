//! How the journal writes, chosen at start from `journal.io`, `journal.commits_in_flight`
//! and what the filesystem under the journal takes.
//!
//! `auto` picks direct writes (`O_DIRECT` with `RWF_DSYNC`, one commit at a time, each
//! durable when its write completes) where the filesystem takes `O_DIRECT`, and two buffered
//! commits in flight (`pwritev2`, `fdatasync` on sync workers) where it does not, or where
//! `commits_in_flight` asks for more than one. Measured on the 2-vCPU VM at 120,000 req/s
//! (bench/README.md, *Latency*), direct writes gave p99 3.5–4.3 ms against 5.1–10.5 ms for
//! two buffered commits in flight, and the same throughput at saturation: no page cache to
//! write back and no sync threads competing for the cores.

use std::path::Path;

use journal::IoMode;

use crate::config::JournalSection;
use crate::error::Result;

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
    /// Resolve `section` (already validated) against the filesystem under `journal_dir`.
    pub fn choose(section: &JournalSection, mode: IoMode, journal_dir: &Path) -> Result<JournalIo> {
        let asked = section.commits_in_flight;
        let buffered = |mode, why: Option<String>| JournalIo {
            mode,
            commits_in_flight: asked.unwrap_or(BUFFERED_COMMITS_IN_FLIGHT_DEFAULT),
            why,
        };
        Ok(match mode {
            IoMode::Direct | IoMode::Uring => JournalIo {
                mode,
                commits_in_flight: 1,
                why: None,
            },
            IoMode::Pwritev2 => buffered(IoMode::Pwritev2, None),
            IoMode::Auto if asked.is_some_and(|k| k > 1) => buffered(
                IoMode::Pwritev2,
                Some("auto: buffered, as journal.commits_in_flight > 1 asks".into()),
            ),
            IoMode::Auto => {
                std::fs::create_dir_all(journal_dir).map_err(|e| {
                    crate::error::ServerError::io(format!("creating {}", journal_dir.display()), e)
                })?;
                match journal::probe_direct(journal_dir) {
                    Ok(()) => JournalIo {
                        mode: IoMode::Direct,
                        commits_in_flight: 1,
                        why: Some("auto: the filesystem takes O_DIRECT".into()),
                    },
                    Err(e) => buffered(
                        IoMode::Pwritev2,
                        Some(format!(
                            "auto: O_DIRECT refused by the filesystem under {}: {e}",
                            journal_dir.display()
                        )),
                    ),
                }
            }
        })
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
    fn auto_writes_direct_where_the_filesystem_takes_it_unless_told_to_overlap() {
        let dir = std::env::temp_dir().join(format!("surge-journal-io-{}", std::process::id()));
        let choose = |k| JournalIo::choose(&section("auto", k), IoMode::Auto, &dir).unwrap();
        // The temp directory is on a filesystem with direct I/O (ext4, xfs, tmpfs ≥ 6.6).
        assert_eq!(
            (choose(None).mode, choose(None).commits_in_flight),
            (IoMode::Direct, 1)
        );
        assert_eq!(choose(Some(1)).mode, IoMode::Direct);
        let overlapped = choose(Some(3));
        assert_eq!(
            (overlapped.mode, overlapped.commits_in_flight),
            (IoMode::Pwritev2, 3)
        );
        let plain = JournalIo::choose(&section("pwritev2", None), IoMode::Pwritev2, &dir).unwrap();
        assert_eq!(
            (plain.mode, plain.commits_in_flight, plain.why),
            (IoMode::Pwritev2, 2, None)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
