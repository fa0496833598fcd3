//! Checkpoint files: one checkpoint of the serving engine (full, or a delta on its parent)
//! as a header, the engine's scalars (opaque bytes here), the chunks as checksummed frames,
//! and a footer that says the file is whole. This module knows bytes, not tables: the engine
//! encodes the head and the frames' payloads (`engine::checkpoint`). Every byte is in
//! docs/FORMAT.md, *Checkpoint files*.
//!
//! A file is written as `checkpoint-{number}.ckpt.tmp` (direct I/O where the filesystem
//! takes it: `direct_file`), synced, renamed into place and the
//! directory synced: a crash at any point leaves either no file or a whole one, and a
//! leftover `.tmp` is removed at the next start. A file that fails any check is not used,
//! nor is any delta after it in its chain.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::direct_file::DirectFileWriter;
use crate::format::{u32_at, u64_at};

pub const CHECKPOINT_MAGIC: &[u8; 8] = b"SURGECK1";
pub const CHECKPOINT_END_MAGIC: &[u8; 8] = b"SURGEEND";
pub const CHECKPOINT_FILE_VERSION: u32 = 1;
pub const CHECKPOINT_HEADER_LEN: usize = 64;
pub const FRAME_HEADER_LEN: usize = 20;
pub const CHECKPOINT_FOOTER_LEN: usize = 32;
const FLAG_FULL: u32 = 1;
const SUFFIX: &str = ".ckpt";
const TMP_SUFFIX: &str = ".ckpt.tmp";

/// What a checkpoint is, from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointMeta {
    /// Its place in the directory's sequence of checkpoints (from 1).
    pub number: u64,
    /// The checkpoint it is a delta on (0 for a full one).
    pub parent: u64,
    pub full: bool,
    /// The last journal sequence the engine had applied at the cut.
    pub seq: u64,
    /// The engine's rolling hash at the cut.
    pub hash: u64,
}

impl CheckpointMeta {
    /// The checkpoint numbered `number`, cut at `seq` with the engine's `hash`: a delta on
    /// `parent`, or full when `parent` is 0.
    pub fn new(number: u64, parent: u64, seq: u64, hash: u64) -> CheckpointMeta {
        CheckpointMeta {
            number,
            parent,
            full: parent == 0,
            seq,
            hash,
        }
    }

    fn header(&self, head_len: u32) -> [u8; CHECKPOINT_HEADER_LEN] {
        let mut h = [0u8; CHECKPOINT_HEADER_LEN];
        h[0..8].copy_from_slice(CHECKPOINT_MAGIC);
        h[8..12].copy_from_slice(&CHECKPOINT_FILE_VERSION.to_le_bytes());
        let flags = if self.full { FLAG_FULL } else { 0 };
        h[12..16].copy_from_slice(&flags.to_le_bytes());
        h[16..24].copy_from_slice(&self.number.to_le_bytes());
        h[24..32].copy_from_slice(&self.parent.to_le_bytes());
        h[32..40].copy_from_slice(&self.seq.to_le_bytes());
        h[40..48].copy_from_slice(&self.hash.to_le_bytes());
        h[48..52].copy_from_slice(&head_len.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn parse_header(h: &[u8]) -> Result<(CheckpointMeta, u32), String> {
        if h.len() < CHECKPOINT_HEADER_LEN || &h[0..8] != CHECKPOINT_MAGIC {
            return Err("not a checkpoint file (magic)".into());
        }
        if crc32c::crc32c(&h[0..60]) != u32_at(h, 60) {
            return Err("its header fails its checksum".into());
        }
        let version = u32_at(h, 8);
        if version != CHECKPOINT_FILE_VERSION {
            return Err(format!("file format version {version}, this build reads 1"));
        }
        let meta = CheckpointMeta {
            full: u32_at(h, 12) & FLAG_FULL != 0,
            number: u64_at(h, 16),
            parent: u64_at(h, 24),
            seq: u64_at(h, 32),
            hash: u64_at(h, 40),
        };
        if meta.full != (meta.parent == 0) || meta.number == 0 || meta.parent >= meta.number {
            return Err("its header names an impossible parent".into());
        }
        Ok((meta, u32_at(h, 48)))
    }
}

pub fn checkpoint_name(number: u64) -> String {
    format!("checkpoint-{number:010}{SUFFIX}")
}

/// The number in a checkpoint file's name.
pub fn checkpoint_number(name: &str) -> Option<u64> {
    name.strip_prefix("checkpoint-")?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

/// The checkpoints in `dir`, oldest first (no directory: none).
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(number) = entry.file_name().to_str().and_then(checkpoint_number) {
            found.push((number, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The header of the checkpoint at `path` (the file is not checked whole).
pub fn read_meta(path: &Path) -> Result<CheckpointMeta, String> {
    use std::io::Read;
    let mut header = [0u8; CHECKPOINT_HEADER_LEN];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|e| format!("reading its header: {e}"))?;
    CheckpointMeta::parse_header(&header).map(|(meta, _)| meta)
}

/// Remove the `.tmp` files a crash mid-write left; their names.
pub fn remove_unfinished(dir: &Path) -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(removed);
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("checkpoint-") && name.ends_with(TMP_SUFFIX) {
            std::fs::remove_file(entry.path())?;
            removed.push(name);
        }
    }
    if !removed.is_empty() {
        File::open(dir)?.sync_all()?;
    }
    Ok(removed)
}

/// Writes one checkpoint file.
pub struct CheckpointWriter {
    /// Direct I/O where the filesystem takes it: the file skips the page cache.
    out: DirectFileWriter,
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    body_crc: u32,
    body_bytes: u64,
    frames: u64,
}

/// Zeros to bring `len` to a multiple of 8.
fn padding(len: usize) -> &'static [u8] {
    &[0u8; 8][..(8 - len % 8) % 8]
}

impl CheckpointWriter {
    /// Start `meta`'s file in `dir` (created if missing) with the engine's scalars `head`.
    pub fn create(dir: &Path, meta: CheckpointMeta, head: &[u8]) -> io::Result<CheckpointWriter> {
        assert_eq!(
            meta.full,
            meta.parent == 0,
            "a full checkpoint has no parent"
        );
        std::fs::create_dir_all(dir)?;
        let name = checkpoint_name(meta.number);
        let tmp = dir.join(format!("{name}.tmp"));
        let mut writer = CheckpointWriter {
            out: DirectFileWriter::create(&tmp, 1 << 20)?,
            tmp,
            path: dir.join(name),
            dir: dir.to_path_buf(),
            body_crc: 0,
            body_bytes: 0,
            frames: 0,
        };
        let head_len = u32::try_from(head.len()).expect("an engine head is small");
        writer.out.write_all(&meta.header(head_len))?;
        writer.body(head)?;
        writer.body(padding(head.len()))?;
        Ok(writer)
    }

    fn body(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.body_crc = crc32c::crc32c_append(self.body_crc, bytes);
        self.body_bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// Append one chunk: its table, number, element count and encoded elements.
    pub fn frame(
        &mut self,
        table: u16,
        chunk: u32,
        elements: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h[0..2].copy_from_slice(&table.to_le_bytes());
        h[4..8].copy_from_slice(&chunk.to_le_bytes());
        h[8..12].copy_from_slice(&elements.to_le_bytes());
        let len = u32::try_from(payload.len()).expect("a chunk's frame is small");
        h[12..16].copy_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&h[0..16]), payload);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        self.body(&h)?;
        self.body(payload)?;
        self.body(padding(FRAME_HEADER_LEN + payload.len()))?;
        self.frames += 1;
        Ok(())
    }

    /// Write the footer, sync, and put the file in place (`before_rename` runs between the
    /// sync and the rename: a crash point for tests). Returns the file's length.
    pub fn finish(mut self, before_rename: impl FnOnce()) -> io::Result<u64> {
        let mut f = [0u8; CHECKPOINT_FOOTER_LEN];
        f[0..8].copy_from_slice(CHECKPOINT_END_MAGIC);
        f[8..16].copy_from_slice(&self.frames.to_le_bytes());
        f[16..24].copy_from_slice(&self.body_bytes.to_le_bytes());
        f[24..28].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&f[0..28]);
        f[28..32].copy_from_slice(&crc.to_le_bytes());
        self.out.write_all(&f)?;
        let file = self.out.finish()?;
        file.sync_data()?;
        before_rename();
        std::fs::rename(&self.tmp, &self.path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(CHECKPOINT_HEADER_LEN as u64 + self.body_bytes + CHECKPOINT_FOOTER_LEN as u64)
    }

    /// Give the file up (its checkpoint was abandoned): the `.tmp` is removed.
    pub fn abandon(self) {
        drop(self.out);
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// One frame of a file read back.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    pub table: u16,
    pub chunk: u32,
    pub elements: u32,
    pub payload: &'a [u8],
}

/// A checkpoint file's bytes: mapped (read from disk) or owned (tests).
enum FileBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Owned(bytes) => bytes,
        }
    }
}

/// A whole checkpoint file, checked.
pub struct CheckpointFile {
    pub meta: CheckpointMeta,
    bytes: FileBytes,
    head_len: usize,
    frames: u64,
}

impl CheckpointFile {
    /// Map `path` (its pages read ahead in one call, not a copy of it) and check it whole:
    /// header, footer and the body's checksum.
    pub fn read(path: &Path) -> Result<CheckpointFile, String> {
        let file = File::open(path).map_err(|e| format!("opening it: {e}"))?;
        // SAFETY: checkpoint files are written once, renamed into place and never changed
        // after; a file removed while mapped stays readable.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
            .map_err(|e| format!("mapping it: {e}"))?;
        CheckpointFile::checked(FileBytes::Mapped(map))
    }

    /// Check a file's bytes held in memory.
    pub fn check(bytes: Vec<u8>) -> Result<CheckpointFile, String> {
        CheckpointFile::checked(FileBytes::Owned(bytes))
    }

    fn checked(bytes: FileBytes) -> Result<CheckpointFile, String> {
        let (meta, head_len) = CheckpointMeta::parse_header(&bytes)?;
        if bytes.len() < CHECKPOINT_HEADER_LEN + CHECKPOINT_FOOTER_LEN {
            return Err("it ends before its footer (torn)".into());
        }
        let footer = &bytes[bytes.len() - CHECKPOINT_FOOTER_LEN..];
        if &footer[0..8] != CHECKPOINT_END_MAGIC
            || crc32c::crc32c(&footer[0..28]) != u32_at(footer, 28)
        {
            return Err("it has no whole footer (torn)".into());
        }
        let body = &bytes[CHECKPOINT_HEADER_LEN..bytes.len() - CHECKPOINT_FOOTER_LEN];
        if u64_at(footer, 16) != body.len() as u64 || crc32c::crc32c(body) != u32_at(footer, 24) {
            return Err("its body fails its checksum".into());
        }
        let head_len = head_len as usize;
        if head_len > body.len() {
            return Err("its head runs past its body".into());
        }
        let file = CheckpointFile {
            meta,
            frames: u64_at(footer, 8),
            bytes,
            head_len,
        };
        let mut counted = 0u64;
        for frame in file.frames() {
            frame?;
            counted += 1;
        }
        if counted != file.frames {
            return Err(format!(
                "{counted} frames where its footer says {}",
                file.frames
            ));
        }
        Ok(file)
    }

    /// The engine's scalars.
    pub fn head(&self) -> &[u8] {
        &self.bytes[CHECKPOINT_HEADER_LEN..CHECKPOINT_HEADER_LEN + self.head_len]
    }

    /// The frames in file order, each checked.
    pub fn frames(&self) -> impl Iterator<Item = Result<FrameRef<'_>, String>> + '_ {
        let end = self.bytes.len() - CHECKPOINT_FOOTER_LEN;
        let start = CHECKPOINT_HEADER_LEN + self.head_len + padding(self.head_len).len();
        let mut at = start;
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let b = &self.bytes;
            if at + FRAME_HEADER_LEN > end {
                at = end;
                return Some(Err("a frame header runs past the body".into()));
            }
            let h = &b[at..at + FRAME_HEADER_LEN];
            let len = u32_at(h, 12) as usize;
            let payload_at = at + FRAME_HEADER_LEN;
            if payload_at + len > end {
                at = end;
                return Some(Err("a frame runs past the body".into()));
            }
            let payload = &b[payload_at..payload_at + len];
            if crc32c::crc32c_append(crc32c::crc32c(&h[0..16]), payload) != u32_at(h, 16) {
                at = end;
                return Some(Err("a frame fails its checksum".into()));
            }
            at = payload_at + len + padding(FRAME_HEADER_LEN + len).len();
            Some(Ok(FrameRef {
                table: u16::from_le_bytes([h[0], h[1]]),
                chunk: u32_at(h, 4),
                elements: u32_at(h, 8),
                payload,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(number: u64, parent: u64) -> CheckpointMeta {
        CheckpointMeta::new(number, parent, 100 * number, 7)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("surge-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(dir: &Path, m: CheckpointMeta, frames: &[(u16, u32, &[u8])]) -> u64 {
        let mut w = CheckpointWriter::create(dir, m, b"head!").unwrap();
        for (t, c, p) in frames {
            w.frame(*t, *c, p.len() as u32, p).unwrap();
        }
        w.finish(|| {}).unwrap()
    }

    #[test]
    fn a_file_reads_back_as_written_and_any_flipped_or_missing_byte_is_refused() {
        let dir = temp_dir("read");
        let len = write(&dir, meta(1, 0), &[(1, 0, b"abc"), (9, 3, b"12345678")]);
        let path = dir.join(checkpoint_name(1));
        let file = CheckpointFile::read(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert_eq!(file.meta, meta(1, 0));
        assert_eq!(file.head(), b"head!");
        let frames: Vec<_> = file.frames().map(Result::unwrap).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(
            (frames[1].table, frames[1].chunk, frames[1].payload),
            (9, 3, &b"12345678"[..])
        );
        let bytes = std::fs::read(&path).unwrap();
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            assert!(CheckpointFile::check(flipped).is_err(), "byte {at} flipped");
        }
        for cut in 0..bytes.len() {
            assert!(
                CheckpointFile::check(bytes[..cut].to_vec()).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn listing_orders_by_number_and_leftover_temporaries_are_removed() {
        let dir = temp_dir("list");
        write(&dir, meta(2, 1), &[]);
        write(&dir, meta(1, 0), &[(1, 0, b"x")]);
        let abandoned = CheckpointWriter::create(&dir, meta(3, 2), b"").unwrap();
        drop(abandoned); // a crash mid-write: the .tmp stays
        let numbers: Vec<u64> = list(&dir).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(numbers, [1, 2]);
        assert_eq!(
            remove_unfinished(&dir).unwrap(),
            ["checkpoint-0000000003.ckpt.tmp"]
        );
        assert!(list(&dir.join("none")).unwrap().is_empty());
    }
}
