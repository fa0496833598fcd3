//! The coordinator's campaigns: who leads at a join, what a standby does when the leader key
//! is gone (or names another term), and the campaign itself: gather the last term, the sync
//! record and the members' positions, ask `coordinator::candidacy`, and take the key with the
//! epoch counter in one transaction.

use ::coordinator::call::Call;
use ::coordinator::lease::{next_epoch, Deadline};
use ::coordinator::{may_campaign, Candidate, EtcdError, Kv, LeaderRecord, SyncRecord};

use super::{Action, CampaignFor, Coordinator, Gathered, Joined, Phase, Purpose, View};

impl Coordinator {
    pub(super) fn on_join_leader(&mut self, now_ns: u64, held: Option<Kv>, out: &mut Vec<Action>) {
        let Some(held) = held else {
            self.campaign(now_ns, CampaignFor::Join, out);
            return;
        };
        let Some(leader) = LeaderRecord::decode(&held.value) else {
            let why = format!(
                "{} holds {:?}, not a leader record",
                self.settings.keys.leader,
                String::from_utf8_lossy(&held.value)
            );
            self.complain(now_ns, EtcdError::Refused(why), out);
            return;
        };
        if leader.node == self.settings.name && Some(held.lease) == self.lease {
            // Our own campaign won, its answer lost on the way (a timeout, then a retry that
            // found the key taken): the term is ours.
            self.won(now_ns, CampaignFor::Join, leader.epoch, out);
            return;
        }
        if leader.node == self.settings.name {
            return; // this node's previous life still holds the key: wait for it to expire
        }
        let key = format!("{}{}", self.settings.keys.nodes, leader.node);
        self.call(out, Call::Get { key }, Purpose::JoinNode { leader });
    }

    pub(super) fn on_watch(
        &mut self,
        now_ns: u64,
        held: Option<Kv>,
        view: &View,
        out: &mut Vec<Action>,
    ) {
        let Some(held) = held else {
            let streams = view.running.as_ref().is_some_and(|r| r.primary_streams);
            let since = *self.key_gone_ns.get_or_insert(now_ns);
            let grace = self.settings.ttl.as_nanos() as u64;
            if streams && now_ns < since + grace {
                self.withhold(
                    out,
                    "the primary still streams: it may take the leader key back (its lease \
                     expired in etcd, which was stalled or out of its reach); this node \
                     campaigns if it has not within a lease's TTL"
                        .into(),
                );
                return;
            }
            self.campaign(now_ns, CampaignFor::Standby, out);
            return;
        };
        self.key_gone_ns = None;
        let leader = LeaderRecord::decode(&held.value);
        match leader {
            Some(r) if r.node == self.settings.name && Some(held.lease) == self.lease => {
                // Our own campaign won, its answer lost on the way: the term is ours.
                self.won(now_ns, CampaignFor::Standby, r.epoch, out);
            }
            Some(r) => {
                let following = self.following.as_ref().map(|(term, _)| term.clone());
                if following.as_ref() == Some(&r) {
                    return;
                }
                if following.as_ref().is_some_and(|f| f.node == r.node) {
                    // The same node at a new term: is it where this node follows?
                    let key = format!("{}{}", self.settings.keys.nodes, r.node);
                    self.call(out, Call::Get { key }, Purpose::WatchNode { leader: r });
                    return;
                }
                // A new term of another node while this one followed the old: follow it.
                self.lost(out, &format!("{r:?} leads now; rejoining it"));
            }
            None => {}
        }
    }

    pub(super) fn campaign(&mut self, _now_ns: u64, why: CampaignFor, out: &mut Vec<Action>) {
        let key = self.settings.keys.epoch.clone();
        self.call(out, Call::Get { key }, Purpose::CampaignCounter(why));
    }

    /// May this node campaign, from what was gathered? If so, the transaction.
    pub(super) fn decide(&mut self, _now_ns: u64, g: Gathered, view: &View, out: &mut Vec<Action>) {
        let term = g
            .counter
            .as_ref()
            .and_then(|kv| LeaderRecord::decode(&kv.value));
        let asked = may_campaign(&Candidate {
            name: &self.settings.name,
            last_leader: term.as_ref().map(|t| (t.node.as_str(), t.epoch)),
            sync: g.sync.as_ref(),
            own_seq: g.own,
            positions: &g.positions,
        });
        if let Err(why) = asked {
            if g.why == CampaignFor::Reelect {
                // Another term began while this primary's lease was gone: it was replaced.
                self.lost(
                    out,
                    &format!("its lease was gone and it may not lead again: {why}"),
                );
            } else {
                self.withhold(out, why);
            }
            return;
        }
        let local_epoch = match &view.running {
            Some(r) => r.epoch,
            None => view.local_epoch,
        };
        let epoch = next_epoch(term.as_ref().map(|t| t.epoch), local_epoch);
        let record = LeaderRecord {
            node: self.settings.name.clone(),
            epoch,
        };
        // A new term starts with no standby in sync: the new primary may serve alone.
        let no_sync = SyncRecord {
            epoch,
            needed: self.settings.needed,
            members: Vec::new(),
        };
        let keys = &self.settings.keys;
        let call = Call::Campaign {
            leader_key: keys.leader.clone(),
            leader_value: record.encode(),
            lease: self.lease.unwrap_or(0),
            epoch_key: keys.epoch.clone(),
            epoch_seen: g.counter.clone(),
            epoch_value: record.encode(),
            also: vec![(keys.sync.clone(), no_sync.encode())],
        };
        self.call(out, call, Purpose::CampaignTxn { gathered: g, epoch });
    }

    pub(super) fn withhold(&mut self, out: &mut Vec<Action>, why: String) {
        if self.withheld.as_deref() != Some(why.as_str()) {
            out.push(Action::Withheld(why.clone()));
            self.withheld = Some(why);
        }
    }

    pub(super) fn won(
        &mut self,
        _now_ns: u64,
        why: CampaignFor,
        epoch: u64,
        out: &mut Vec<Action>,
    ) {
        self.leading = true;
        self.sync_written = Some(Vec::new());
        self.sync_target = None;
        self.withheld = None;
        self.key_gone_ns = None;
        out.push(Action::Leading(true));
        match why {
            CampaignFor::Join => {
                self.phase = Phase::Joined;
                out.push(Action::Joined(Joined::Lead { epoch }));
            }
            CampaignFor::Standby => out.push(Action::Promote { epoch }),
            CampaignFor::Reelect => {
                // The new lease, granted at `lease_sent_ns`, holds the key now.
                self.deadline = Deadline::after_renewal(
                    self.lease_sent_ns,
                    self.settings.ttl,
                    self.settings.margin,
                );
                out.push(Action::Promote { epoch });
                out.push(Action::Deadline(self.deadline));
            }
        }
    }
}
