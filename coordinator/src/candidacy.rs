//! Who may campaign for the leader key: only a node that holds every write the last term
//! acknowledged (docs/REPLICATION.md, *Several standbys*).
//!
//! The last term's primary keeps `{prefix}/sync` naming the standbys whose acks count
//! (`SyncRecord`: the members, and `needed`, the k of "acked by k of them"). It names a
//! standby before counting its acks and stops counting them before un-naming it, and it
//! un-names one only once the others hold everything released. So every acknowledged write
//! is on at least k of the members named. Once the leader key is gone, each member
//! publishes how far it got (`{prefix}/position/{name}`, `PositionRecord`, under its own
//! lease). Past its lease deadline a primary with more than one member releases nothing
//! more, so positions published after the key is gone are at or past everything
//! acknowledged by the k that hold it.
//!
//! A member campaigns once n − k + 1 members (itself among them) have published and none is
//! further than itself: any k members include one of those n − k + 1, so one that published
//! holds each acknowledged write, and the candidate is at least as far. With k = n every
//! member holds everything, so none needs to wait for the others' positions.

/// `{prefix}/sync`: the standbys whose acks count in `epoch`, and how many must ack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRecord {
    pub epoch: u64,
    pub needed: usize,
    /// Empty: the primary acknowledges alone (no standby in sync), so only it may lead next.
    pub members: Vec<String>,
}

impl SyncRecord {
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "epoch={} needed={} members={}",
            self.epoch,
            self.needed,
            self.members.join(",")
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<SyncRecord> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (mut epoch, mut needed, mut members) = (None, None, None);
        for field in text.split_whitespace() {
            match field.split_once('=')? {
                ("epoch", v) => epoch = v.parse().ok(),
                ("needed", v) => needed = v.parse().ok(),
                ("members", v) => {
                    members = Some(
                        v.split(',')
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                            .collect(),
                    )
                }
                _ => {}
            }
        }
        // `members=` with nothing after it splits as a field with an empty value.
        let members = members.unwrap_or_default();
        Some(SyncRecord {
            epoch: epoch?,
            needed: needed?,
            members,
        })
    }
}

/// `{prefix}/position/{name}`: how far a standby got in the term of `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionRecord {
    pub epoch: u64,
    pub seq: u64,
}

impl PositionRecord {
    pub fn encode(&self) -> Vec<u8> {
        format!("epoch={} seq={}", self.epoch, self.seq).into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<PositionRecord> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (mut epoch, mut seq) = (None, None);
        for field in text.split_whitespace() {
            match field.split_once('=')? {
                ("epoch", v) => epoch = v.parse().ok(),
                ("seq", v) => seq = v.parse().ok(),
                _ => {}
            }
        }
        Some(PositionRecord {
            epoch: epoch?,
            seq: seq?,
        })
    }
}

/// What a node asking to campaign knows.
pub struct Candidate<'a> {
    pub name: &'a str,
    /// The last term: its leader and epoch (`{prefix}/epoch`); `None` before the first.
    pub last_leader: Option<(&'a str, u64)>,
    pub sync: Option<&'a SyncRecord>,
    /// How far this node got, if it runs (a node still starting does not know yet).
    pub own_seq: Option<u64>,
    /// The positions published for the last term's members: (name, record).
    pub positions: &'a [(String, PositionRecord)],
}

/// Whether the candidate may campaign now; `Err`: why not (it may lack acknowledged
/// writes, or must wait for the other members' positions).
pub fn may_campaign(c: &Candidate) -> Result<(), String> {
    // No term yet: anyone.
    let Some((leader, epoch)) = c.last_leader else {
        return Ok(());
    };
    // A primary holds everything it acknowledged.
    if leader == c.name {
        return Ok(());
    }
    let sync = match c.sync {
        Some(sync) if sync.epoch == epoch && !sync.members.is_empty() => sync,
        _ => {
            return Err(format!(
                "no standby is in sync for epoch {epoch} (its primary {leader} acknowledged \
                 alone, or the ack mode is async): only {leader} holds every acknowledged write"
            ))
        }
    };
    if !sync.members.iter().any(|m| m == c.name) {
        return Err(format!(
            "{} are the standbys in sync for epoch {epoch}, not this node",
            sync.members.join(", ")
        ));
    }
    let n = sync.members.len();
    let k = sync.needed.clamp(1, n);
    if k == n {
        return Ok(()); // every member holds every acknowledged write
    }
    let Some(own) = c.own_seq else {
        return Err(format!(
            "with {k} of {n} standbys in sync, a member campaigns only once it runs and has \
             compared positions"
        ));
    };
    let published: Vec<u64> = c
        .positions
        .iter()
        .filter(|(name, p)| p.epoch == epoch && sync.members.contains(name))
        .map(|(_, p)| p.seq)
        .collect();
    let wanted = n - k + 1;
    if published.len() < wanted {
        return Err(format!(
            "{} of the {n} standbys in sync for epoch {epoch} published their positions; {wanted} \
             must (with {k} of {n} acking, one of any {wanted} holds each acknowledged write)",
            published.len()
        ));
    }
    match published.iter().max() {
        Some(&furthest) if furthest > own => Err(format!(
            "another standby in sync got to sequence {furthest}, past this node's {own}"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync(epoch: u64, needed: usize, members: &[&str]) -> SyncRecord {
        SyncRecord {
            epoch,
            needed,
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn pos(name: &str, epoch: u64, seq: u64) -> (String, PositionRecord) {
        (name.into(), PositionRecord { epoch, seq })
    }

    fn ask(
        name: &str,
        sync: Option<&SyncRecord>,
        own: Option<u64>,
        positions: &[(String, PositionRecord)],
    ) -> Result<(), String> {
        may_campaign(&Candidate {
            name,
            last_leader: Some(("a", 3)),
            sync,
            own_seq: own,
            positions,
        })
    }

    #[test]
    fn records_round_trip() {
        for r in [sync(3, 1, &["b", "c"]), sync(4, 1, &[])] {
            assert_eq!(SyncRecord::decode(&r.encode()), Some(r));
        }
        let p = PositionRecord { epoch: 3, seq: 99 };
        assert_eq!(PositionRecord::decode(&p.encode()), Some(p));
    }

    #[test]
    fn one_standby_in_sync_as_before() {
        let first = Candidate {
            name: "b",
            last_leader: None,
            sync: None,
            own_seq: None,
            positions: &[],
        };
        assert_eq!(may_campaign(&first), Ok(()), "the first term: anyone");
        assert_eq!(
            may_campaign(&Candidate {
                name: "a",
                last_leader: Some(("a", 3)),
                ..first
            }),
            Ok(()),
            "the last leader"
        );
        assert_eq!(ask("b", Some(&sync(3, 1, &["b"])), None, &[]), Ok(()));
        assert!(ask("b", Some(&sync(3, 1, &[])), Some(9), &[]).is_err());
        assert!(ask("b", Some(&sync(3, 1, &["c"])), Some(9), &[]).is_err());
        assert!(ask("b", Some(&sync(2, 1, &["b"])), Some(9), &[]).is_err());
        assert!(ask("b", None, Some(9), &[]).is_err());
    }

    #[test]
    fn with_one_of_two_the_furthest_wins_once_both_published() {
        let s = sync(3, 1, &["b", "c"]);
        // c alone published: b may lack what only c acked.
        assert!(ask("b", Some(&s), Some(10), &[pos("b", 3, 10)]).is_err());
        // Both: only the furthest.
        let both = [pos("b", 3, 10), pos("c", 3, 12)];
        assert!(ask("b", Some(&s), Some(10), &both).is_err());
        assert_eq!(ask("c", Some(&s), Some(12), &both), Ok(()));
        // A position of an older term does not count.
        assert!(ask("b", Some(&s), Some(10), &[pos("b", 3, 10), pos("c", 2, 1)]).is_err());
        // Not running yet: cannot compare.
        assert!(ask("c", Some(&s), None, &both).is_err());
        // A DR standby outside the members never campaigns.
        assert!(ask("dr", Some(&s), Some(99), &both).is_err());
    }

    #[test]
    fn with_two_of_three_any_two_positions_decide() {
        let s = sync(3, 2, &["b", "c", "d"]);
        assert!(ask("b", Some(&s), Some(10), &[pos("b", 3, 10)]).is_err());
        assert_eq!(
            ask("b", Some(&s), Some(10), &[pos("b", 3, 10), pos("d", 3, 8)]),
            Ok(())
        );
        // Everyone must ack: no positions needed.
        assert_eq!(
            ask("c", Some(&sync(3, 3, &["b", "c", "d"])), None, &[]),
            Ok(())
        );
    }
}
