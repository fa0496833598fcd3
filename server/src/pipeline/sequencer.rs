//! The sequencer: the ring's one producer. It claims slots, stamps each command with the
//! journal sequence it will have (once, here; the stages check it) and with the wall-clock
//! time (never going back: the engine's only clock), and publishes them. With no command
//! sequenced for a tick interval (queries do not count) it inserts a Tick, so payment deadlines pass on an idle
//! server. On a standby it publishes the primary's records instead, with the primary's
//! sequences and timestamps, and inserts no Ticks of its own.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use engine::ring::Producer;
use engine::wire::Operation;
use engine::{ClientId, Command, Request, RequestId};

use crate::group::follower_side::{FollowerSide, Replicated};
use crate::pipeline::slot::{ConnRef, Slot};
use crate::Clock;

pub struct Sequencer {
    ring: Producer<Slot>,
    clock: Arc<dyn Clock>,
    /// The journal sequence the next command published gets.
    next_seq: u64,
    last_timestamp_ns: u64,
    /// `clock.mono_ns()` when the last command was published (the tick interval counts from
    /// there).
    last_publish_ns: u64,
    tick_ns: u64,
    /// A standby's records from the primary, and those taken off the channel not yet
    /// published (the ring was full).
    replicated: Option<Receiver<Vec<Replicated>>>,
    replicated_pending: VecDeque<Replicated>,
}

impl Sequencer {
    pub fn new(
        ring: Producer<Slot>,
        clock: Arc<dyn Clock>,
        next_seq: u64,
        tick: Duration,
        replicated: Option<Receiver<Vec<Replicated>>>,
    ) -> Sequencer {
        assert!(next_seq >= 1, "sequence 0 is never a command's");
        let now = clock.mono_ns();
        Sequencer {
            ring,
            clock,
            next_seq,
            last_timestamp_ns: 0,
            last_publish_ns: now,
            tick_ns: tick.as_nanos() as u64,
            replicated,
            replicated_pending: VecDeque::new(),
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn mono_ns(&self) -> u64 {
        self.clock.mono_ns()
    }

    pub fn free_slots(&mut self) -> usize {
        self.ring.free_slots()
    }

    /// Ring sequences published so far.
    pub fn published(&self) -> u64 {
        self.ring.published()
    }

    /// Wall-clock nanoseconds, never going back (the engine's clock follows these).
    fn timestamp_ns(&mut self) -> u64 {
        self.last_timestamp_ns = self.last_timestamp_ns.max(self.clock.wall_ns());
        self.last_timestamp_ns
    }

    /// Publish `requests` from `client` on `conn`, read at `received_mono_ns`, in order. The
    /// caller checked that the ring has room for all of them (`free_slots`).
    pub fn publish_requests(
        &mut self,
        conn: ConnRef,
        client: ClientId,
        received_mono_ns: u64,
        requests: impl ExactSizeIterator<Item = (RequestId, Operation)>,
    ) {
        let n = requests.len();
        let now_ns = self.timestamp_ns();
        let mono_ns = self.clock.mono_ns();
        let mut claim = self.ring.try_claim(n).expect("free slots checked");
        let first_seq = self.next_seq;
        for (i, (request, operation)) in requests.enumerate() {
            let slot = claim.slot_mut(i);
            slot.conn = conn;
            slot.timestamp_ns = now_ns;
            slot.received_mono_ns = received_mono_ns;
            slot.published_mono_ns = mono_ns;
            slot.request.client = client;
            slot.request.request = request;
            match operation {
                Operation::Command(command) => {
                    slot.seq = self.next_seq;
                    slot.request.command = command;
                    slot.query = None;
                    self.next_seq += 1;
                }
                Operation::Query(query) => {
                    slot.seq = 0;
                    slot.request.command = Command::Tick;
                    slot.query = Some(query);
                }
            }
        }
        claim.publish();
        // Only a command is "something sequenced": queries alone (a crowd polling stock on a
        // halted primary) must not hold the Ticks back, or nothing is ever journaled for the
        // standbys to catch up on.
        if self.next_seq > first_seq {
            self.last_publish_ns = mono_ns;
        }
    }

    /// How long until a Tick is due.
    pub fn until_next_tick(&self) -> Duration {
        let due = self.last_publish_ns + self.tick_ns;
        Duration::from_nanos(due.saturating_sub(self.clock.mono_ns()))
    }

    /// With nothing sequenced for a tick interval, sequence a Tick so deadlines expire.
    /// Whether one was published.
    pub fn maybe_tick(&mut self) -> bool {
        if !self.until_next_tick().is_zero() {
            return false;
        }
        let now_ns = self.timestamp_ns();
        let mono_ns = self.clock.mono_ns();
        self.last_publish_ns = mono_ns;
        let Some(mut claim) = self.ring.try_claim(1) else {
            return false; // the ring is full: it is not idle
        };
        let slot = claim.slot_mut(0);
        slot.seq = self.next_seq;
        slot.conn = ConnRef::NONE;
        slot.timestamp_ns = now_ns;
        slot.published_mono_ns = mono_ns;
        slot.request = Request {
            client: ClientId::SYSTEM,
            request: RequestId(0),
            command: Command::Tick,
        };
        slot.query = None;
        claim.publish();
        self.next_seq += 1;
        true
    }

    /// Whether a standby's records wait and the ring has room for some.
    pub fn replicated_waiting(&mut self) -> bool {
        let waiting = !self.replicated_pending.is_empty()
            || self.replicated.as_ref().is_some_and(|rx| !rx.is_empty());
        waiting && self.ring.free_slots() > 0
    }

    /// A standby: publish the primary's records, in order, as far as the ring has room.
    pub fn publish_replicated(&mut self) {
        let Some(rx) = self.replicated.as_ref() else {
            return;
        };
        let mono_ns = self.clock.mono_ns();
        loop {
            if self.replicated_pending.is_empty() {
                match rx.try_recv() {
                    Ok(batch) => self.replicated_pending.extend(batch),
                    Err(_) => return,
                }
            }
            let n = self.replicated_pending.len().min(self.ring.free_slots());
            if n == 0 {
                return;
            }
            let mut claim = self.ring.try_claim(n).expect("free slots checked");
            for i in 0..n {
                let r = self.replicated_pending.pop_front().expect("counted");
                // The primary numbered it; this journal must give it the same number.
                assert_eq!(r.seq, self.next_seq, "a replicated record out of sequence");
                let slot = claim.slot_mut(i);
                slot.seq = r.seq;
                slot.conn = ConnRef::NONE;
                slot.timestamp_ns = r.timestamp_ns;
                slot.published_mono_ns = mono_ns;
                slot.request = r.request;
                slot.query = None;
                self.last_timestamp_ns = self.last_timestamp_ns.max(r.timestamp_ns);
                self.next_seq += 1;
            }
            claim.publish();
            self.last_publish_ns = mono_ns;
        }
    }

    /// Promotion: close the follower's intake and publish everything it handed over.
    /// `false`: not yet (the follower is mid-hand-over, or the ring is full); try next turn.
    pub fn close_replicated_intake(&mut self, follower: &FollowerSide) -> bool {
        if self.replicated.is_none() {
            return true;
        }
        let Ok(mut closed) = follower.intake_closed.try_lock() else {
            return false;
        };
        *closed = true;
        drop(closed);
        self.publish_replicated();
        self.replicated_pending.is_empty()
            && self.replicated.as_ref().is_some_and(|rx| rx.is_empty())
    }

    /// This node numbers its own commands from here; the tick interval starts now.
    pub fn promoted(&mut self) {
        self.last_publish_ns = self.clock.mono_ns();
    }
}
