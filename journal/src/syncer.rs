//! The sync side of pipelined group commit. The writer writes commit N into the page cache
//! and hands "sync through N's last sequence" to a sync worker here, then goes on to encode
//! and write commit N+1 while N syncs; with two or more workers, N+1's `fdatasync` runs while
//! N's is still in the device. Completions may arrive out of order, but the durable sequence
//! is published strictly in submission order: a sync that returns early waits for every sync
//! submitted before it. Once any sync fails nothing more is published, ever (the kernel may
//! have dropped those pages, and a later sync can succeed without them).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::durable::DurableSeq;
use crate::error::{JournalError, Location};
use crate::storage::Storage;

/// A commit that became durable, for the hook (the server's gate and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Synced {
    /// Everything up to here is durable now.
    pub through_seq: u64,
    /// From the commit's hand-off to its sync returning (the oldest commit this publish covers).
    pub waited_ns: u64,
}

/// Told of every publish of the durable sequence, and of the failure that stops them.
pub type DurableHook = Arc<dyn Fn(Result<Synced, &JournalError>) + Send + Sync>;

struct Job {
    ticket: u64,
    segment: String,
    first_seq: u64,
    through_seq: u64,
    offset: u64,
    handed_at: Instant,
}

#[derive(Default)]
struct Completions {
    /// The ticket whose completion publishes next.
    next_to_publish: u64,
    /// Completed, waiting for an earlier ticket: through_seq and hand-off time.
    done: BTreeMap<u64, (u64, Instant)>,
    failed: Option<JournalError>,
}

struct Shared {
    storage: Arc<dyn Storage>,
    durable: Arc<DurableSeq>,
    hook: Option<DurableHook>,
    completions: Mutex<Completions>,
}

pub struct Syncer {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    next_ticket: u64,
}

impl Syncer {
    /// `workers` syncs may run at once.
    pub fn start(
        storage: Arc<dyn Storage>,
        durable: Arc<DurableSeq>,
        hook: Option<DurableHook>,
        workers: usize,
    ) -> Syncer {
        assert!(workers >= 1);
        let shared = Arc::new(Shared {
            storage,
            durable,
            hook,
            completions: Mutex::new(Completions::default()),
        });
        let (jobs, receive) = crossbeam_channel::unbounded();
        let workers = (0..workers)
            .map(|i| {
                let shared = shared.clone();
                let receive: Receiver<Job> = receive.clone();
                std::thread::Builder::new()
                    .name(format!("journal-sync-{i}"))
                    .spawn(move || {
                        for job in receive {
                            let result = shared.storage.sync(&job.segment);
                            shared.complete(job, result);
                        }
                    })
                    .expect("spawning a journal sync worker")
            })
            .collect();
        Syncer {
            jobs: Some(jobs),
            workers,
            shared,
            next_ticket: 0,
        }
    }

    /// Sync `segment`, whose records through `through_seq` are written (from `first_seq`, at
    /// `offset`); the durable sequence moves there once this and every earlier sync returned.
    pub fn hand_off(&mut self, segment: String, first_seq: u64, through_seq: u64, offset: u64) {
        let job = Job {
            ticket: self.next_ticket,
            segment,
            first_seq,
            through_seq,
            offset,
            handed_at: Instant::now(),
        };
        self.next_ticket += 1;
        self.jobs
            .as_ref()
            .expect("the syncer is running")
            .send(job)
            .expect("sync workers outlive the syncer");
    }

    /// The failure that stopped publishing, if one did.
    pub fn failure(&self) -> Option<String> {
        self.shared
            .completions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed
            .as_ref()
            .map(|e| e.to_string())
    }
}

impl Shared {
    fn complete(&self, job: Job, result: std::io::Result<()>) {
        let mut guard = self.completions.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut *guard;
        if c.failed.is_some() {
            return;
        }
        if let Err(e) = result {
            let error = JournalError::io("group commit sync failed; nothing in it is durable", e)
                .at(Location {
                    segment: job.segment,
                    offset: job.offset,
                    sequence: job.first_seq,
                });
            if let Some(hook) = &self.hook {
                hook(Err(&error));
            }
            c.failed = Some(error);
            self.durable.fail();
            return;
        }
        c.done.insert(job.ticket, (job.through_seq, job.handed_at));
        let mut published = None;
        while let Some((through_seq, handed_at)) = c.done.remove(&c.next_to_publish) {
            c.next_to_publish += 1;
            published.get_or_insert((through_seq, handed_at)).0 = through_seq;
        }
        if let Some((through_seq, oldest_handed_at)) = published {
            // Under the lock: publishes stay in order across workers. The hook first, so a
            // writer waiting on the durable sequence returns only after the hook heard it.
            if let Some(hook) = &self.hook {
                hook(Ok(Synced {
                    through_seq,
                    waited_ns: oldest_handed_at.elapsed().as_nanos() as u64,
                }));
            }
            self.durable.publish(through_seq);
        }
    }
}

impl Drop for Syncer {
    /// Finish every sync handed off (their commits may be acknowledged), then stop.
    fn drop(&mut self) {
        drop(self.jobs.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
