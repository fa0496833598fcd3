//! Writing a whole file once, front to back, without copying it into the page cache: the
//! bytes gather in a block-aligned buffer and go to the file in `O_DIRECT` writes of the
//! whole buffer; the last, partial block is padded with zeros and the file cut back to its
//! length. Checkpoint files are written this way: at saturation the copy into the page cache
//! was half of the checkpoint writer's CPU (perf, bench/README.md), and a checkpoint is read
//! again only at a restart or to send a standby.
//!
//! Where the filesystem refuses direct I/O (tmpfs before Linux 6.6, some network ones) the
//! same writes go through the page cache.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::direct::{AlignedBuf, DIRECT_BLOCK};

pub struct DirectFileWriter {
    file: File,
    buf: AlignedBuf,
    /// Bytes gathered in `buf`.
    filled: usize,
    /// Bytes already in the file (a multiple of the block while direct).
    written: u64,
    direct: bool,
}

impl DirectFileWriter {
    /// Create (or truncate) `path`, gathering `buffer` bytes per write (rounded up to the
    /// block).
    pub fn create(path: &Path, buffer: usize) -> io::Result<DirectFileWriter> {
        let open = |flags| {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(flags)
                .open(path)
        };
        let (file, direct) = match open(libc::O_DIRECT) {
            Ok(file) => (file, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(0)?, false),
            Err(e) => return Err(e),
        };
        let len = buffer.div_ceil(DIRECT_BLOCK).max(1) * DIRECT_BLOCK;
        Ok(DirectFileWriter {
            file,
            buf: AlignedBuf::new(len),
            filled: 0,
            written: 0,
            direct,
        })
    }

    /// Whether the writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Bytes written so far, gathered ones included.
    pub fn len(&self) -> u64 {
        self.written + self.filled as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write what is gathered (padded to the block), cut the file to its length, and hand
    /// the file back (not yet synced).
    pub fn finish(mut self) -> io::Result<File> {
        let len = self.len();
        if self.filled > 0 {
            let padded = self.filled.div_ceil(DIRECT_BLOCK) * DIRECT_BLOCK;
            self.buf.bytes_mut(padded)[self.filled..].fill(0);
            self.write_out(padded)?;
        }
        self.file.set_len(len)?;
        Ok(self.file)
    }

    /// Write the first `len` bytes of the buffer at the file's end.
    fn write_out(&mut self, len: usize) -> io::Result<()> {
        let result = self.file.write_all_at(self.buf.bytes(len), self.written);
        match result {
            // A filesystem that took the flag but refuses the write: buffered from here on.
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                self.clear_direct()?;
                self.file.write_all_at(self.buf.bytes(len), self.written)?;
            }
            other => other?,
        }
        self.written += len as u64;
        self.filled = 0;
        Ok(())
    }

    fn clear_direct(&mut self) -> io::Result<()> {
        let fd = self.file.as_raw_fd();
        // SAFETY: F_GETFL/F_SETFL on a descriptor this writer owns; no pointers.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
            return Err(io::Error::last_os_error());
        }
        self.direct = false;
        Ok(())
    }
}

impl Write for DirectFileWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let capacity = self.buf.capacity();
        let n = bytes.len().min(capacity - self.filled);
        let at = self.filled;
        self.buf.bytes_mut(at + n)[at..].copy_from_slice(&bytes[..n]);
        self.filled += n;
        if self.filled == capacity {
            self.write_out(capacity)?;
        }
        Ok(n)
    }

    /// Nothing to do until `finish`: a direct write takes whole blocks only.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_exactly_what_was_written() {
        let dir = std::env::temp_dir().join(format!("surge-direct-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for total in [0usize, 1, 4095, 4096, 4097, 3 * 8192 + 17] {
            let path = dir.join(format!("f{total}"));
            let mut w = DirectFileWriter::create(&path, 8192).unwrap();
            let bytes: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
            for piece in bytes.chunks(1000) {
                w.write_all(piece).unwrap();
            }
            assert_eq!(w.len(), total as u64);
            let file = w.finish().unwrap();
            file.sync_data().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "{total} bytes");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
