//! Group commit on io_uring: a commit's buffer goes out as several writes in flight at once,
//! followed by an `fdatasync` that the kernel starts only when they have all completed
//! (`IO_DRAIN`); one `io_uring_enter` submits everything and waits. A short write is
//! finished with `pwritev2` and synced again.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

use io_uring::{opcode, squeue, types, IoUring};

/// Bytes per write submission.
const WRITE_CHUNK: usize = 256 << 10;
/// Writes in flight at once (plus the sync).
const WRITES_IN_FLIGHT_MAX: usize = 32;
const SYNC_TAG: u64 = u64::MAX;

pub struct UringCommitter {
    ring: IoUring,
}

impl UringCommitter {
    pub fn new() -> io::Result<UringCommitter> {
        Ok(UringCommitter {
            ring: IoUring::new((WRITES_IN_FLIGHT_MAX + 1).next_power_of_two() as u32)?,
        })
    }

    /// Write all of `data` at `offset` and fdatasync. `Ok` only if every write and the sync
    /// succeeded.
    pub fn commit(&mut self, file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let fd = types::Fd(file.as_raw_fd());
        let mut done = 0usize;
        loop {
            // Up to WRITES_IN_FLIGHT_MAX chunks per round; a commit bigger than that takes
            // several rounds, and only the last carries the sync.
            let round_end = (done + WRITE_CHUNK * WRITES_IN_FLIGHT_MAX).min(data.len());
            let last_round = round_end == data.len();
            let mut submitted = 0;
            let mut at = done;
            while at < round_end {
                let len = (round_end - at).min(WRITE_CHUNK);
                let write = opcode::Write::new(fd, data[at..].as_ptr(), len as u32)
                    .offset(offset + at as u64)
                    .build()
                    .user_data(at as u64);
                // SAFETY: the buffer outlives the submission: we wait for every completion
                // below before returning, and `data` is borrowed for the whole call.
                unsafe { self.ring.submission().push(&write) }.map_err(io::Error::other)?;
                submitted += 1;
                at += len;
            }
            if last_round {
                let sync = opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .flags(squeue::Flags::IO_DRAIN)
                    .user_data(SYNC_TAG);
                // SAFETY: a sync carries no buffer.
                unsafe { self.ring.submission().push(&sync) }.map_err(io::Error::other)?;
                submitted += 1;
            }
            self.ring.submit_and_wait(submitted)?;
            let mut short: Vec<(usize, usize)> = Vec::new();
            let mut failure: Option<io::Error> = None;
            let mut seen = 0;
            while seen < submitted {
                let Some(cqe) = self.ring.completion().next() else {
                    self.ring.submit_and_wait(1)?;
                    continue;
                };
                seen += 1;
                let result = cqe.result();
                if result < 0 {
                    failure.get_or_insert(io::Error::from_raw_os_error(-result));
                    continue;
                }
                if cqe.user_data() != SYNC_TAG {
                    let start = cqe.user_data() as usize;
                    let wanted = (round_end - start).min(WRITE_CHUNK);
                    if (result as usize) < wanted {
                        short.push((start + result as usize, start + wanted));
                    }
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            if !short.is_empty() {
                // Rare: finish them the plain way; the round's sync (if any) ran before, so
                // sync again to make the whole durable.
                for (from, to) in short {
                    let mut at = from;
                    while at < to {
                        at += crate::storage::pwritev2(file, offset + at as u64, &data[at..to])?;
                    }
                }
                if last_round {
                    return file.sync_data();
                }
                done = round_end;
                continue;
            }
            if last_round {
                return Ok(());
            }
            done = round_end;
        }
    }
}
