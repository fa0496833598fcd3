//! A model of etcd as surge uses it: keys with values and revisions, leases whose TTLs run in
//! simulated time, and the transactions `coordinator::Call` names (a campaign: the leader key
//! absent and the epoch counter unchanged; a put while a key is held under a lease). It
//! applies one call at a time, in the order the calls reach it: linearizable, as etcd is.
//! Stalls are the world's: calls that arrive during one wait, and when it ends the leases whose
//! TTL ran out meanwhile are revoked before any waiting call is applied (a stopped etcd leader
//! resumes with their expiry long past). Its history of leader keys is kept for the checker.

use std::collections::BTreeMap;

use coordinator::call::{Answer, Call};
use coordinator::{EtcdError, Kv};

#[derive(Clone, Debug)]
struct Lease {
    ttl_secs: u64,
    expires_ns: u64,
}

#[derive(Default)]
pub struct EtcdModel {
    revision: i64,
    keys: BTreeMap<String, Kv>,
    leases: BTreeMap<i64, Lease>,
    next_lease: i64,
    /// Every value the key `watched` took: (time, value or `None` when deleted).
    pub watched: Option<String>,
    pub watched_history: Vec<(u64, Option<Vec<u8>>)>,
}

impl EtcdModel {
    pub fn new(watched: &str) -> EtcdModel {
        EtcdModel {
            next_lease: 0x7a00,
            watched: Some(watched.to_string()),
            ..EtcdModel::default()
        }
    }

    /// Revoke every lease whose TTL ran out by `now_ns`, and the keys attached to it.
    pub fn expire(&mut self, now_ns: u64) {
        let gone: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires_ns <= now_ns)
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.revoke(now_ns, id);
        }
    }

    /// When the next lease runs out, if any lives.
    pub fn next_expiry_ns(&self) -> Option<u64> {
        self.leases.values().map(|l| l.expires_ns).min()
    }

    fn revoke(&mut self, now_ns: u64, id: i64) -> bool {
        if self.leases.remove(&id).is_none() {
            return false;
        }
        let keys: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, kv)| kv.lease == id)
            .map(|(k, _)| k.clone())
            .collect();
        if !keys.is_empty() {
            self.revision += 1;
        }
        for key in keys {
            self.keys.remove(&key);
            self.note(now_ns, &key, None);
        }
        true
    }

    fn note(&mut self, now_ns: u64, key: &str, value: Option<Vec<u8>>) {
        if self.watched.as_deref() == Some(key) {
            self.watched_history.push((now_ns, value));
        }
    }

    fn put(&mut self, now_ns: u64, key: &str, value: &[u8], lease: i64) {
        let create_revision = self
            .keys
            .get(key)
            .map_or(self.revision, |kv| kv.create_revision);
        self.keys.insert(
            key.to_string(),
            Kv {
                value: value.to_vec(),
                create_revision,
                mod_revision: self.revision,
                lease,
            },
        );
        self.note(now_ns, key, Some(value.to_vec()));
    }

    fn lease_missing(&self, lease: i64) -> Option<EtcdError> {
        (lease != 0 && !self.leases.contains_key(&lease)).then(|| {
            EtcdError::Refused(format!("etcdserver: requested lease not found ({lease:x})"))
        })
    }

    pub fn get(&self, key: &str) -> Option<&Kv> {
        self.keys.get(key)
    }

    /// Apply `call` at `now_ns` (leases expired first).
    pub fn apply(&mut self, now_ns: u64, call: &Call) -> Result<Answer, EtcdError> {
        self.expire(now_ns);
        Ok(match call {
            Call::Grant { ttl_secs } => {
                self.next_lease += 1;
                let id = self.next_lease;
                let ttl_secs = (*ttl_secs).max(1);
                self.leases.insert(
                    id,
                    Lease {
                        ttl_secs,
                        expires_ns: now_ns + ttl_secs * 1_000_000_000,
                    },
                );
                Answer::Lease(id)
            }
            Call::KeepAlive { lease } => match self.leases.get_mut(lease) {
                Some(l) => {
                    l.expires_ns = now_ns + l.ttl_secs * 1_000_000_000;
                    Answer::Ttl(Some(l.ttl_secs))
                }
                None => Answer::Ttl(None),
            },
            Call::Revoke { lease } => {
                if !self.revoke(now_ns, *lease) {
                    return Err(self.lease_missing(*lease).expect("missing"));
                }
                Answer::Done
            }
            Call::Get { key } => Answer::Value(self.keys.get(key).cloned()),
            Call::GetPrefix { prefix } => Answer::Values(
                self.keys
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            Call::Put { key, value, lease } => {
                if let Some(e) = self.lease_missing(*lease) {
                    return Err(e);
                }
                self.revision += 1;
                self.put(now_ns, key, value, *lease);
                Answer::Done
            }
            Call::Campaign {
                leader_key,
                leader_value,
                lease,
                epoch_key,
                epoch_seen,
                epoch_value,
                also,
            } => {
                let leader_absent = !self.keys.contains_key(leader_key);
                let counter_unchanged = match (epoch_seen, self.keys.get(epoch_key)) {
                    (None, None) => true,
                    (Some(seen), Some(now)) => seen.mod_revision == now.mod_revision,
                    _ => false,
                };
                if !(leader_absent && counter_unchanged) {
                    return Ok(Answer::Succeeded(false));
                }
                if let Some(e) = self.lease_missing(*lease) {
                    return Err(e);
                }
                self.revision += 1;
                self.put(now_ns, leader_key, leader_value, *lease);
                self.put(now_ns, epoch_key, epoch_value, 0);
                for (key, value) in also {
                    self.put(now_ns, key, value, 0);
                }
                Answer::Succeeded(true)
            }
            Call::PutWhileHeld {
                key,
                value,
                guard_key,
                guard_lease,
            } => {
                let held = self
                    .keys
                    .get(guard_key)
                    .is_some_and(|kv| kv.lease == *guard_lease);
                if held {
                    self.revision += 1;
                    self.put(now_ns, key, value, 0);
                }
                Answer::Succeeded(held)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_campaign_takes_an_absent_key_once_and_a_lease_takes_its_keys_with_it() {
        let mut etcd = EtcdModel::new("/surge/leader");
        let Ok(Answer::Lease(a)) = etcd.apply(0, &Call::Grant { ttl_secs: 2 }) else {
            panic!()
        };
        let campaign = |lease, seen: Option<Kv>| Call::Campaign {
            leader_key: "/surge/leader".into(),
            leader_value: b"node=a epoch=1".to_vec(),
            lease,
            epoch_key: "/surge/epoch".into(),
            epoch_seen: seen,
            epoch_value: b"node=a epoch=1".to_vec(),
            also: vec![],
        };
        assert_eq!(
            etcd.apply(S, &campaign(a, None)),
            Ok(Answer::Succeeded(true))
        );
        assert_eq!(
            etcd.apply(S, &campaign(a, None)),
            Ok(Answer::Succeeded(false))
        );
        // Renewed at 1.5 s, it lives to 3.5 s; then the key goes with it.
        assert_eq!(
            etcd.apply(S + S / 2, &Call::KeepAlive { lease: a }),
            Ok(Answer::Ttl(Some(2)))
        );
        etcd.expire(3 * S);
        assert!(etcd.get("/surge/leader").is_some());
        etcd.expire(3 * S + S / 2);
        assert!(etcd.get("/surge/leader").is_none());
        assert_eq!(
            etcd.apply(4 * S, &Call::KeepAlive { lease: a }),
            Ok(Answer::Ttl(None))
        );
        // The counter moved: a campaign that saw none must fail.
        let Ok(Answer::Lease(b)) = etcd.apply(4 * S, &Call::Grant { ttl_secs: 2 }) else {
            panic!()
        };
        assert_eq!(
            etcd.apply(4 * S, &campaign(b, None)),
            Ok(Answer::Succeeded(false))
        );
        let seen = etcd.get("/surge/epoch").cloned();
        assert_eq!(
            etcd.apply(4 * S, &campaign(b, seen)),
            Ok(Answer::Succeeded(true))
        );
        assert_eq!(etcd.watched_history.len(), 3, "taken, expired, taken");
    }
}
