//! The primary's recent journal commits, in memory, for the standby's sender. The journaler
//! hands each group commit's encoded records here *before* it syncs them, so the standby
//! receives (and syncs) a batch while the primary syncs it too: the two syncs overlap
//! instead of adding up. Bounded: the oldest commits are dropped past `cap_bytes` (they are
//! durable by then, and a standby that needs them reads them from the journal files).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub struct Chunk {
    pub first_seq: u64,
    pub last_seq: u64,
    pub bytes: Vec<u8>,
}

pub struct Backlog {
    inner: Mutex<Inner>,
    changed: Condvar,
    cap_bytes: usize,
}

struct Inner {
    chunks: VecDeque<Arc<Chunk>>,
    bytes: usize,
    /// The last sequence handed over (whether or not it is still held).
    last_seq: u64,
}

/// What `Backlog::after` found.
pub enum After {
    /// Commits holding every sequence after the one asked for (the first may start earlier).
    Chunks(Vec<Arc<Chunk>>),
    /// The next sequence is older than anything held: read the files up to `oldest - 1`.
    Gone { oldest: u64 },
    /// Nothing new within the wait.
    Nothing,
}

impl Backlog {
    pub fn new(cap_bytes: usize, last_seq: u64) -> Backlog {
        Backlog {
            inner: Mutex::new(Inner {
                chunks: VecDeque::new(),
                bytes: 0,
                last_seq,
            }),
            changed: Condvar::new(),
            cap_bytes,
        }
    }

    /// One commit's records, `first_seq..=last_seq`.
    pub fn push(&self, first_seq: u64, last_seq: u64, bytes: &[u8]) {
        let mut inner = self.inner.lock().expect("backlog lock");
        inner.bytes += bytes.len();
        inner.chunks.push_back(Arc::new(Chunk {
            first_seq,
            last_seq,
            bytes: bytes.to_vec(),
        }));
        inner.last_seq = last_seq;
        while inner.bytes > self.cap_bytes && inner.chunks.len() > 1 {
            let dropped = inner.chunks.pop_front().expect("more than one");
            inner.bytes -= dropped.bytes.len();
        }
        drop(inner);
        self.changed.notify_all();
    }

    pub fn last_seq(&self) -> u64 {
        self.inner.lock().expect("backlog lock").last_seq
    }

    /// Wake every waiter (to look at a stop flag).
    pub fn poke(&self) {
        self.changed.notify_all();
    }

    /// Whether the commit holding `seq` is still here.
    pub fn holds(&self, seq: u64) -> bool {
        let inner = self.inner.lock().expect("backlog lock");
        inner
            .chunks
            .front()
            .is_some_and(|oldest| oldest.first_seq <= seq && seq <= inner.last_seq)
    }

    /// Wait up to `wait` for a sequence after `seq`; whether one is there.
    pub fn wait_past(&self, seq: u64, wait: Duration) -> bool {
        let inner = self.inner.lock().expect("backlog lock");
        let (inner, _) = self
            .changed
            .wait_timeout_while(inner, wait, |i| i.last_seq <= seq)
            .expect("backlog lock");
        inner.last_seq > seq
    }

    /// The commits holding sequences after `seq`, waiting up to `wait` for one.
    pub fn after(&self, seq: u64, wait: Duration) -> After {
        let inner = self.inner.lock().expect("backlog lock");
        let (inner, _) = self
            .changed
            .wait_timeout_while(inner, wait, |i| i.last_seq <= seq)
            .expect("backlog lock");
        if inner.last_seq <= seq {
            return After::Nothing;
        }
        match inner.chunks.front() {
            Some(oldest) if oldest.first_seq <= seq + 1 => After::Chunks(
                inner
                    .chunks
                    .iter()
                    .filter(|c| c.last_seq > seq)
                    .cloned()
                    .collect(),
            ),
            Some(oldest) => After::Gone {
                oldest: oldest.first_seq,
            },
            None => After::Gone {
                oldest: inner.last_seq + 1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_what_follows_and_says_when_it_is_gone() {
        let b = Backlog::new(100, 0);
        b.push(1, 2, &[0; 60]);
        b.push(3, 5, &[0; 60]);
        // Over the cap: the first commit is dropped.
        match b.after(2, Duration::ZERO) {
            After::Chunks(c) => assert_eq!((c.len(), c[0].first_seq), (1, 3)),
            _ => panic!("expected chunks"),
        }
        assert!(matches!(
            b.after(0, Duration::ZERO),
            After::Gone { oldest: 3 }
        ));
        assert!(matches!(
            b.after(5, Duration::from_millis(1)),
            After::Nothing
        ));
        match b.after(3, Duration::ZERO) {
            After::Chunks(c) => assert_eq!(c[0].first_seq, 3),
            _ => panic!("expected chunks"),
        }
    }
}
