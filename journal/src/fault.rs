//! `FaultStorage`: an in-memory `Storage` for tests that fails on purpose and crashes on
//! demand. It keeps, per file, what a reader sees now and what would survive a power cut
//! (only bytes covered by a successful sync), so a test can take a crash image at any moment
//! and run recovery on it.
//!
//! Faults: fail the Nth write or the Nth sync (1-based, counted across files from when the
//! faults are set), and cap every write at a number of bytes (short writes). A failed sync leaves the unsynced bytes
//! undurable, as the kernel may have dropped them.
//! Simplification: creating, renaming and removing files are durable at once.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

use crate::storage::{FileBytes, Storage};

#[derive(Clone, Debug, Default)]
struct FaultFile {
    now: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last successful sync, in order: what a crash may tear.
    unsynced: Vec<(u64, Vec<u8>)>,
}

#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Fail this write (1-based), and every one after it if `sticky`.
    pub fail_write: Option<u64>,
    /// Fail this sync (1-based), and every one after it if `sticky`.
    pub fail_sync: Option<u64>,
    pub sticky: bool,
    /// Write at most this many bytes per call.
    pub short_write_max: Option<usize>,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<String, FaultFile>,
    writes: u64,
    syncs: u64,
}

#[derive(Debug, Default)]
pub struct FaultStorage {
    state: Mutex<State>,
    faults: Mutex<Faults>,
}

impl FaultStorage {
    pub fn new() -> FaultStorage {
        FaultStorage::default()
    }

    /// Arm `faults`; write and sync counts start again from here.
    pub fn set_faults(&self, faults: Faults) {
        let mut state = self.state.lock().unwrap();
        state.writes = 0;
        state.syncs = 0;
        *self.faults.lock().unwrap() = faults;
    }

    /// What a power cut now would leave: only synced bytes.
    pub fn crash_image(&self) -> FaultStorage {
        self.crash_image_tearing(|_, _| 0)
    }

    /// A power cut that also lands a prefix of each unsynced write: `keep(file, write)` says
    /// how many of its bytes reached the disk (clipped to its length).
    pub fn crash_image_tearing(&self, mut keep: impl FnMut(&str, &[u8]) -> usize) -> FaultStorage {
        let state = self.state.lock().unwrap();
        let files = state
            .files
            .iter()
            .map(|(name, f)| {
                let mut image = f.durable.clone();
                for (offset, bytes) in &f.unsynced {
                    let n = keep(name, bytes).min(bytes.len());
                    write_into(&mut image, *offset, &bytes[..n]);
                }
                let file = FaultFile {
                    now: image.clone(),
                    durable: image,
                    unsynced: Vec::new(),
                };
                (name.clone(), file)
            })
            .collect();
        FaultStorage {
            state: Mutex::new(State {
                files,
                ..State::default()
            }),
            faults: Mutex::new(Faults::default()),
        }
    }

    /// Change bytes of a file in place, now and durably (to simulate damage).
    pub fn corrupt(&self, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
        let mut state = self.state.lock().unwrap();
        let file = state.files.get_mut(name).expect("no such file");
        edit(&mut file.now);
        file.durable = file.now.clone();
    }

    /// The injected failure of the `count`th `what`, if the faults armed at `at` trip on it.
    fn injected(at: Option<u64>, count: u64, sticky: bool, what: &str) -> io::Result<()> {
        let trips = at.is_some_and(|n| count == n || (sticky && count > n));
        if trips {
            return Err(io::Error::other(format!("injected: {what} {count} fails")));
        }
        Ok(())
    }
}

fn write_into(image: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let end = offset as usize + bytes.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[offset as usize..end].copy_from_slice(bytes);
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such file"))
}

impl Storage for FaultStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.state.lock().unwrap().files.keys().cloned().collect())
    }

    fn create_zeroed(&self, name: &str, len: u64) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        if state.files.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                name.to_string(),
            ));
        }
        let zeros = vec![0u8; len as usize];
        let file = FaultFile {
            now: zeros.clone(),
            durable: zeros,
            unsynced: Vec::new(),
        };
        state.files.insert(name.to_string(), file);
        Ok(())
    }

    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> io::Result<usize> {
        let faults = self.faults.lock().unwrap().clone();
        let mut state = self.state.lock().unwrap();
        state.writes += 1;
        Self::injected(faults.fail_write, state.writes, faults.sticky, "write")?;
        let n = faults
            .short_write_max
            .map_or(data.len(), |m| m.min(data.len()));
        let file = state.files.get_mut(name).ok_or_else(|| not_found(name))?;
        write_into(&mut file.now, offset, &data[..n]);
        file.unsynced.push((offset, data[..n].to_vec()));
        Ok(n)
    }

    fn sync(&self, name: &str) -> io::Result<()> {
        let faults = self.faults.lock().unwrap().clone();
        let mut state = self.state.lock().unwrap();
        state.syncs += 1;
        Self::injected(faults.fail_sync, state.syncs, faults.sticky, "sync")?;
        let file = state.files.get_mut(name).ok_or_else(|| not_found(name))?;
        file.durable = file.now.clone();
        file.unsynced.clear();
        Ok(())
    }

    fn read(&self, name: &str) -> io::Result<FileBytes> {
        let state = self.state.lock().unwrap();
        let file = state.files.get(name).ok_or_else(|| not_found(name))?;
        Ok(FileBytes::Owned(file.now.clone()))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        let file = state.files.remove(from).ok_or_else(|| not_found(from))?;
        state.files.insert(to.to_string(), file);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        state
            .files
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "fault-injecting memory storage".to_string()
    }
}
