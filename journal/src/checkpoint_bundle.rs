//! A checkpoint chain as one stream of bytes: what a primary sends a standby that fell behind
//! its journal (in place of a snapshot file), and what the standby stages and unpacks. A
//! bundle is a header, then each checkpoint file of the chain, oldest (the full one) first,
//! each behind a small entry header. The files are sent as they are on disk: each checks
//! itself (header, frames, footer), and unpacking checks each one whole before anything is
//! kept. Every byte is in docs/FORMAT.md, *Checkpoint bundles*.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::checkpoint_file::{checkpoint_name, CheckpointFile, CheckpointMeta};
use crate::format::{u32_at, u64_at};

pub const BUNDLE_MAGIC: &[u8; 8] = b"SURGECKB";
pub const BUNDLE_VERSION: u32 = 1;
pub const BUNDLE_HEADER_LEN: usize = 32;
pub const ENTRY_HEADER_LEN: usize = 16;

/// The header: `magic, version u32, count u32, seq u64, crc u32 (of bytes 0..24), reserved`.
pub fn bundle_header(count: u32, seq: u64) -> [u8; BUNDLE_HEADER_LEN] {
    let mut h = [0u8; BUNDLE_HEADER_LEN];
    h[0..8].copy_from_slice(BUNDLE_MAGIC);
    h[8..12].copy_from_slice(&BUNDLE_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&count.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// An entry's header: `number u64, len u64` of the checkpoint file that follows.
pub fn entry_header(number: u64, len: u64) -> [u8; ENTRY_HEADER_LEN] {
    let mut h = [0u8; ENTRY_HEADER_LEN];
    h[0..8].copy_from_slice(&number.to_le_bytes());
    h[8..16].copy_from_slice(&len.to_le_bytes());
    h
}

/// Whether the file at `path` starts as a bundle does (not as a snapshot).
pub fn is_bundle(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; 8];
    match File::open(path)?.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == BUNDLE_MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// The length of the bundle of `chain` (checkpoint files, oldest first), known before its
/// first byte is sent.
pub fn bundle_len(chain: &[(u64, PathBuf)]) -> io::Result<u64> {
    let mut total = BUNDLE_HEADER_LEN as u64;
    for (_, path) in chain {
        total += ENTRY_HEADER_LEN as u64 + std::fs::metadata(path)?.len();
    }
    Ok(total)
}

/// Write the bundle of `chain` reaching `seq` to `out`, in pieces of at most `piece` bytes.
/// Each file's length is taken when the bundle is sized: a file that changed since is an
/// error (checkpoint files are never changed once in place).
pub fn write_bundle(
    chain: &[(u64, PathBuf)],
    seq: u64,
    piece: usize,
    out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    out(&bundle_header(chain.len() as u32, seq))?;
    let mut buf = vec![0u8; piece.max(ENTRY_HEADER_LEN)];
    for (number, path) in chain {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        out(&entry_header(*number, len))?;
        let mut left = len;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            file.read_exact(&mut buf[..n])?;
            out(&buf[..n])?;
            left -= n as u64;
        }
    }
    Ok(())
}

/// Unpack the bundle at `path` into `into` (a directory made empty first): each checkpoint
/// file written under its own name, synced, and checked whole; the directory synced. The
/// metas, oldest first, and the sequence the bundle says its chain reaches. Nothing it
/// returns `Err` for is usable.
pub fn unpack(path: &Path, into: &Path) -> Result<(Vec<CheckpointMeta>, u64), String> {
    let mut file = File::open(path).map_err(|e| format!("opening the bundle: {e}"))?;
    let mut header = [0u8; BUNDLE_HEADER_LEN];
    file.read_exact(&mut header)
        .map_err(|e| format!("reading its header: {e}"))?;
    if &header[0..8] != BUNDLE_MAGIC || crc32c::crc32c(&header[0..24]) != u32_at(&header, 24) {
        return Err("not a checkpoint bundle (magic or header checksum)".into());
    }
    let version = u32_at(&header, 8);
    if version != BUNDLE_VERSION {
        return Err(format!("bundle version {version}, this build reads 1"));
    }
    let (count, seq) = (u32_at(&header, 12), u64_at(&header, 16));
    let _ = std::fs::remove_dir_all(into);
    std::fs::create_dir_all(into).map_err(|e| format!("making {}: {e}", into.display()))?;
    let mut metas = Vec::with_capacity(count as usize);
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..count {
        let mut entry = [0u8; ENTRY_HEADER_LEN];
        file.read_exact(&mut entry)
            .map_err(|e| format!("reading entry {i}: {e}"))?;
        let (number, len) = (u64_at(&entry, 0), u64_at(&entry, 8));
        let out_path = into.join(checkpoint_name(number));
        let mut out =
            File::create(&out_path).map_err(|e| format!("creating {}: {e}", out_path.display()))?;
        let mut left = len;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            file.read_exact(&mut buf[..n])
                .map_err(|e| format!("entry {i} ends early: {e}"))?;
            out.write_all(&buf[..n])
                .map_err(|e| format!("writing {}: {e}", out_path.display()))?;
            left -= n as u64;
        }
        out.sync_all()
            .map_err(|e| format!("syncing {}: {e}", out_path.display()))?;
        drop(out);
        let checked = CheckpointFile::read(&out_path)
            .map_err(|why| format!("checkpoint {number} as received: {why}"))?;
        if checked.meta.number != number {
            return Err(format!(
                "entry {i} is named {number} but its header says {}",
                checked.meta.number
            ));
        }
        metas.push(checked.meta);
    }
    let mut rest = [0u8; 1];
    if file.read(&mut rest).map_err(|e| e.to_string())? != 0 {
        return Err("bytes after the last entry".into());
    }
    File::open(into)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("syncing {}: {e}", into.display()))?;
    Ok((metas, seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint_file::{self, CheckpointWriter};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("surge-bundle-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_chain(dir: &Path) -> Vec<(u64, PathBuf)> {
        for (number, parent, seq) in [(1u64, 0u64, 100u64), (2, 1, 250)] {
            let meta = CheckpointMeta::new(number, parent, seq, seq * 7);
            let mut w = CheckpointWriter::create(dir, meta, b"head").unwrap();
            for chunk in 0..3u32 {
                w.frame(1, chunk, 4, &vec![chunk as u8 + number as u8; 5000])
                    .unwrap();
            }
            w.finish(|| {}).unwrap();
        }
        checkpoint_file::list(dir).unwrap()
    }

    fn bundle_to(chain: &[(u64, PathBuf)], path: &Path) {
        let mut bytes = Vec::new();
        write_bundle(chain, 250, 1000, &mut |piece| {
            bytes.extend_from_slice(piece);
            Ok(())
        })
        .unwrap();
        assert_eq!(bytes.len() as u64, bundle_len(chain).unwrap());
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_chain_unpacks_to_the_same_files() {
        let dir = scratch("whole");
        let chain = write_chain(&dir.join("from"));
        let path = dir.join("bundle");
        bundle_to(&chain, &path);
        assert!(is_bundle(&path).unwrap());
        let (metas, seq) = unpack(&path, &dir.join("into")).unwrap();
        assert_eq!(seq, 250);
        assert_eq!(metas.iter().map(|m| m.number).collect::<Vec<_>>(), [1, 2]);
        for (number, from) in &chain {
            let into = dir.join("into").join(checkpoint_name(*number));
            assert_eq!(std::fs::read(from).unwrap(), std::fs::read(into).unwrap());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_or_short_bundle_is_refused() {
        let dir = scratch("damaged");
        let chain = write_chain(&dir.join("from"));
        let path = dir.join("bundle");
        bundle_to(&chain, &path);
        let whole = std::fs::read(&path).unwrap();
        let mut flipped = whole.clone();
        flipped[BUNDLE_HEADER_LEN + ENTRY_HEADER_LEN + 200] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let why = unpack(&path, &dir.join("into")).unwrap_err();
        assert!(why.contains("checkpoint 1 as received"), "{why}");
        std::fs::write(&path, &whole[..whole.len() - 10]).unwrap();
        let why = unpack(&path, &dir.join("into")).unwrap_err();
        assert!(why.contains("ends early"), "{why}");
        std::fs::write(&path, b"SURGESN1 not a bundle at all, a snapshot").unwrap();
        assert!(!is_bundle(&path).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
