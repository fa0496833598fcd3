//! The coordinator machine's answers: what each of etcd's answers means, given the call it
//! answers (`Purpose`), and what the machine asks for next.

use std::net::SocketAddr;
use std::time::Duration;

use coordinator::call::{Answer, Call};
use coordinator::lease::Deadline;
use coordinator::{EtcdError, LeaderRecord, NodeRecord, PositionRecord, SyncRecord};

use super::{Action, CampaignFor, Coordinator, Gathered, Joined, Phase, Purpose, View};

impl Coordinator {
    pub(super) fn on_answer(
        &mut self,
        now_ns: u64,
        purpose: Purpose,
        answer: Result<Answer, EtcdError>,
        view: &View,
        out: &mut Vec<Action>,
    ) {
        let answer = match answer {
            Ok(answer) => {
                out.push(Action::Reachable(true));
                answer
            }
            Err(e) => {
                out.push(Action::Reachable(false));
                self.complain(now_ns, e, out);
                return; // the round ends; the next one starts over
            }
        };
        match (purpose, answer) {
            (Purpose::Grant { sent_ns, reelect }, Answer::Lease(id)) => {
                self.lease = Some(id);
                self.lease_sent_ns = sent_ns;
                self.registered = false;
                if self.phase == Phase::Connecting {
                    self.phase = Phase::Connected;
                    out.push(Action::Connected);
                }
                if reelect {
                    self.campaign(now_ns, CampaignFor::Reelect, out);
                } else {
                    self.duties(now_ns, view, out);
                }
            }
            (Purpose::KeepAlive { sent_ns }, Answer::Ttl(Some(ttl_secs))) => {
                // etcd restarted the lease's count after it got the call, sent at `sent_ns`.
                let ttl = Duration::from_secs(ttl_secs);
                self.deadline = Deadline::after_renewal(sent_ns, ttl, self.settings.margin);
                self.lease_sent_ns = sent_ns;
                out.push(Action::Deadline(self.deadline));
                self.duties(now_ns, view, out);
            }
            (Purpose::KeepAlive { .. }, Answer::Ttl(None)) => self.lease_gone(now_ns, view, out),
            (Purpose::PublishNode, _) => {
                self.registered = true;
                self.duties(now_ns, view, out);
            }
            (Purpose::JoinLeader, Answer::Value(held)) => self.on_join_leader(now_ns, held, out),
            (Purpose::JoinNode { leader }, Answer::Value(record)) => {
                let replication = record
                    .as_ref()
                    .and_then(|kv| NodeRecord::decode(&kv.value))
                    .and_then(|n| n.replication?.parse().ok());
                if let Some(replication) = replication {
                    self.following = Some((leader.clone(), replication));
                    self.phase = Phase::Joined;
                    out.push(Action::Joined(Joined::Follow {
                        leader: leader.node,
                        replication,
                    }));
                } // else: elected, not registered yet: the next round looks again
            }
            (Purpose::SyncPut { members, epoch }, Answer::Succeeded(written)) => {
                if !written {
                    self.lost(out, "the leader key is not under this node's lease");
                    return;
                }
                self.sync_written = Some(members.clone());
                out.push(Action::SyncWritten { members, epoch });
                if let Some(running) = &view.running {
                    self.count_named(running, out);
                }
                self.leader_check(out);
            }
            (Purpose::LeaderCheck, Answer::Value(held)) => {
                let Some(running) = &view.running else {
                    return;
                };
                match held.as_ref().and_then(|kv| LeaderRecord::decode(&kv.value)) {
                    Some(r) if r.node == self.settings.name && r.epoch == running.epoch => {}
                    Some(other) => self.lost(out, &format!("the leader key says {other:?}")),
                    None if held.is_some() => self.lost(out, "the leader key is unreadable"),
                    None => self.lost(out, "the leader key is gone"),
                }
            }
            (Purpose::Watch, Answer::Value(held)) => self.on_watch(now_ns, held, view, out),
            (Purpose::WatchNode { leader }, Answer::Value(record)) => {
                let replication: Option<SocketAddr> = record
                    .as_ref()
                    .and_then(|kv| NodeRecord::decode(&kv.value))
                    .and_then(|n| n.replication?.parse().ok());
                match (&mut self.following, replication) {
                    // The primary it follows took the key again (its lease was lost): keep
                    // following it, at its new term.
                    (Some((term, at)), Some(replication)) if *at == replication => *term = leader,
                    (_, None) => {} // not registered yet: look again next round
                    _ => self.lost(
                        out,
                        &format!("{leader:?} leads now at other addresses; rejoining it"),
                    ),
                }
            }
            (Purpose::CampaignCounter(why), Answer::Value(counter)) => {
                let g = Gathered {
                    why,
                    counter,
                    sync: None,
                    own: None,
                    positions: Vec::new(),
                };
                let key = self.settings.keys.sync.clone();
                self.call(out, Call::Get { key }, Purpose::CampaignSync(g));
            }
            (Purpose::CampaignSync(mut g), Answer::Value(sync)) => {
                g.sync = sync.as_ref().and_then(|kv| SyncRecord::decode(&kv.value));
                let term = g
                    .counter
                    .as_ref()
                    .and_then(|kv| LeaderRecord::decode(&kv.value));
                let compares = match (&term, &g.sync) {
                    (Some(term), Some(s)) => {
                        s.epoch == term.epoch
                            && s.members.contains(&self.settings.name)
                            && s.needed < s.members.len()
                    }
                    _ => false,
                };
                let own = match g.why {
                    CampaignFor::Join => view.local_seq,
                    _ => view.running.as_ref().map(|r| r.received_seq),
                };
                match (compares, own, term) {
                    (true, Some(seq), Some(term)) => {
                        g.own = Some(seq);
                        let record = PositionRecord {
                            epoch: term.epoch,
                            seq,
                        };
                        let call = Call::Put {
                            key: format!("{}{}", self.settings.keys.positions, self.settings.name),
                            value: record.encode(),
                            lease: self.lease.unwrap_or(0),
                        };
                        self.call(out, call, Purpose::CampaignPosition(g));
                    }
                    _ => self.decide(now_ns, g, view, out),
                }
            }
            (Purpose::CampaignPosition(g), Answer::Done) => {
                let prefix = self.settings.keys.positions.clone();
                self.call(
                    out,
                    Call::GetPrefix { prefix },
                    Purpose::CampaignPositions(g),
                );
            }
            (Purpose::CampaignPositions(mut g), Answer::Values(kvs)) => {
                let prefix = &self.settings.keys.positions;
                g.positions = kvs
                    .into_iter()
                    .filter_map(|(key, kv)| {
                        let p = PositionRecord::decode(&kv.value)?;
                        Some((key.trim_start_matches(prefix.as_str()).to_string(), p))
                    })
                    .collect();
                self.decide(now_ns, g, view, out);
            }
            (Purpose::CampaignTxn { gathered, epoch }, Answer::Succeeded(won)) => {
                if won {
                    self.won(now_ns, gathered.why, epoch, out);
                } else if gathered.why == CampaignFor::Reelect {
                    self.lost(
                        out,
                        "another node took the leader key while this one's lease was gone",
                    );
                }
            }
            (Purpose::Revoke { lease }, _) => out.push(Action::Revoked(lease)),
            (purpose, answer) => self.complain(
                now_ns,
                EtcdError::Refused(format!("{answer:?} is no answer to {purpose:?}")),
                out,
            ),
        }
    }
}
