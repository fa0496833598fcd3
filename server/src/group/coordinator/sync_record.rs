//! Which standbys a primary names in `{prefix}/sync` (`coordinator::SyncRecord`), so that
//! every acknowledged write is on `needed` of those named (`coordinator::candidacy` relies on
//! it). A pure function of what the primary sees of its standbys:
//!
//! - a standby in a synchronous mode that attaches is named at once while others are named
//!   (what was acknowledged is on `needed` of them already); with none named (the primary
//!   acknowledged alone), only once `needed` of them acked past what it did alone;
//! - its acks count only after it is named (the caller counts it once the record is written);
//! - a named standby that is gone stops counting, and is un-named once the others hold
//!   everything released; with fewer left than `needed`, `degrade` (or a fresh promotion)
//!   clears the record (then, and only then, the primary acknowledges alone) and `halt`
//!   keeps it.

use replicator::standbys::{DETACHED, STREAMING};

/// One slot of the standbys' table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotView {
    pub name: String,
    /// Its ack mode may hold writes back (`received` or `durable`).
    pub synchronous: bool,
    pub state: u8,
    /// What it acked, as its mode counts.
    pub acked: u64,
    /// Its acks count now (named, and synchronous).
    pub counts: bool,
}

pub struct SyncInputs<'a> {
    /// The members this primary last wrote (`None`: not known yet).
    pub written: Option<&'a [String]>,
    /// With none named: the durable sequence when enough were first seen streaming.
    pub target: Option<u64>,
    pub needed: usize,
    /// A standby in a synchronous mode may hold writes back.
    pub synchronous: bool,
    /// `degrade`, or a fresh promotion: the primary may acknowledge alone.
    pub may_ack_alone: bool,
    /// Fewer counting standbys attached than `needed`.
    pub standby_detached: bool,
    pub slots: &'a [SlotView],
    pub durable: u64,
    /// What the gate released so far.
    pub released: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncDecision {
    pub members: Vec<String>,
    pub target: Option<u64>,
    /// Slots to stop counting now, before the record is written.
    pub uncount: Vec<usize>,
}

pub fn decide(i: &SyncInputs) -> SyncDecision {
    let k = i.needed;
    let mut members: Vec<String> = i.written.unwrap_or_default().to_vec();
    let mut target = i.target;
    let mut uncount = Vec::new();
    let synchronous_attached: Vec<(usize, &SlotView)> = i
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.synchronous && s.state != DETACHED)
        .collect();
    if !i.synchronous {
        members.clear();
    } else if members.is_empty() {
        let streaming: Vec<&SlotView> = synchronous_attached
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| s.state == STREAMING)
            .collect();
        if streaming.len() < k {
            target = None;
        } else {
            // Streaming means past the catch-up, not past what this node acknowledged
            // alone: wait for their acks to pass that point.
            let at = *target.get_or_insert(i.durable);
            let caught_up: Vec<String> = streaming
                .iter()
                .filter(|s| s.acked >= at)
                .map(|s| s.name.clone())
                .collect();
            if caught_up.len() >= k {
                members = caught_up;
            }
        }
    } else {
        for (_, s) in &synchronous_attached {
            if !members.contains(&s.name) {
                members.push(s.name.clone());
            }
        }
        let gone: Vec<String> = members
            .iter()
            .filter(|m| !synchronous_attached.iter().any(|(_, s)| &s.name == *m))
            .cloned()
            .collect();
        for m in gone {
            let slot = i.slots.iter().position(|s| s.name == m);
            let others_hold_all = members.len() > k
                && acked_by_without(i.slots, k, slot.unwrap_or(usize::MAX)) >= i.released;
            if others_hold_all {
                uncount.extend(slot);
                members.retain(|name| name != &m);
            } else if members.len() - 1 < k && i.may_ack_alone && i.standby_detached {
                members.clear();
                break;
            }
        }
    }
    if members.is_empty() {
        uncount = (0..i.slots.len()).collect();
    }
    SyncDecision {
        members,
        target,
        uncount,
    }
}

/// The `k`-th highest ack of the counting slots but `without`: 0 with fewer than `k`.
fn acked_by_without(slots: &[SlotView], k: usize, without: usize) -> u64 {
    let mut acked: Vec<u64> = slots
        .iter()
        .enumerate()
        .filter(|&(i, s)| i != without && s.counts)
        .map(|(_, s)| s.acked)
        .collect();
    if acked.len() < k || k == 0 {
        return 0;
    }
    acked.sort_unstable_by(|a, b| b.cmp(a));
    acked[k - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use replicator::standbys::CATCHING_UP;

    fn slot(name: &str, state: u8, acked: u64, counts: bool) -> SlotView {
        SlotView {
            name: name.into(),
            synchronous: true,
            state,
            acked,
            counts,
        }
    }

    fn inputs<'a>(written: &'a [String], slots: &'a [SlotView]) -> SyncInputs<'a> {
        SyncInputs {
            written: Some(written),
            target: None,
            needed: 1,
            synchronous: true,
            may_ack_alone: false,
            standby_detached: false,
            slots,
            durable: 100,
            released: 100,
        }
    }

    #[test]
    fn with_none_named_a_standby_is_named_once_it_acked_past_what_was_acknowledged_alone() {
        let slots = [slot("b", STREAMING, 90, false)];
        let d = decide(&inputs(&[], &slots));
        assert_eq!((d.members.len(), d.target), (0, Some(100)));
        let slots = [slot("b", STREAMING, 100, false)];
        let mut i = inputs(&[], &slots);
        i.target = d.target;
        assert_eq!(decide(&i).members, vec!["b".to_string()]);
        // Attached but catching up is not enough.
        let slots = [slot("b", CATCHING_UP, 100, false)];
        assert_eq!(decide(&inputs(&[], &slots)).target, None);
    }

    #[test]
    fn a_gone_member_is_unnamed_only_once_the_others_hold_everything_released() {
        let written = ["b".to_string(), "c".to_string()];
        let slots = [
            slot("b", DETACHED, 100, true),
            slot("c", STREAMING, 100, true),
        ];
        let d = decide(&inputs(&written, &slots));
        assert_eq!(d.members, vec!["c".to_string()]);
        assert_eq!(d.uncount, vec![0]);
        let slots = [
            slot("b", DETACHED, 100, true),
            slot("c", STREAMING, 90, true),
        ];
        let d = decide(&inputs(&written, &slots));
        assert_eq!(d.members, written.to_vec(), "c lacks what was released");
        // The last one gone: halt keeps it named; degrade clears the record.
        let written = ["b".to_string()];
        let slots = [slot("b", DETACHED, 100, true)];
        assert_eq!(decide(&inputs(&written, &slots)).members, written.to_vec());
        let mut i = inputs(&written, &slots);
        i.may_ack_alone = true;
        i.standby_detached = true;
        let d = decide(&i);
        assert!(d.members.is_empty());
        assert_eq!(d.uncount, vec![0]);
    }
}
