//! The etcd calls surge makes, as values: what the coordinator's state machine asks for
//! (`Call`) and what comes back (`Answer`). `Etcd::execute` makes one over etcd's JSON
//! gateway; the simulator's etcd answers the same calls from its model. Nothing here does
//! I/O.

use crate::etcd::Kv;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// A new lease of `ttl_secs`.
    Grant {
        ttl_secs: u64,
    },
    /// Renew `lease`: its TTL as etcd now counts it, or gone.
    KeepAlive {
        lease: i64,
    },
    /// Give `lease` back (its keys go with it).
    Revoke {
        lease: i64,
    },
    Get {
        key: String,
    },
    /// Every key under `prefix`, in key order.
    GetPrefix {
        prefix: String,
    },
    /// `key` = `value`, attached to `lease` (0: none).
    Put {
        key: String,
        value: Vec<u8>,
        lease: i64,
    },
    /// Take `leader_key` (absent now) for `lease`, move the counter at `epoch_key` from what
    /// `epoch_seen` says it was (absent: `None`) to `epoch_value`, and put `also` (unleased),
    /// in one transaction.
    Campaign {
        leader_key: String,
        leader_value: Vec<u8>,
        lease: i64,
        epoch_key: String,
        epoch_seen: Option<Kv>,
        epoch_value: Vec<u8>,
        also: Vec<(String, Vec<u8>)>,
    },
    /// `key` = `value` (unleased) only while `guard_key` is attached to `guard_lease`.
    PutWhileHeld {
        key: String,
        value: Vec<u8>,
        guard_key: String,
        guard_lease: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `Grant`: the lease's id.
    Lease(i64),
    /// `KeepAlive`: the TTL in seconds, or `None` when the lease is gone.
    Ttl(Option<u64>),
    /// `Revoke`, `Put`.
    Done,
    /// `Get`.
    Value(Option<Kv>),
    /// `GetPrefix`: (key, value) pairs.
    Values(Vec<(String, Kv)>),
    /// `Campaign`, `PutWhileHeld`: whether the transaction's conditions held.
    Succeeded(bool),
}

impl crate::Etcd {
    /// Make `call` against the cluster.
    pub fn execute(&self, call: &Call) -> Result<Answer, crate::EtcdError> {
        Ok(match call {
            Call::Grant { ttl_secs } => Answer::Lease(self.grant(*ttl_secs)?),
            Call::KeepAlive { lease } => Answer::Ttl(self.keep_alive(*lease)?),
            Call::Revoke { lease } => {
                self.revoke(*lease)?;
                Answer::Done
            }
            Call::Get { key } => Answer::Value(self.get(key)?),
            Call::GetPrefix { prefix } => Answer::Values(self.get_prefix(prefix)?),
            Call::Put { key, value, lease } => {
                self.put(key, value, *lease)?;
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
                let also: Vec<(&str, &[u8])> = also
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_slice()))
                    .collect();
                Answer::Succeeded(self.campaign(
                    leader_key,
                    leader_value,
                    *lease,
                    epoch_key,
                    epoch_seen.as_ref(),
                    epoch_value,
                    &also,
                )?)
            }
            Call::PutWhileHeld {
                key,
                value,
                guard_key,
                guard_lease,
            } => Answer::Succeeded(self.put_while_held(key, value, guard_key, *guard_lease)?),
        })
    }
}
