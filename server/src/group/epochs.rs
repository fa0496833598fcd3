//! This node's epochs: in memory for every thread to read, and in the epoch files, stored
//! (synced) before memory changes. Every change is checked against the one before it: the
//! epoch never goes down and the history only grows (a failback's cut is made on the files
//! before the node starts, `checkpoint::data_dir`). Where they are stored is behind
//! `EpochFile`: the data directory's two slots, or the simulator's storage.

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use replicator::Epochs;

/// Where a node's epochs are kept.
pub trait EpochFile: Send + Sync {
    /// Store `epochs` durably: only `Ok` means stored.
    fn store(&self, epochs: &Epochs) -> io::Result<()>;
}

/// The data directory's slot files (`replicator::epoch`).
pub struct EpochDir(pub PathBuf);

impl EpochFile for EpochDir {
    fn store(&self, epochs: &Epochs) -> io::Result<()> {
        epochs.store(&self.0)
    }
}

/// The epochs in memory and where they are stored.
pub struct EpochStore {
    file: Box<dyn EpochFile>,
    epochs: Mutex<Epochs>,
}

impl EpochStore {
    pub fn new(file: Box<dyn EpochFile>, epochs: Epochs) -> EpochStore {
        EpochStore {
            file,
            epochs: Mutex::new(epochs),
        }
    }

    pub fn get(&self) -> Epochs {
        self.epochs.lock().expect("epochs lock").clone()
    }

    pub fn epoch(&self) -> u64 {
        self.epochs.lock().expect("epochs lock").epoch
    }

    /// Change the epochs with `f`, store the result (synced), and only then keep it.
    /// `f` returns whether there is a change to store. A change that would lower the epoch
    /// or drop history is refused (`InvalidInput`) and nothing is stored.
    pub fn update<T>(&self, f: impl FnOnce(&mut Epochs) -> Option<T>) -> io::Result<Option<T>> {
        let mut epochs = self.epochs.lock().expect("epochs lock");
        let mut next = epochs.clone();
        let Some(result) = f(&mut next) else {
            return Ok(None);
        };
        if let Err(why) = successor(&epochs, &next) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        self.file.store(&next)?;
        *epochs = next;
        Ok(Some(result))
    }
}

/// Whether `next` may follow `now`: the epoch never lower, the history only longer.
pub fn successor(now: &Epochs, next: &Epochs) -> Result<(), String> {
    if next.epoch < now.epoch {
        return Err(format!(
            "the epoch would go from {} down to {}",
            now.epoch, next.epoch
        ));
    }
    if !next.history.starts_with(&now.history) {
        return Err(format!(
            "the history {:?} would become {:?}: it only grows",
            now.history, next.history
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nowhere;
    impl EpochFile for Nowhere {
        fn store(&self, _: &Epochs) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_change_is_checked_against_the_one_before() {
        let store = EpochStore::new(Box::new(Nowhere), Epochs::first());
        assert!(store.update(|e| Some(e.promote(10))).is_ok());
        assert_eq!(store.get().history, vec![(1, 1), (2, 10)]);
        let dropped = store.update(|e| {
            e.history.pop();
            Some(())
        });
        assert_eq!(dropped.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let lowered = store.update(|e| {
            e.epoch = 1;
            Some(())
        });
        assert!(lowered.is_err());
        assert_eq!(store.get().history, vec![(1, 1), (2, 10)], "nothing stored");
    }
}
