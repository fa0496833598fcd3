//! The journal's I/O boundary: a small trait over one directory of files, so the writer and
//! recovery run the same against real files and against `FaultStorage` (fail the Nth write
//! or sync, short writes, crash images) in tests — in the manner of redb's backends.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::direct::{self, DirectAppender};
use crate::format::{COMMIT_BYTES_MAX, END_MARKER_LEN};
use crate::uring::UringCommitter;

/// The bytes of one file: mapped (real files) or owned (tests).
pub enum FileBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

pub trait Storage: Send + Sync {
    /// Names of the files in the directory, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Create `name` holding `len` zero bytes, written out and synced (so later overwrites
    /// flush only data, never extent metadata), and sync the directory. Fails if it exists.
    fn create_zeroed(&self, name: &str, len: u64) -> io::Result<()>;
    /// Write some prefix of `data` at `offset`; returns how much (a short write is allowed).
    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> io::Result<usize>;
    /// Make every write to `name` so far durable.
    fn sync(&self, name: &str) -> io::Result<()>;
    /// Write all of `data` at `offset` (a short write continues where it stopped).
    fn write_all(&self, name: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        write_fully(data.len(), |done| {
            self.write_at(name, offset + done as u64, &data[done..])
        })
    }
    /// Group commit: write all of `data` at `offset`, then make it durable. Only `Ok` means
    /// durable.
    fn write_all_and_sync(&self, name: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_all(name, offset, data)?;
        self.sync(name)
    }
    /// The whole file.
    fn read(&self, name: &str) -> io::Result<FileBytes>;
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Make creations, renames and removals durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// Which write path is in use, for the start-up log.
    fn describe(&self) -> String;
}

/// How `FileStorage` writes a group commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// io_uring if the kernel allows it, else `pwritev2` + `fdatasync`.
    Auto,
    /// io_uring or fail.
    Uring,
    /// `pwritev2` + `fdatasync` only.
    Pwritev2,
    /// `O_DIRECT` writes with `RWF_DSYNC`, one commit at a time; `pwritev2` + `fdatasync`
    /// where the filesystem refuses `O_DIRECT`.
    Direct,
}

impl std::str::FromStr for IoMode {
    type Err = String;

    fn from_str(s: &str) -> Result<IoMode, String> {
        match s {
            "auto" => Ok(IoMode::Auto),
            "io_uring" | "uring" => Ok(IoMode::Uring),
            "pwritev2" => Ok(IoMode::Pwritev2),
            "direct" => Ok(IoMode::Direct),
            other => Err(format!(
                "unknown io mode {other:?} (auto, io_uring, pwritev2, direct)"
            )),
        }
    }
}

/// Bytes written per chunk when zero-filling a new file.
const ZERO_CHUNK: usize = 1 << 20;

/// Real files in one directory.
pub struct FileStorage {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<File>>>,
    uring: Option<Mutex<UringCommitter>>,
    /// With `IoMode::Direct` on a filesystem that takes it: durable commits.
    direct: Option<Mutex<DirectAppender>>,
    /// Why neither io_uring nor direct I/O is in use, when neither is.
    fallback_reason: Option<String>,
}

impl FileStorage {
    /// Open (creating) `dir`. With `IoMode::Auto`, io_uring is tried; with `IoMode::Direct`,
    /// the filesystem is asked for `O_DIRECT`; the reason for any fallback is kept for
    /// `describe`.
    pub fn open(dir: &Path, mode: IoMode) -> io::Result<FileStorage> {
        std::fs::create_dir_all(dir)?;
        let mut direct = None;
        let (uring, fallback_reason) = match mode {
            IoMode::Pwritev2 => (None, Some("turned off in config".to_string())),
            IoMode::Uring => (Some(Mutex::new(UringCommitter::new()?)), None),
            IoMode::Auto => match UringCommitter::new() {
                Ok(u) => (Some(Mutex::new(u)), None),
                Err(e) => (None, Some(format!("io_uring refused: {e}"))),
            },
            IoMode::Direct => match direct::probe(dir) {
                Ok(()) => {
                    direct = Some(Mutex::new(DirectAppender::new(
                        COMMIT_BYTES_MAX + END_MARKER_LEN,
                    )));
                    (None, None)
                }
                Err(e) => (
                    None,
                    Some(format!(
                        "O_DIRECT refused by the filesystem under {}: {e}",
                        dir.display()
                    )),
                ),
            },
        };
        Ok(FileStorage {
            dir: dir.to_path_buf(),
            open: Mutex::new(HashMap::new()),
            uring,
            direct,
            fallback_reason,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn uses_uring(&self) -> bool {
        self.uring.is_some()
    }

    fn file(&self, name: &str) -> io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(name) {
            return Ok(f.clone());
        }
        let f = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.dir.join(name))?,
        );
        open.insert(name.to_string(), f.clone());
        Ok(f)
    }

    fn forget(&self, name: &str) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(direct) = &self.direct {
            direct
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget(name);
        }
    }
}

impl Storage for FileStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }

    fn create_zeroed(&self, name: &str, len: u64) -> io::Result<()> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.dir.join(name))?;
        let zeros = vec![0u8; ZERO_CHUNK];
        let mut offset = 0;
        while offset < len {
            let n = (len - offset).min(ZERO_CHUNK as u64) as usize;
            file.write_all_at(&zeros[..n], offset)?;
            offset += n as u64;
        }
        file.sync_all()?;
        self.sync_dir()
    }

    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> io::Result<usize> {
        let file = self.file(name)?;
        pwritev2(&file, offset, data)
    }

    fn sync(&self, name: &str) -> io::Result<()> {
        self.file(name)?.sync_data()
    }

    fn write_all_and_sync(&self, name: &str, offset: u64, data: &[u8]) -> io::Result<()> {
        if let Some(direct) = &self.direct {
            let mut direct = direct.lock().unwrap_or_else(|e| e.into_inner());
            if direct.write_durably(&self.dir, name, offset, data)? {
                return Ok(());
            }
            // Written the buffered way below: the block kept for the next direct write may
            // be one this write changes.
            direct.forget(name);
        }
        let file = self.file(name)?;
        match &self.uring {
            Some(uring) => uring
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .commit(&file, offset, data),
            None => {
                self.write_all(name, offset, data)?;
                file.sync_data()
            }
        }
    }

    fn read(&self, name: &str) -> io::Result<FileBytes> {
        let file = File::open(self.dir.join(name))?;
        // SAFETY: the map is read-only, and the journal never rewrites bytes it has already
        // made durable; the tools and recovery map segments no process is appending to (a
        // stopped server's, or closed ones). A concurrent append to the open segment only
        // fills bytes past its durable end, which the reader treats as a possibly torn tail.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(FileBytes::Mapped(map))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        std::fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.forget(name);
        std::fs::remove_file(self.dir.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn describe(&self) -> String {
        if self.direct.is_some() {
            return "O_DIRECT pwritev2 with RWF_DSYNC, durable on completion (no fdatasync)".into();
        }
        match &self.fallback_reason {
            None => "io_uring (writes and fdatasync submitted together)".to_string(),
            Some(why) => format!("pwritev2 + fdatasync ({why})"),
        }
    }
}

/// One `pwritev2` call; returns how much it wrote (retrying on EINTR).
pub(crate) fn pwritev2(file: &File, offset: u64, data: &[u8]) -> io::Result<usize> {
    pwritev2_flags(file, offset, data, 0)
}

/// All of `data` at `offset`, in as many `pwritev2` calls (with `RWF_*` flags) as it takes.
pub(crate) fn pwrite_all(
    file: &File,
    offset: u64,
    data: &[u8],
    flags: libc::c_int,
) -> io::Result<()> {
    write_fully(data.len(), |done| {
        pwritev2_flags(file, offset + done as u64, &data[done..], flags)
    })
}

/// Call `write_some(done)`, which writes from byte `done` on and says how much it wrote, until
/// all `len` bytes are written; a write that makes no progress is an error.
fn write_fully(
    len: usize,
    mut write_some: impl FnMut(usize) -> io::Result<usize>,
) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        let n = write_some(done)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write made no progress",
            ));
        }
        done += n;
    }
    Ok(())
}

/// One `pwritev2` call with `RWF_*` flags.
pub(crate) fn pwritev2_flags(
    file: &File,
    offset: u64,
    data: &[u8],
    flags: libc::c_int,
) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    loop {
        // SAFETY: `iov` points at `data`, alive and unaliased for the call; the fd is open.
        let n = unsafe { libc::pwritev2(file.as_raw_fd(), &iov, 1, offset as libc::off_t, flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
