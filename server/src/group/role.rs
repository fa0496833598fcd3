//! What this node is in a replicated pair, and how it may change. `transition` is the whole
//! rule, as a pure function: a standby is asked to promote (promoting), finishes (primary)
//! or fails (standby again); a primary that learns of a newer epoch is fenced; a fenced node
//! stays fenced until it restarts as a standby. `RoleCell` holds the current role for every
//! thread to read, and changes it only through `transition`.

use std::sync::atomic::{AtomicU8, Ordering::SeqCst};

use engine::Code;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary = 1,
    Standby = 2,
    /// A primary that learned of a newer epoch: it answers queries, refuses writes.
    Fenced = 3,
    /// A standby asked to promote, publishing what it received before it numbers its own.
    Promoting = 4,
}

/// What can happen to a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleEvent {
    /// An admin call (or automatic failover) asks this node to become the primary.
    PromotionAsked,
    /// Everything received is sequenced and the new epoch is stored.
    PromotionDone,
    /// The new epoch could not be stored: the node stays a standby.
    PromotionFailed,
    /// Another node is at a newer epoch.
    NewerEpochSeen,
}

impl Role {
    fn from_u8(v: u8) -> Role {
        match v {
            1 => Role::Primary,
            2 => Role::Standby,
            4 => Role::Promoting,
            _ => Role::Fenced,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
            Role::Fenced => "fenced",
            Role::Promoting => "promoting",
        }
    }

    /// The code a write is refused with in this role (`None`: the primary takes it, unless
    /// replication halts it).
    pub fn write_refusal(self) -> Option<Code> {
        match self {
            Role::Primary => None,
            Role::Standby | Role::Promoting => Some(Code::NotPrimary),
            Role::Fenced => Some(Code::Fenced),
        }
    }

    /// Whether this role receives its commands from a primary (and so inserts no Ticks and
    /// pushes no events of its own).
    pub fn follows(self) -> bool {
        matches!(self, Role::Standby | Role::Promoting)
    }
}

/// The role after `event`, or `None` if the event does not apply to `role` (refused).
pub fn transition(role: Role, event: RoleEvent) -> Option<Role> {
    use Role::*;
    use RoleEvent::*;
    match (role, event) {
        (Standby, PromotionAsked) => Some(Promoting),
        (Promoting, PromotionDone) => Some(Primary),
        (Promoting, PromotionFailed) => Some(Standby),
        (Primary, NewerEpochSeen) => Some(Fenced),
        // A standby or a promoting node merely learns the epoch; a fenced one stays fenced.
        (Standby | Promoting | Fenced, NewerEpochSeen) => Some(role),
        _ => None,
    }
}

/// The current role, shared by every thread.
#[derive(Debug)]
pub struct RoleCell(AtomicU8);

impl RoleCell {
    pub fn new(role: Role) -> RoleCell {
        RoleCell(AtomicU8::new(role as u8))
    }

    pub fn get(&self) -> Role {
        Role::from_u8(self.0.load(SeqCst))
    }

    /// Apply `event`; the role before and after, or `Err(role)` if it does not apply.
    pub fn apply(&self, event: RoleEvent) -> Result<(Role, Role), Role> {
        let mut current = self.0.load(SeqCst);
        loop {
            let from = Role::from_u8(current);
            let to = transition(from, event).ok_or(from)?;
            match self.0.compare_exchange(current, to as u8, SeqCst, SeqCst) {
                Ok(_) => return Ok((from, to)),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Role::*;
    use super::RoleEvent::*;
    use super::*;

    #[test]
    fn every_role_and_event() {
        let table = [
            (Standby, PromotionAsked, Some(Promoting)),
            (Standby, PromotionDone, None),
            (Standby, PromotionFailed, None),
            (Standby, NewerEpochSeen, Some(Standby)),
            (Promoting, PromotionAsked, None),
            (Promoting, PromotionDone, Some(Primary)),
            (Promoting, PromotionFailed, Some(Standby)),
            (Promoting, NewerEpochSeen, Some(Promoting)),
            (Primary, PromotionAsked, None),
            (Primary, PromotionDone, None),
            (Primary, PromotionFailed, None),
            (Primary, NewerEpochSeen, Some(Fenced)),
            (Fenced, PromotionAsked, None),
            (Fenced, PromotionDone, None),
            (Fenced, PromotionFailed, None),
            (Fenced, NewerEpochSeen, Some(Fenced)),
        ];
        for (from, event, to) in table {
            assert_eq!(transition(from, event), to, "{from:?} + {event:?}");
        }
    }

    #[test]
    fn writes_are_taken_by_the_primary_alone() {
        assert_eq!(Primary.write_refusal(), None);
        assert_eq!(Standby.write_refusal(), Some(Code::NotPrimary));
        assert_eq!(Promoting.write_refusal(), Some(Code::NotPrimary));
        assert_eq!(Fenced.write_refusal(), Some(Code::Fenced));
    }

    #[test]
    fn the_cell_moves_only_by_the_rule() {
        let cell = RoleCell::new(Standby);
        assert_eq!(cell.apply(PromotionDone), Err(Standby));
        assert_eq!(cell.apply(PromotionAsked), Ok((Standby, Promoting)));
        assert_eq!(cell.apply(PromotionAsked), Err(Promoting));
        assert_eq!(cell.apply(PromotionDone), Ok((Promoting, Primary)));
        assert_eq!(cell.apply(NewerEpochSeen), Ok((Primary, Fenced)));
        assert_eq!(cell.get(), Fenced);
        assert_eq!(cell.apply(PromotionAsked), Err(Fenced));
    }
}
