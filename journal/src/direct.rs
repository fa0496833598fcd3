//! Durable appends that bypass the page cache: each commit is one `O_DIRECT` write with
//! `RWF_DSYNC`, durable when it completes (the device writes it through, or the kernel
//! flushes its cache), with no dirty pages to write back and no separate `fdatasync`.
//!
//! Direct I/O moves whole blocks from aligned memory. A commit rarely starts or ends on a
//! block boundary, so the appender keeps a copy of the last block it wrote and starts the
//! next commit's write at that block: the head of the block is rewritten with the bytes it
//! already holds, and the end of the last block is padded with zeros. The padding lies past
//! the journal's end, where the writer's end marker already says "nothing here", so it
//! overwrites only zeros or a recycled segment's stale records. Commits go one at a time:
//! two writes in flight would rewrite the same block, and the older one could land last.
//!
//! Readers that map the segment stay coherent: the kernel drops cached pages of the range
//! after a direct write completes, so the next read of them comes from the device.
//!
//! Submitted with `pwritev2`, not io_uring: one synchronous write gains nothing from a ring
//! (a ring pays with several operations in flight, which block rewrites rule out here), and
//! measured on the 2-vCPU VM the ring was no faster: 121–132 µs against 97–101 µs per
//! 256-record commit (bench/README.md, *Journal: durable append*).

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// The unit of a direct write: offsets, lengths and the buffer's address are multiples of
/// it. 4096 covers devices with 512-byte and 4 KiB logical blocks.
pub const DIRECT_BLOCK: usize = 4096;

/// Whether the filesystem under `dir` takes `O_DIRECT`: `Err` says why not (tmpfs before
/// Linux 6.6, ramfs, some FUSE and network filesystems refuse it).
pub fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(".direct-probe");
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path);
    let result = opened.and_then(|file| {
        // Some filesystems accept the flag and refuse the write.
        file.set_len(DIRECT_BLOCK as u64)?;
        let block = AlignedBuf::new(DIRECT_BLOCK);
        let written = file.write_at(block.bytes(DIRECT_BLOCK), 0)?;
        if written != DIRECT_BLOCK {
            return Err(io::Error::other("a short direct write"));
        }
        Ok(())
    });
    let _ = std::fs::remove_file(&path);
    result
}

/// A zeroed, block-aligned heap buffer.
pub(crate) struct AlignedBuf {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the buffer is plain bytes owned by this value alone; nothing aliases it.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    pub(crate) fn new(len: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(len.max(DIRECT_BLOCK), DIRECT_BLOCK)
            .expect("a direct buffer's layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, layout }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.layout.size()
    }

    pub(crate) fn bytes(&self, len: usize) -> &[u8] {
        assert!(len <= self.capacity());
        // SAFETY: `ptr` is valid for `capacity` bytes, initialised (zeroed at allocation),
        // and borrowed immutably with `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, len) }
    }

    pub(crate) fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.capacity());
        // SAFETY: as in `bytes`, and `&mut self` makes this the only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { alloc::dealloc(self.ptr, self.layout) }
    }
}

/// The file being appended to, opened for direct I/O.
struct Target {
    name: String,
    file: File,
    len: u64,
    /// The file offset of the block `last_block` holds, when it holds one.
    last_block_at: Option<u64>,
    last_block: Box<[u8; DIRECT_BLOCK]>,
}

pub struct DirectAppender {
    target: Option<Target>,
    buffer: AlignedBuf,
}

impl DirectAppender {
    /// An appender for commits of up to `commit_max` bytes.
    pub fn new(commit_max: usize) -> DirectAppender {
        DirectAppender {
            target: None,
            // A commit can start anywhere in a block and end anywhere in another.
            buffer: AlignedBuf::new(commit_max + 2 * DIRECT_BLOCK),
        }
    }

    /// Forget `name` (renamed or removed): the next write to it opens it again.
    pub fn forget(&mut self, name: &str) {
        if self.target.as_ref().is_some_and(|t| t.name == name) {
            self.target = None;
        }
    }

    /// Write all of `data` at `offset` of `dir/name`, durably. `Ok(false)`: not made here
    /// (the caller writes it the buffered way): it is empty, larger than a commit (recovery
    /// zeroing several commits' worth of a torn tail), or would pass the file's end once
    /// padded to whole blocks.
    pub fn write_durably(
        &mut self,
        dir: &Path,
        name: &str,
        offset: u64,
        data: &[u8],
    ) -> io::Result<bool> {
        let block = DIRECT_BLOCK as u64;
        let start = offset / block * block;
        let head = (offset - start) as usize;
        let padded = (head + data.len()).div_ceil(DIRECT_BLOCK) * DIRECT_BLOCK;
        if data.is_empty() || padded > self.buffer.capacity() {
            return Ok(false);
        }
        let target = target_for(&mut self.target, dir, name)?;
        if start + padded as u64 > target.len {
            return Ok(false);
        }
        if head > 0 && target.last_block_at != Some(start) {
            // Not the block this appender wrote last (the first commit after a restart):
            // read what it holds.
            let mut read = AlignedBuf::new(DIRECT_BLOCK);
            target
                .file
                .read_exact_at(read.bytes_mut(DIRECT_BLOCK), start)?;
            target.last_block.copy_from_slice(read.bytes(DIRECT_BLOCK));
            target.last_block_at = Some(start);
        }
        let out = self.buffer.bytes_mut(padded);
        out[..head].copy_from_slice(&target.last_block[..head]);
        out[head..head + data.len()].copy_from_slice(data);
        out[head + data.len()..].fill(0);
        let written = crate::storage::pwrite_all(
            &target.file,
            start,
            self.buffer.bytes(padded),
            libc::RWF_DSYNC,
        );
        if let Err(e) = written {
            // What the block holds now is unknown.
            target.last_block_at = None;
            return Err(e);
        }
        target
            .last_block
            .copy_from_slice(&self.buffer.bytes(padded)[padded - DIRECT_BLOCK..]);
        target.last_block_at = Some(start + (padded - DIRECT_BLOCK) as u64);
        Ok(true)
    }
}

/// The open target, (re)opened when it is not `name`.
fn target_for<'a>(
    target: &'a mut Option<Target>,
    dir: &Path,
    name: &str,
) -> io::Result<&'a mut Target> {
    if target.as_ref().is_none_or(|t| t.name != name) {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(dir.join(name))?;
        let len = file.metadata()?.len();
        *target = Some(Target {
            name: name.to_string(),
            file,
            len,
            last_block_at: None,
            last_block: Box::new([0; DIRECT_BLOCK]),
        });
    }
    Ok(target.as_mut().expect("opened above"))
}
