//! The invariants, checked as the run goes and at its end. Each violation is a line that
//! names what broke, when, and the sequence, node or epoch it concerns:
//!
//! - **acknowledged means kept**: every answer a node released for a command is in the
//!   journal of every node that leads afterwards, at the same sequence, as the same
//!   (client, request); at the end, each acknowledged order is in the last primary's engine,
//!   made by that client and request, and no (client, request) made two orders;
//! - **one leader per epoch, epochs only grow**: no two nodes lead the same epoch, a new
//!   leader's epoch is above every epoch led before, and no node's stored epochs go back or
//!   lose history (but for a failback's cut);
//! - **a leader never follows back**: a node that has led epoch e never begins a session
//!   with a primary below e;
//! - **one history**: no node logs a divergence, and at the end every node that runs has
//!   applied the same sequence to the same rolling hash;
//! - **the feed**: a consumer that follows the primary, taking what it released, gets every
//!   sequence once, in order, each as the last primary's journal has it; and the events the
//!   last primary's engine stage drafted for each command it released are, byte for byte,
//!   the ones a replay of its journal derives;
//! - **liveness**: once the faults stop, a write is accepted within the lease and a second,
//!   and by the end every client's requests are answered.

use std::collections::BTreeMap;

use replicator::Epochs;

use crate::net::NodeId;

/// An answer released for a command.
#[derive(Clone, Debug)]
pub struct Ack {
    pub at_ns: u64,
    pub node: NodeId,
    pub epoch: u64,
    pub seq: u64,
    pub client: u64,
    pub request: u64,
    /// The order it made, if it placed one.
    pub order: Option<u64>,
}

#[derive(Default)]
pub struct Checker {
    pub violations: Vec<String>,
    pub acks: Vec<Ack>,
    /// Who led each epoch, and when it began.
    pub leaders: BTreeMap<u64, (NodeId, u64)>,
    /// Per node: the highest epoch it has led, and its last stored epochs.
    led: Vec<u64>,
    stored: Vec<Option<Epochs>>,
    /// The feed consumer: the last sequence it took, and what it took, by sequence.
    pub feed_through: u64,
    pub feed: BTreeMap<u64, (u64, u64)>,
    /// Planted: the consumer skips this sequence.
    pub feed_skips: Option<u64>,
    /// Commands whose drafted feed events were held to a replay's derivation.
    pub drafted_checked: u64,
}

impl Checker {
    pub fn new(nodes: usize) -> Checker {
        Checker {
            led: vec![0; nodes],
            stored: vec![None; nodes],
            ..Checker::default()
        }
    }

    pub fn violate(&mut self, now_ns: u64, what: String) {
        self.violations
            .push(format!("t={:.3}s {what}", now_ns as f64 / 1e9));
    }

    /// `node` leads `epoch` from now, its journal as `history` has it.
    pub fn leads(
        &mut self,
        now_ns: u64,
        node: NodeId,
        name: &str,
        epoch: u64,
        history: &BTreeMap<u64, (u64, u64)>,
    ) {
        match self.leaders.get(&epoch) {
            Some(&(other, _)) if other != node => self.violate(
                now_ns,
                format!("epoch {epoch} led by node {other} and by {name}"),
            ),
            Some(_) => {}
            None => {
                if let Some((&above, _)) = self.leaders.range(epoch..).next() {
                    self.violate(
                        now_ns,
                        format!("{name} leads epoch {epoch}, not above epoch {above} led before"),
                    );
                }
                self.leaders.insert(epoch, (node, now_ns));
            }
        }
        self.led[node] = self.led[node].max(epoch);
        let mut missing = Vec::new();
        for ack in &self.acks {
            if ack.epoch >= epoch {
                continue;
            }
            if history.get(&ack.seq) != Some(&(ack.client, ack.request)) {
                missing.push(format!(
                    "(client {}, request {}) acknowledged at seq {} by node {} in epoch {} is {} \
                     in the journal of {name}, which leads epoch {epoch}",
                    ack.client,
                    ack.request,
                    ack.seq,
                    ack.node,
                    ack.epoch,
                    match history.get(&ack.seq) {
                        Some(other) => format!("replaced by {other:?}"),
                        None => "missing".to_string(),
                    }
                ));
            }
        }
        for m in missing.into_iter().take(5) {
            self.violate(now_ns, m);
        }
    }

    /// `node`'s session began with a primary of `epoch`.
    pub fn follows(&mut self, now_ns: u64, node: NodeId, name: &str, epoch: u64) {
        if epoch < self.led[node] {
            let led = self.led[node];
            self.violate(
                now_ns,
                format!("{name}, which led epoch {led}, follows a primary of epoch {epoch}"),
            );
        }
    }

    /// `node`'s epochs as stored now.
    pub fn epochs(&mut self, now_ns: u64, node: NodeId, name: &str, epochs: &Epochs) {
        if let Some(before) = &self.stored[node] {
            if epochs.epoch < before.epoch {
                let what = format!(
                    "{name}'s epoch went from {} back to {}",
                    before.epoch, epochs.epoch
                );
                self.violate(now_ns, what);
            } else if !epochs.history.starts_with(&before.history) {
                let what = format!(
                    "{name}'s epoch history went from {:?} to {:?}",
                    before.history, epochs.history
                );
                self.violate(now_ns, what);
            }
        }
        for &(e, _) in &epochs.history {
            self.led[node] = self.led[node].max(e);
        }
        self.stored[node] = Some(epochs.clone());
    }

    /// A failback cut `node`'s history, or it dropped epochs it wrote nothing in: its stored
    /// epochs start over from what it keeps.
    pub fn cut(&mut self, node: NodeId, epochs: Option<Epochs>) {
        self.stored[node] = epochs;
    }

    /// The feed consumer takes, from the primary, what it released past where it is.
    pub fn take_feed(&mut self, now_ns: u64, bound: u64, history: &BTreeMap<u64, (u64, u64)>) {
        while self.feed_through < bound {
            let next = self.feed_through + 1;
            let item = match self.feed_skips == Some(next) {
                true => None,
                false => history.get(&next),
            };
            match item {
                Some(&item) => {
                    if self.feed.insert(next, item).is_some() {
                        self.violate(now_ns, format!("the feed gave sequence {next} twice"));
                    }
                    self.feed_through = next;
                }
                None => {
                    // The configuration record (1) is no command; anything else missing below
                    // the bound is a gap.
                    if next == 1 {
                        self.feed_through = 1;
                        continue;
                    }
                    self.violate(
                        now_ns,
                        format!("the feed has a gap at {next}: released through {bound}"),
                    );
                    self.feed_through = bound;
                }
            }
        }
    }

    /// At the end: the feed events `name`'s engine stage drafted (a hash by sequence) are the
    /// ones a replay of its journal derives.
    pub fn drafted_matches(
        &mut self,
        now_ns: u64,
        name: &str,
        drafted: &BTreeMap<u64, u64>,
        derived: &BTreeMap<u64, u64>,
    ) {
        let wrong: Vec<String> = drafted
            .iter()
            .filter(|(seq, hash)| derived.get(seq) != Some(hash))
            .take(5)
            .map(|(seq, _)| match derived.get(seq) {
                Some(_) => format!("{name} drafted feed events at {seq} that a replay of its journal does not derive"),
                None => format!("{name} drafted feed events at {seq}, which its journal does not hold"),
            })
            .collect();
        for w in wrong {
            self.violate(now_ns, w);
        }
        self.drafted_checked += drafted.len() as u64;
    }

    /// At the end: what the feed consumer took is what the last primary's journal holds.
    pub fn feed_matches(&mut self, now_ns: u64, name: &str, history: &BTreeMap<u64, (u64, u64)>) {
        let wrong: Vec<String> = self
            .feed
            .iter()
            .filter(|(seq, item)| history.get(seq) != Some(item))
            .take(5)
            .map(|(seq, item)| {
                format!(
                    "the feed gave {item:?} at {seq}; {name}'s journal has {:?}",
                    history.get(seq)
                )
            })
            .collect();
        for w in wrong {
            self.violate(now_ns, w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(items: &[(u64, (u64, u64))]) -> BTreeMap<u64, (u64, u64)> {
        items.iter().copied().collect()
    }

    #[test]
    fn two_leaders_of_one_epoch_and_an_epoch_not_above_the_last_are_caught() {
        let mut c = Checker::new(3);
        let h = history(&[]);
        c.leads(1, 0, "a", 1, &h);
        c.leads(2, 1, "b", 2, &h);
        assert!(c.violations.is_empty());
        c.leads(3, 2, "c", 2, &h);
        assert!(c.violations[0].contains("epoch 2 led by node 1 and by c"));
        c.leads(4, 0, "a", 5, &h);
        c.leads(5, 1, "b", 4, &h);
        assert!(c
            .violations
            .last()
            .unwrap()
            .contains("b leads epoch 4, not above epoch 5"));
    }

    #[test]
    fn an_acknowledged_answer_missing_from_a_new_leader_is_caught() {
        let mut c = Checker::new(2);
        c.acks.push(Ack {
            at_ns: 1,
            node: 0,
            epoch: 1,
            seq: 5,
            client: 100,
            request: 9,
            order: None,
        });
        c.leads(2, 1, "b", 2, &history(&[(5, (100, 9))]));
        assert!(c.violations.is_empty());
        c.leads(3, 0, "a", 3, &history(&[(5, (101, 9))]));
        assert!(
            c.violations[0].contains("replaced by"),
            "{:?}",
            c.violations
        );
    }

    #[test]
    fn epochs_going_back_or_losing_history_are_caught() {
        let mut c = Checker::new(1);
        let e = |epoch, history: &[(u64, u64)]| Epochs {
            epoch,
            history: history.to_vec(),
        };
        c.epochs(1, 0, "a", &e(2, &[(1, 1), (2, 9)]));
        c.epochs(2, 0, "a", &e(1, &[(1, 1), (2, 9)]));
        assert!(c.violations[0].contains("back to 1"));
        c.epochs(3, 0, "a", &e(2, &[(1, 1)]));
        assert!(c.violations[1].contains("history went from"));
        // A failback's cut starts the record over.
        c.cut(0, Some(e(3, &[(1, 1)])));
        c.epochs(4, 0, "a", &e(3, &[(1, 1), (3, 20)]));
        assert_eq!(c.violations.len(), 2);
    }

    #[test]
    fn drafted_feed_events_that_a_replay_does_not_derive_are_caught() {
        let mut c = Checker::new(2);
        let derived: BTreeMap<u64, u64> = [(5, 50), (6, 60)].into_iter().collect();
        let same: BTreeMap<u64, u64> = [(5, 50), (6, 60)].into_iter().collect();
        c.drafted_matches(1, "a", &same, &derived);
        assert!(c.violations.is_empty());
        assert_eq!(c.drafted_checked, 2);
        let other: BTreeMap<u64, u64> = [(5, 50), (6, 61), (7, 70)].into_iter().collect();
        c.drafted_matches(2, "a", &other, &derived);
        assert_eq!(c.violations.len(), 2, "{:?}", c.violations);
        assert!(c.violations[0].contains("at 6 that a replay"));
        assert!(c.violations[1].contains("at 7, which its journal does not hold"));
    }
}
