//! Epochs: which primary's history a node holds. A small text file, `epoch`, in the data
//! directory, replaced atomically and synced (temp file, fsync, rename, directory fsync)
//! before anything that depends on it happens:
//!
//! ```text
//! epoch 3
//! history 1 1
//! history 3 9021
//! ```
//!
//! `epoch` is the highest epoch this node knows of; each `history` line is an epoch this
//! node's journal followed and the first sequence written in it. A node *leads* when its
//! newest history entry is its epoch: it may take writes. A primary that learns of a higher
//! epoch records it without a history line, and so stays fenced across restarts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "epoch";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epochs {
    pub epoch: u64,
    /// `(epoch, first sequence)`, oldest first.
    pub history: Vec<(u64, u64)>,
}

impl Epochs {
    /// A new primary's: epoch 1 from the first sequence.
    pub fn first() -> Epochs {
        Epochs {
            epoch: 1,
            history: vec![(1, 1)],
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// The file in `dir`, or `None` if there is none yet.
    pub fn load(dir: &Path) -> io::Result<Option<Epochs>> {
        let text = match fs::read_to_string(Epochs::path(dir)) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Epochs::parse(&text).map(Some).map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {why}", Epochs::path(dir).display()),
            )
        })
    }

    fn parse(text: &str) -> Result<Epochs, String> {
        let mut epoch = None;
        let mut history = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let words: Vec<&str> = line.split_whitespace().collect();
            let number = |w: &str| w.parse::<u64>().map_err(|_| format!("not a number: {w:?}"));
            match words.as_slice() {
                ["epoch", e] => epoch = Some(number(e)?),
                ["history", e, s] => history.push((number(e)?, number(s)?)),
                _ => return Err(format!("unreadable line {line:?}")),
            }
        }
        let epoch = epoch.ok_or("no epoch line")?;
        if history
            .windows(2)
            .any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1)
        {
            return Err("history is not in order".into());
        }
        if history.last().is_some_and(|&(e, _)| e > epoch) {
            return Err("history names an epoch above the file's epoch".into());
        }
        Ok(Epochs { epoch, history })
    }

    /// Replace the file durably.
    pub fn store(&self, dir: &Path) -> io::Result<()> {
        let mut text = format!("epoch {}\n", self.epoch);
        for (e, s) in &self.history {
            text.push_str(&format!("history {e} {s}\n"));
        }
        let temp = dir.join(format!("{FILE_NAME}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        fs::rename(&temp, Epochs::path(dir))?;
        File::open(dir)?.sync_all()
    }

    /// Whether this node may take writes: its newest history entry is the newest epoch it
    /// knows of.
    pub fn leads(&self) -> bool {
        self.history.last().is_some_and(|&(e, _)| e == self.epoch)
    }

    /// Become the primary of a new epoch whose first record will be `start_seq`.
    pub fn promote(&mut self, start_seq: u64) -> u64 {
        self.epoch = self.epoch.saturating_add(1);
        self.history.push((self.epoch, start_seq));
        self.epoch
    }

    /// Another node is at `epoch`. True when that is news (higher than ours): a primary
    /// stops leading.
    pub fn learn(&mut self, epoch: u64) -> bool {
        if epoch > self.epoch {
            self.epoch = epoch;
            true
        } else {
            false
        }
    }

    /// A standby follows a primary: take its epoch and history.
    pub fn adopt(&mut self, epoch: u64, history: &[(u64, u64)]) {
        self.epoch = self.epoch.max(epoch);
        self.history = history.to_vec();
    }

    /// On the primary: where a standby that is at `standby_epoch` with records up to
    /// `standby_last` must cut its journal before following, if it must. Its records from the
    /// first epoch after its own were written by a primary that lost (failback): no client was
    /// answered for them in the synchronous modes.
    pub fn truncation_for(&self, standby_epoch: u64, standby_last: u64) -> Option<u64> {
        self.history
            .iter()
            .filter(|&&(_, start)| start > 1)
            .find(|&&(e, _)| e > standby_epoch)
            .and_then(|&(_, start)| (standby_last >= start).then_some(start - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("surge-epoch-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(Epochs::load(&dir).unwrap(), None);
        let mut e = Epochs::first();
        e.store(&dir).unwrap();
        assert_eq!(Epochs::load(&dir).unwrap(), Some(Epochs::first()));
        e.promote(500);
        e.store(&dir).unwrap();
        let back = Epochs::load(&dir).unwrap().unwrap();
        assert_eq!(back.history, vec![(1, 1), (2, 500)]);
        assert!(back.leads());
        fs::write(Epochs::path(&dir), "epoch x\n").unwrap();
        assert!(Epochs::load(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn learning_a_higher_epoch_fences_a_leader() {
        let mut e = Epochs::first();
        assert!(!e.learn(1));
        assert!(e.leads());
        assert!(e.learn(2));
        assert!(!e.leads());
    }

    #[test]
    fn failback_cuts_what_the_old_primary_wrote_after_the_promotion_point() {
        let mut primary = Epochs::first();
        primary.promote(1001); // epoch 2 starts at 1001
                               // The old primary (epoch 1) wrote up to 1040: cut after 1000.
        assert_eq!(primary.truncation_for(1, 1040), Some(1000));
        // It had only reached 990: nothing to cut, it catches up.
        assert_eq!(primary.truncation_for(1, 990), None);
        // A standby of this epoch never needs cutting.
        assert_eq!(primary.truncation_for(2, 5000), None);
        // A new node with nothing but the configuration record.
        assert_eq!(primary.truncation_for(0, 1), None);
    }
}
