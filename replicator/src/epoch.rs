//! Epochs: which primary's history a node holds, stored in the data directory before
//! anything that depends on it happens, as text:
//!
//! ```text
//! epoch 3
//! history 1 1
//! history 3 9021
//! generation 7
//! check 5d1f08a2
//! ```
//!
//! `epoch` is the highest epoch this node knows of; each `history` line is an epoch this
//! node's journal followed and the first sequence written in it. A node *leads* when its
//! newest history entry is its epoch: it may take writes. A primary that learns of a higher
//! epoch records it without a history line, and so stays fenced across restarts.
//!
//! Two slots, `epoch.a` and `epoch.b`, hold the two newest versions; `generation` orders them
//! and `check` (CRC32C of everything before it) tells a whole one from a torn one. A store
//! overwrites the older slot in place and syncs it: one `fdatasync`, no rename and no
//! directory sync, so a promotion has one sync on its critical path. A crash during the
//! write leaves that slot unreadable and the other one, the previous version, in use: the
//! node comes back in its old role or its new one, never with no epoch. (Bytes after the
//! `check` line are what a longer earlier version left; they are ignored.) A data directory
//! from before the slots has one text file, `epoch`, which is read when there is no slot and
//! removed once a slot is written.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The two slots.
pub const SLOT_NAMES: [&str; 2] = ["epoch.a", "epoch.b"];
/// The single file of data directories from before the slots.
pub const LEGACY_FILE_NAME: &str = "epoch";

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

    /// The slot files, for messages and tools.
    pub fn slot_paths(dir: &Path) -> [PathBuf; 2] {
        SLOT_NAMES.map(|name| dir.join(name))
    }

    /// The newest whole version in `dir`, or `None` if there is none yet. Both slots present
    /// and neither whole is an error (damage, not a torn write: a store only ever writes one).
    pub fn load(dir: &Path) -> io::Result<Option<Epochs>> {
        let slots = read_slots(dir)?;
        if let Some((_, epochs)) = newest(&slots) {
            return Ok(Some(epochs.clone()));
        }
        if slots.iter().any(|s| matches!(s, Slot::Unreadable(_))) {
            let why: Vec<String> = slots
                .iter()
                .zip(SLOT_NAMES)
                .filter_map(|(s, name)| match s {
                    Slot::Unreadable(why) => Some(format!("{name}: {why}")),
                    _ => None,
                })
                .collect();
            if slots.iter().all(|s| !matches!(s, Slot::Missing)) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: neither epoch slot is whole ({})",
                        dir.display(),
                        why.join("; ")
                    ),
                ));
            }
        }
        let legacy = dir.join(LEGACY_FILE_NAME);
        let text = match fs::read_to_string(&legacy) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Epochs::parse(&text).map(Some).map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {why}", legacy.display()),
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

    fn text(&self) -> String {
        let mut text = format!("epoch {}\n", self.epoch);
        for (e, s) in &self.history {
            text.push_str(&format!("history {e} {s}\n"));
        }
        text
    }

    /// Store durably: overwrite the older slot (or the unreadable one) with the next
    /// generation and sync it. Only `Ok` means stored.
    pub fn store(&self, dir: &Path) -> io::Result<()> {
        let slots = read_slots(dir)?;
        let (generation, index) = match newest(&slots) {
            None => (1, 0),
            Some((generation, _)) => {
                let newest_index = slots
                    .iter()
                    .position(|s| matches!(s, Slot::Whole(g, _) if *g == generation))
                    .expect("the newest is a slot");
                (generation + 1, 1 - newest_index)
            }
        };
        let mut bytes = self.text();
        bytes.push_str(&format!("generation {generation}\n"));
        let check = crc32c::crc32c(bytes.as_bytes());
        bytes.push_str(&format!("check {check:08x}\n"));
        let path = dir.join(SLOT_NAMES[index]);
        let created = matches!(slots[index], Slot::Missing);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        file.write_all_at(bytes.as_bytes(), 0)?;
        file.sync_data()?;
        let legacy = dir.join(LEGACY_FILE_NAME);
        let had_legacy = legacy.exists();
        if had_legacy {
            fs::remove_file(&legacy)?;
        }
        if created || had_legacy {
            // Only the first store of each slot (and the migration) changes the directory.
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Whether this node may take writes: its newest history entry is the newest epoch it
    /// knows of.
    pub fn leads(&self) -> bool {
        self.history.last().is_some_and(|&(e, _)| e == self.epoch)
    }

    /// Become the primary of a new epoch whose first record will be `start_seq`.
    pub fn promote(&mut self, start_seq: u64) -> u64 {
        self.promote_to(self.epoch.saturating_add(1), start_seq)
    }

    /// Become the primary of `epoch` (a fencing token handed out elsewhere, above every
    /// epoch this node knows) from `start_seq`.
    pub fn promote_to(&mut self, epoch: u64, start_seq: u64) -> u64 {
        assert!(
            epoch > self.epoch || self.history.is_empty(),
            "epoch {epoch} is not above {}",
            self.epoch
        );
        self.epoch = epoch;
        self.history.push((epoch, start_seq));
        epoch
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

    /// A standby follows a primary of `epoch` with `history`: take them. Refused (`Err`:
    /// why) when that would move this node back: a primary below the epoch this node knows
    /// (it may have led that epoch itself), or a history that does not continue this node's
    /// (the history only ever grows, except by `cut_after`).
    pub fn adopt(&mut self, epoch: u64, history: &[(u64, u64)]) -> Result<(), String> {
        if epoch < self.epoch {
            return Err(format!(
                "the primary is at epoch {epoch}, below this node's {}",
                self.epoch
            ));
        }
        if !history.starts_with(&self.history) {
            return Err(format!(
                "the primary's history {history:?} does not continue this node's {:?}",
                self.history
            ));
        }
        self.epoch = epoch;
        self.history = history.to_vec();
        Ok(())
    }

    /// The journal was cut after `seq` (failback): epochs that began after it hold nothing
    /// here any more.
    pub fn cut_after(&mut self, seq: u64) {
        self.history.retain(|&(_, start)| start <= seq);
    }

    /// On a node starting as a standby with its journal ending before `next_seq`: drop the
    /// epochs that begin at or after it. They hold no record here (a node elected whose
    /// journal failed before its first write, say), and a history that ends in one never
    /// continues the history of the primary that led instead, so the standby could follow
    /// no one. Nothing was acknowledged in them: no record of theirs is on this disk. True
    /// when something was dropped (the caller stores the epochs).
    pub fn drop_unwritten(&mut self, next_seq: u64) -> bool {
        let before = self.history.len();
        self.cut_after(next_seq.saturating_sub(1));
        self.history.len() != before
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

/// What one slot file holds.
#[derive(Debug)]
enum Slot {
    Missing,
    /// A whole version: its generation and epochs.
    Whole(u64, Epochs),
    /// Torn or damaged: why.
    Unreadable(String),
}

fn read_slots(dir: &Path) -> io::Result<[Slot; 2]> {
    let read = |name: &str| -> io::Result<Slot> {
        match fs::read(dir.join(name)) {
            Ok(bytes) => Ok(match parse_slot(&bytes) {
                Ok((generation, epochs)) => Slot::Whole(generation, epochs),
                Err(why) => Slot::Unreadable(why),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Slot::Missing),
            Err(e) => Err(e),
        }
    };
    Ok([read(SLOT_NAMES[0])?, read(SLOT_NAMES[1])?])
}

/// The whole slot with the highest generation.
fn newest(slots: &[Slot; 2]) -> Option<(u64, &Epochs)> {
    slots
        .iter()
        .filter_map(|s| match s {
            Slot::Whole(generation, epochs) => Some((*generation, epochs)),
            _ => None,
        })
        .max_by_key(|(generation, _)| *generation)
}

/// A slot's version: the text up to its `check` line, whose CRC32C must match.
fn parse_slot(bytes: &[u8]) -> Result<(u64, Epochs), String> {
    let check_at = find(bytes, b"check ").ok_or("no check line (torn or empty)")?;
    let rest = &bytes[check_at + b"check ".len()..];
    let line_end = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("torn check line")?;
    let written = std::str::from_utf8(&rest[..line_end])
        .ok()
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or("unreadable check")?;
    let body = &bytes[..check_at];
    if crc32c::crc32c(body) != written {
        return Err("check mismatch (torn or damaged)".into());
    }
    let text = std::str::from_utf8(body).map_err(|_| "not text")?;
    let (text, generation) = text
        .trim_end()
        .rsplit_once('\n')
        .and_then(|(text, last)| Some((text, last.strip_prefix("generation ")?.parse().ok()?)))
        .ok_or("no generation line")?;
    Ok((generation, Epochs::parse(text)?))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("surge-epoch-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn versions_alternate_between_the_slots() {
        let dir = temp_dir("round-trip");
        assert_eq!(Epochs::load(&dir).unwrap(), None);
        let mut e = Epochs::first();
        e.store(&dir).unwrap();
        assert_eq!(Epochs::load(&dir).unwrap(), Some(Epochs::first()));
        e.promote(500);
        e.store(&dir).unwrap();
        let back = Epochs::load(&dir).unwrap().unwrap();
        assert_eq!(back.history, vec![(1, 1), (2, 500)]);
        assert!(back.leads());
        let [a, b] = Epochs::slot_paths(&dir).map(|p| fs::read_to_string(p).unwrap());
        assert!(
            a.contains("generation 1") && b.contains("generation 2"),
            "{a}\n{b}"
        );
        // A shorter version over a longer one: the tail it leaves is ignored.
        e.learn(9);
        e.history.truncate(1);
        e.store(&dir).unwrap();
        assert_eq!(Epochs::load(&dir).unwrap(), Some(e.clone()));
        fs::write(&Epochs::slot_paths(&dir)[0], "epoch x\n").unwrap();
        assert_eq!(
            Epochs::load(&dir).unwrap().unwrap().history,
            vec![(1, 1), (2, 500)],
            "the damaged newest slot gives way to the other"
        );
        fs::write(&Epochs::slot_paths(&dir)[1], "").unwrap();
        let err = Epochs::load(&dir).unwrap_err();
        assert!(
            err.to_string().contains("neither epoch slot is whole"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_crash_at_any_byte_of_a_store_leaves_the_old_version_or_the_new() {
        let dir = temp_dir("torn");
        let mut old = Epochs::first();
        old.store(&dir).unwrap();
        old.promote(77);
        old.store(&dir).unwrap(); // generation 2 in slot b; slot a (generation 1) is next
        let slot_a = Epochs::slot_paths(&dir)[0].clone();
        let before = fs::read(&slot_a).unwrap();
        let mut new = old.clone();
        new.promote(1234);
        new.store(&dir).unwrap();
        let after = fs::read(&slot_a).unwrap();
        for torn_at in 0..=after.len() {
            // The write reached the disk up to `torn_at`; the rest is what was there.
            let mut image = after[..torn_at].to_vec();
            image.extend_from_slice(before.get(torn_at..).unwrap_or(&[]));
            fs::write(&slot_a, &image).unwrap();
            let loaded = Epochs::load(&dir).unwrap().expect("always an epoch");
            if torn_at == after.len() {
                assert_eq!(loaded, new);
            } else {
                assert!(
                    loaded == old || loaded == new,
                    "torn at {torn_at}: {loaded:?}"
                );
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_from_before_the_slots_is_read_and_migrated() {
        let dir = temp_dir("legacy");
        fs::write(
            dir.join(LEGACY_FILE_NAME),
            "epoch 4\nhistory 1 1\nhistory 4 90\n",
        )
        .unwrap();
        let e = Epochs::load(&dir).unwrap().unwrap();
        assert_eq!((e.epoch, e.history.clone()), (4, vec![(1, 1), (4, 90)]));
        e.store(&dir).unwrap();
        assert!(!dir.join(LEGACY_FILE_NAME).exists());
        assert_eq!(Epochs::load(&dir).unwrap(), Some(e));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_node_adopts_only_a_history_that_continues_its_own_at_an_epoch_not_below_its_own() {
        let mut standby = Epochs::first();
        assert_eq!(standby.adopt(2, &[(1, 1), (2, 50)]), Ok(()));
        assert_eq!(standby.history, vec![(1, 1), (2, 50)]);
        // It led epoch 3 meanwhile: the old primary of epoch 2 is never followed again.
        let mut led = standby.clone();
        led.promote_to(3, 90);
        let before = led.clone();
        assert!(led.adopt(2, &[(1, 1), (2, 50)]).is_err());
        assert!(led.adopt(3, &[(1, 1), (2, 50)]).is_err(), "drops epoch 3");
        assert_eq!(led, before, "a refusal changes nothing");
        assert_eq!(led.adopt(4, &[(1, 1), (2, 50), (3, 90), (4, 200)]), Ok(()));
        // A cut journal drops the epochs that began after the cut; then it can follow.
        let mut cut = before.clone();
        cut.cut_after(89);
        assert_eq!(cut.history, vec![(1, 1), (2, 50)]);
        assert_eq!(cut.epoch, 3);
        assert_eq!(cut.adopt(4, &[(1, 1), (2, 50), (4, 70)]), Ok(()));
    }

    #[test]
    fn a_standby_drops_an_epoch_it_led_without_writing_and_can_follow_the_one_that_won() {
        // Elected at epoch 6 from 10669, its journal failed before the first write.
        let mut e = Epochs::first();
        e.promote_to(5, 400);
        e.promote_to(6, 10669);
        assert!(e.adopt(7, &[(1, 1), (5, 400), (7, 10669)]).is_err());
        assert!(e.drop_unwritten(10669));
        assert_eq!((e.epoch, e.history.clone()), (6, vec![(1, 1), (5, 400)]));
        assert!(!e.drop_unwritten(10669), "nothing more to drop");
        assert_eq!(e.adopt(7, &[(1, 1), (5, 400), (7, 10669)]), Ok(()));
        // One record written in the epoch: it stays.
        let mut wrote = Epochs::first();
        wrote.promote_to(2, 50);
        assert!(!wrote.drop_unwritten(51));
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
