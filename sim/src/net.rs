//! The simulated network between nodes: connections that behave as TCP does for the
//! replication protocol. Each direction delivers its frames in order, each after a delay
//! (a few hundred microseconds, more on a slow link); a dial to a node that is down is
//! refused at once, and a dial across a cut times out; the kernel accepts a dial to a paused
//! process (its inbox waits). A cut holds what is sent across it until it heals (TCP
//! retransmits) unless the connection ends first; a crash resets every connection of the
//! node. Links to etcd are the world's (`world.rs`): a cut there loses calls or answers.

use std::collections::{BTreeMap, BTreeSet};

use crate::rng::Rng;

pub type ConnId = u64;
pub type NodeId = usize;

/// What arrives at a node from the network.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A dial from `from` reached this node's replication port.
    Accepted { conn: ConnId, from: NodeId },
    /// This node's dial: connected, or not.
    Dialed { conn: ConnId, ok: bool },
    /// One frame, as sent.
    Frame { conn: ConnId, bytes: Vec<u8> },
    /// The other end closed or reset the connection.
    Closed { conn: ConnId },
}

/// A delivery due at a time.
pub type Due = (u64, NodeId, Delivery);

struct Conn {
    /// The dialer and the listener.
    ends: [NodeId; 2],
    open: bool,
    /// When the last frame each way arrives (later frames arrive after it).
    free_at: [u64; 2],
    /// Frames sent across a cut, each way, in order.
    held: [Vec<Vec<u8>>; 2],
}

impl Conn {
    fn side_of(&self, node: NodeId) -> usize {
        usize::from(self.ends[0] != node)
    }
}

#[derive(Default)]
pub struct Net {
    conns: BTreeMap<ConnId, Conn>,
    next: ConnId,
    /// Directed cuts between nodes: from → to.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Extra delay on a slow link (nanoseconds, at most), either way.
    slow: BTreeMap<(NodeId, NodeId), u64>,
    /// How long a dial across a cut waits before it fails.
    pub dial_timeout_ns: u64,
}

impl Net {
    pub fn new(dial_timeout_ns: u64) -> Net {
        Net {
            dial_timeout_ns,
            ..Net::default()
        }
    }

    fn delay(&self, rng: &mut Rng, from: NodeId, to: NodeId) -> u64 {
        let key = (from.min(to), from.max(to));
        let extra = self
            .slow
            .get(&key)
            .map_or(0, |&max| rng.between(max / 4, max));
        rng.between(100_000, 600_000) + extra
    }

    pub fn blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Whether `conn` is open.
    pub fn open(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.open)
    }

    /// `from` dials `to` (`to_up`: its process runs, paused or not).
    pub fn dial(
        &mut self,
        now: u64,
        rng: &mut Rng,
        from: NodeId,
        to: NodeId,
        to_up: bool,
    ) -> Vec<Due> {
        self.next += 1;
        let conn = self.next;
        let across = self.blocked(from, to) || self.blocked(to, from);
        let d = self.delay(rng, from, to);
        if across || !to_up {
            let at = if across {
                now + self.dial_timeout_ns
            } else {
                now + d
            };
            return vec![(at, from, Delivery::Dialed { conn, ok: false })];
        }
        self.conns.insert(
            conn,
            Conn {
                ends: [from, to],
                open: true,
                free_at: [now + d, now + 2 * d],
                held: [Vec::new(), Vec::new()],
            },
        );
        vec![
            (now + d, to, Delivery::Accepted { conn, from }),
            (now + 2 * d, from, Delivery::Dialed { conn, ok: true }),
        ]
    }

    /// `from` sends `bytes` on `conn`.
    pub fn send(
        &mut self,
        now: u64,
        rng: &mut Rng,
        conn: ConnId,
        from: NodeId,
        bytes: Vec<u8>,
    ) -> Vec<Due> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        if !c.open {
            return Vec::new();
        }
        let side = c.side_of(from);
        let to = c.ends[1 - side];
        if self.blocked(from, to) {
            self.conns.get_mut(&conn).expect("found").held[side].push(bytes);
            return Vec::new();
        }
        let d = self.delay(rng, from, to);
        let c = self.conns.get_mut(&conn).expect("found");
        let at = (now + d).max(c.free_at[side]);
        c.free_at[side] = at;
        vec![(at, to, Delivery::Frame { conn, bytes })]
    }

    /// `by` closes `conn`: the other end hears of it after what was sent before.
    pub fn close(&mut self, now: u64, rng: &mut Rng, conn: ConnId, by: NodeId) -> Vec<Due> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        if !c.open {
            return Vec::new();
        }
        let side = c.side_of(by);
        let to = c.ends[1 - side];
        let d = self.delay(rng, by, to);
        let c = self.conns.get_mut(&conn).expect("found");
        c.open = false;
        if self.cut.contains(&(by, to)) {
            return Vec::new(); // the FIN is lost: the other end finds out by silence
        }
        let at = (now + d).max(c.free_at[side]);
        vec![(at, to, Delivery::Closed { conn })]
    }

    /// `node` crashed (or its process exited): every connection of it is reset.
    pub fn node_down(&mut self, now: u64, rng: &mut Rng, node: NodeId) -> Vec<Due> {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.open && c.ends.contains(&node))
            .map(|(&id, _)| id)
            .collect();
        let mut due = Vec::new();
        for id in ids {
            due.extend(self.close(now, rng, id, node));
        }
        due
    }

    pub fn cut_link(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    pub fn slow_link(&mut self, a: NodeId, b: NodeId, max_ns: u64) {
        self.slow.insert((a.min(b), a.max(b)), max_ns);
    }

    /// The cuts and slowness between `a` and `b` gone; what was held is delivered, in order.
    pub fn heal_link(&mut self, now: u64, rng: &mut Rng, a: NodeId, b: NodeId) -> Vec<Due> {
        self.cut.remove(&(a, b));
        self.cut.remove(&(b, a));
        self.slow.remove(&(a.min(b), a.max(b)));
        self.flush(now, rng, |ends| ends.contains(&a) && ends.contains(&b))
    }

    fn flush(
        &mut self,
        now: u64,
        rng: &mut Rng,
        between: impl Fn(&[NodeId; 2]) -> bool,
    ) -> Vec<Due> {
        let mut due = Vec::new();
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| between(&c.ends))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            for side in 0..2 {
                let from = self.conns[&id].ends[side];
                let to = self.conns[&id].ends[1 - side];
                if self.blocked(from, to) {
                    continue;
                }
                let held = std::mem::take(&mut self.conns.get_mut(&id).expect("id").held[side]);
                for bytes in held {
                    due.extend(self.send(now, rng, id, from, bytes));
                }
            }
        }
        self.conns
            .retain(|_, c| c.open || c.held.iter().any(|h| !h.is_empty()));
        due
    }

    /// Every cut and slow link gone; what was held is delivered, in order.
    pub fn heal(&mut self, now: u64, rng: &mut Rng) -> Vec<Due> {
        self.cut.clear();
        self.slow.clear();
        self.flush(now, rng, |_| true)
    }
}
