//! A SKU's waitlist: buyers queued FIFO for units that may come back from reservations.
//!
//! Each entry takes a ticket (1, 2, 3, … per SKU) and remembers how many units were queued
//! before it, so a buyer's position and the units ahead of them are O(1) subtractions
//! against the head, not a scan. Entries leave only from the head.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::ids::{ClientId, RequestId, Units, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct WaitEntry {
    pub client: ClientId,
    pub request: RequestId,
    pub user: UserId,
    pub qty: u32,
    pub ticket: u64,
    /// Units wanted by every entry ever queued before this one (a running total).
    pub units_before: Units,
    /// Its units count in the buyer's holdings (the SKU had a per-user limit when it joined).
    pub held: bool,
    /// The holdings stamp when it joined (see `Order::holdings_stamp`).
    pub holdings_stamp: u32,
}

#[derive(Clone, Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Waitlist {
    entries: VecDeque<WaitEntry>,
    next_ticket: u64,
    units_queued_total: Units,
    /// user → ticket; derived from `entries`, rebuilt after a restore.
    #[rkyv(with = rkyv::with::Skip)]
    by_user: FxHashMap<UserId, u64>,
}

/// A buyer joining a waitlist.
#[derive(Clone, Copy, Debug)]
pub struct Joining {
    pub client: ClientId,
    pub request: RequestId,
    pub user: UserId,
    pub qty: u32,
    pub held: bool,
    pub holdings_stamp: u32,
}

/// Where a buyer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub position: u32,
    pub units_ahead: Units,
    pub qty: u32,
}

impl Waitlist {
    pub fn len(&self) -> u32 {
        self.entries.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, user: UserId) -> bool {
        self.by_user.contains_key(&user)
    }

    pub fn front(&self) -> Option<&WaitEntry> {
        self.entries.front()
    }

    /// Queue a buyer at the tail; the caller has checked the bounds and `contains`.
    pub fn push(&mut self, joining: Joining) -> Place {
        let Joining {
            client,
            request,
            user,
            qty,
            held,
            holdings_stamp,
        } = joining;
        assert!(!self.contains(user), "a user is queued once per SKU");
        let entry = WaitEntry {
            client,
            request,
            user,
            qty,
            ticket: self.next_ticket + 1,
            units_before: self.units_queued_total,
            held,
            holdings_stamp,
        };
        self.next_ticket += 1;
        self.units_queued_total += Units::from(qty);
        self.by_user.insert(user, entry.ticket);
        self.entries.push_back(entry);
        self.place(user).expect("just queued")
    }

    pub fn pop_front(&mut self) -> Option<WaitEntry> {
        let entry = self.entries.pop_front()?;
        let removed = self.by_user.remove(&entry.user);
        debug_assert_eq!(removed, Some(entry.ticket));
        Some(entry)
    }

    pub fn place(&self, user: UserId) -> Option<Place> {
        let ticket = *self.by_user.get(&user)?;
        let head = self.entries.front().expect("indexed user is queued");
        let index = (ticket - head.ticket) as usize;
        let entry = &self.entries[index];
        debug_assert_eq!(entry.user, user);
        Some(Place {
            position: index as u32 + 1,
            units_ahead: entry.units_before - head.units_before,
            qty: entry.qty,
        })
    }

    pub fn entries(&self) -> impl Iterator<Item = &WaitEntry> {
        self.entries.iter()
    }

    /// Rebuild the user index after a restore, and check the entries are consistent.
    pub fn rebuild_index(&mut self) -> Result<(), &'static str> {
        self.by_user.clear();
        let mut expected: Option<(u64, Units)> = None;
        for entry in &self.entries {
            if let Some((ticket, units_before)) = expected {
                if entry.ticket != ticket || entry.units_before != units_before {
                    return Err("waitlist tickets are not contiguous");
                }
            }
            expected = Some((
                entry.ticket + 1,
                entry.units_before + Units::from(entry.qty),
            ));
            if self.by_user.insert(entry.user, entry.ticket).is_some() {
                return Err("a user is queued twice on one waitlist");
            }
        }
        if let Some((ticket, units)) = expected {
            if ticket != self.next_ticket + 1 || units != self.units_queued_total {
                return Err("waitlist counters disagree with its entries");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(list: &mut Waitlist, user: u64, qty: u32) -> Place {
        list.push(Joining {
            client: ClientId(1),
            request: RequestId(user),
            user: UserId(user),
            qty,
            held: false,
            holdings_stamp: 0,
        })
    }

    #[test]
    fn positions_follow_the_head() {
        let mut list = Waitlist::default();
        assert_eq!(push(&mut list, 10, 2).position, 1);
        let p = push(&mut list, 11, 1);
        assert_eq!((p.position, p.units_ahead), (2, 2));
        let p = push(&mut list, 12, 3);
        assert_eq!((p.position, p.units_ahead), (3, 3));
        assert_eq!(list.pop_front().unwrap().user, UserId(10));
        let p = list.place(UserId(12)).unwrap();
        assert_eq!((p.position, p.units_ahead, p.qty), (2, 1, 3));
        assert!(list.place(UserId(10)).is_none());
        assert!(list.rebuild_index().is_ok());
        assert_eq!(list.place(UserId(11)).unwrap().position, 1);
    }
}
