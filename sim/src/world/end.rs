//! The end of a run: liveness (a write after the heal within the lease and a second, every
//! client answered), convergence (one journal, one rolling hash), and exactly once on the
//! last primary; then the report.

use std::collections::BTreeMap;

use engine::{Answer as EngineAnswer, ClientId, OrderId, Query, RequestId};
use server::group::role::Role;

use super::{Report, World, S};
use crate::node::History;

impl World {
    pub(super) fn finish(mut self) -> Report {
        let now = self.now.get();
        let lease = self.params.lease.as_nanos() as u64;
        match self.first_write_after_heal {
            Some(t) if t <= self.heal_ns + lease + S => {}
            Some(t) => self.checker.violate(
                now,
                format!(
                    "liveness: the first write after the heal was accepted {:.3} s after it (lease + 1 s is {:.3} s)",
                    (t - self.heal_ns) as f64 / 1e9,
                    (lease + S) as f64 / 1e9
                ),
            ),
            None => self.checker.violate(now, "liveness: no write was accepted after the heal".into()),
        }
        for c in &self.clients {
            if c.unanswered() > 0 {
                self.checker.violate(
                    now,
                    format!(
                        "liveness: client {} still waits for {} answer(s)",
                        c.index,
                        c.unanswered()
                    ),
                );
            }
        }
        self.check_converged(now);
        self.check_exactly_once(now);
        let leaders = self
            .checker
            .leaders
            .iter()
            .map(|(&e, &(n, at))| {
                (
                    e,
                    format!("{} from t={:.3}s", self.nodes[n].name, at as f64 / 1e9),
                )
            })
            .collect();
        Report {
            seed: self.options.seed,
            nodes: self.options.nodes,
            sim_ns: now,
            violations: self.checker.violations.clone(),
            faults: self.schedule.clone(),
            fault_kinds: self.fault_kinds.clone(),
            trace: self.trace.clone(),
            logs: self
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.log.iter().cloned().collect()))
                .collect(),
            acks: self.checker.acks.len() as u64,
            drafted_checked: self.checker.drafted_checked,
            answers: self.answers,
            leaders,
            starts: self.nodes.iter().map(|n| n.starts).sum(),
            epochs: self
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.epochs.load()))
                .collect(),
        }
    }

    /// Every node runs, caught up with the others: one journal, record for record, and the
    /// same rolling hash when each is replayed to the sequence they all hold.
    fn check_converged(&mut self, now: u64) {
        /// Records a node may still be behind at the end (Ticks on their way).
        const BEHIND_MAX: u64 = 50;
        let mut running = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            match n.applied() {
                Some(_) => running.push(i),
                None => self
                    .checker
                    .violate(now, format!("{} is not running at the end", n.name)),
            }
        }
        let histories: Vec<(usize, History)> = running
            .iter()
            .map(|&i| (i, self.nodes[i].history.lock().expect("history").clone()))
            .collect();
        let last = |h: &History| h.keys().last().copied().unwrap_or(0);
        let Some(furthest) = histories.iter().map(|(_, h)| last(h)).max() else {
            return;
        };
        let common = histories.iter().map(|(_, h)| last(h)).min().unwrap_or(0);
        for (i, h) in &histories {
            if last(h) + BEHIND_MAX < furthest {
                let name = self.nodes[*i].name.clone();
                self.checker.violate(
                    now,
                    format!(
                        "not converged: {name}'s journal ends at {}, another's at {furthest}",
                        last(h)
                    ),
                );
            }
        }
        let (first, first_history) = &histories[0];
        for (i, h) in &histories[1..] {
            let differs = (1..=common).find(|seq| h.get(seq) != first_history.get(seq));
            if let Some(seq) = differs {
                let (a, b) = (self.nodes[*first].name.clone(), self.nodes[*i].name.clone());
                self.checker.violate(
                    now,
                    format!(
                        "two histories: at {seq} {a} has {:?}, {b} has {:?}",
                        first_history.get(&seq),
                        h.get(&seq)
                    ),
                );
            }
        }
        let hashes: Vec<(String, u64)> = running
            .iter()
            .map(|&i| (self.nodes[i].name.clone(), self.nodes[i].hash_at(common)))
            .collect();
        for (name, hash) in &hashes[1..] {
            if *hash != hashes[0].1 {
                self.checker.violate(
                    now,
                    format!(
                        "rolling hashes differ at {common}: {} {:#x}, {name} {hash:#x}",
                        hashes[0].0, hashes[0].1
                    ),
                );
            }
        }
    }

    /// On the last primary: every acknowledged order, made by its client and request; no
    /// (client, request) with two orders; the feed as its journal has it.
    fn check_exactly_once(&mut self, now: u64) {
        let Some(primary) = self
            .nodes
            .iter()
            .filter(|n| n.role() == Some(Role::Primary))
            .max_by_key(|n| n.node().map_or(0, |node| node.epoch()))
        else {
            self.checker.violate(now, "no primary at the end".into());
            return;
        };
        let name = primary.name.clone();
        let engine = primary.engine().expect("a running primary");
        let mut problems = Vec::new();
        let mut made: BTreeMap<(u64, u64), Vec<u64>> = BTreeMap::new();
        let max_order = self
            .checker
            .acks
            .iter()
            .filter_map(|a| a.order)
            .max()
            .unwrap_or(0);
        for order in 1..=max_order + 64 {
            if let EngineAnswer::Order(view) = engine.query(&Query::Order {
                order: OrderId(order),
            }) {
                made.entry((view.client.0, view.request.0))
                    .or_default()
                    .push(order);
            }
        }
        for ack in &self.checker.acks {
            let Some(order) = ack.order else { continue };
            match engine.query(&Query::Order { order: OrderId(order) }) {
                EngineAnswer::Order(view)
                    if (view.client, view.request) == (ClientId(ack.client), RequestId(ack.request)) => {}
                other => problems.push(format!(
                    "order {order}, acknowledged to (client {}, request {}) at seq {} by node {} in epoch {} at t={:.3}s, is {other:?} on {name}",
                    ack.client,
                    ack.request,
                    ack.seq,
                    ack.node,
                    ack.epoch,
                    ack.at_ns as f64 / 1e9
                )),
            }
        }
        for ((c, r), orders) in &made {
            if orders.len() > 1 {
                problems.push(format!(
                    "(client {c}, request {r}) made orders {orders:?} on {name}"
                ));
            }
        }
        for p in problems.into_iter().take(5) {
            self.checker.violate(now, p);
        }
        let history = primary.history.lock().expect("history").clone();
        self.checker.feed_matches(now, &name, &history);
        // The feed's events as the serving engine drafted them are the derivation's.
        let drafted = primary.drafted.lock().expect("drafted").clone();
        let derived = primary.derived_feed();
        self.checker.drafted_matches(now, &name, &drafted, &derived);
    }
}
