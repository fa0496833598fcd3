//! The faults' effects on the world: each fault as it begins and ends, a kill, and the heal
//! that ends them all.

use super::{Event, World, MS, RESTART_NS};
use crate::faults::Kind;
use crate::net::NodeId;

impl World {
    pub(super) fn fault(&mut self, i: usize) {
        let f = self.schedule[i].clone();
        let now = self.now.get();
        *self.fault_kinds.entry(f.kind.name()).or_default() += 1;
        self.note(format!("fault: {}", f.describe()));
        let node = f.node;
        match f.kind {
            Kind::Kill => {
                if self.nodes[node].up() {
                    self.exited_by_kill(node);
                }
            }
            Kind::CrashMidCommit => {
                if self.nodes[node].up() {
                    self.nodes[node].fail_next_sync(false);
                }
            }
            Kind::Pause => {
                if self.nodes[node].up() {
                    self.nodes[node].paused = true;
                }
            }
            Kind::Partition => {
                self.net.cut_link(node, f.peer);
                self.net.cut_link(f.peer, node);
            }
            Kind::OneWay => self.net.cut_link(node, f.peer),
            Kind::EtcdCut => {
                self.etcd_cut[node] = match self.rng.below(3) {
                    0 => (true, false),
                    1 => (false, true),
                    _ => (true, true),
                }
            }
            Kind::EtcdStall => self.etcd_stalled = true,
            Kind::EtcdSlow => self.etcd_slow_ns = self.rng.between(50, 400) * MS,
            Kind::SlowLink => self
                .net
                .slow_link(node, f.peer, self.rng.between(20, 300) * MS),
            Kind::SlowDisk => self.nodes[node].slow_disk = true,
            Kind::DiskFull => {
                self.disk_full[node] = true;
                self.nodes[node].storage().set_faults(journal::Faults {
                    fail_write: Some(1),
                    sticky: true,
                    ..journal::Faults::default()
                });
            }
        }
        let _ = now;
    }

    fn exited_by_kill(&mut self, node: NodeId) {
        let now = self.now.get();
        let name = self.nodes[node].name.clone();
        self.note(format!("{name} killed"));
        self.stop_process(node, false);
        self.clients_lose(node);
        self.at(now + RESTART_NS, Event::Restart(node));
    }

    pub(super) fn fault_end(&mut self, i: usize) {
        let f = self.schedule[i].clone();
        let now = self.now.get();
        let node = f.node;
        match f.kind {
            Kind::Kill | Kind::CrashMidCommit => {}
            Kind::Pause => {
                if self.nodes[node].paused {
                    self.nodes[node].paused = false;
                    let name = self.nodes[node].name.clone();
                    self.note(format!("{name} resumes"));
                }
            }
            Kind::Partition | Kind::OneWay | Kind::SlowLink => {
                let due = self.net.heal_link(now, &mut self.rng, node, f.peer);
                for (at, to, d) in due {
                    self.at(at, Event::Deliver(to, d));
                }
            }
            Kind::EtcdCut => self.etcd_cut[node] = (false, false),
            Kind::EtcdStall => self.at(now, Event::EtcdResume),
            Kind::EtcdSlow => self.etcd_slow_ns = 0,
            Kind::SlowDisk => self.nodes[node].slow_disk = false,
            Kind::DiskFull => {
                self.disk_full[node] = false;
                self.nodes[node].clear_disk_faults();
            }
        }
    }

    /// Every fault ends.
    pub(super) fn heal(&mut self) {
        let now = self.now.get();
        self.note("heal: every fault ends".into());
        let due = self.net.heal(now, &mut self.rng);
        for (at, to, d) in due {
            self.at(at, Event::Deliver(to, d));
        }
        self.etcd_cut = vec![(false, false); self.nodes.len()];
        self.etcd_slow_ns = 0;
        self.etcd_resume();
        for id in 0..self.nodes.len() {
            self.disk_full[id] = false;
            self.nodes[id].clear_disk_faults();
            self.nodes[id].slow_disk = false;
            self.nodes[id].paused = false;
            if !self.nodes[id].up() {
                self.at(now, Event::Restart(id));
            }
        }
    }
}
