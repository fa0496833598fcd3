//! The etcd calls surge makes, over etcd's v3 JSON gateway (`POST /v3/...`; keys and values
//! are base64, 64-bit integers come back as strings). Every call tries the endpoint that
//! answered last, then the others in order; an endpoint that cannot be reached or answers
//! garbage is skipped. `Unreachable` means no endpoint answered: the caller cannot tell a
//! down cluster from a partition, and must act as if its lease could be running out.
//! With credentials (`access.rs`) every call carries a token, bought on the first call and
//! again whenever etcd answers 401 (expired, or issued by another member), then the call is
//! tried once more.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::access::EtcdAccess;
use crate::http::{post_json, Post};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdError {
    /// No endpoint answered (all down, or this node is cut off from them).
    Unreachable(String),
    /// An endpoint answered with an error or something that is not the answer expected.
    Refused(String),
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdError::Unreachable(why) => write!(f, "etcd unreachable: {why}"),
            EtcdError::Refused(why) => write!(f, "etcd refused: {why}"),
        }
    }
}

impl std::error::Error for EtcdError {}

/// One key as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// The lease it is attached to (0: none).
    pub lease: i64,
}

pub struct Etcd {
    endpoints: Vec<String>,
    timeout: Duration,
    access: EtcdAccess,
    /// The endpoint that answered last.
    preferred: AtomicUsize,
    /// The auth token in use (with credentials), bought on demand.
    token: Mutex<Option<String>>,
    /// Tokens bought so far.
    authentications: AtomicU64,
}

/// How one pass over the endpoints ended, short of an answer.
enum Failure {
    Etcd(EtcdError),
    /// 401: the token is not (or no longer) valid where the call landed.
    TokenRejected(String),
}

impl Etcd {
    /// `endpoints` as `host:port`; `timeout` bounds each attempt (connect, write, read).
    /// Plain HTTP, no authentication.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Etcd {
        Etcd::with_access(endpoints, timeout, EtcdAccess::default())
    }

    /// The same, over TLS and as a user where `access` says so.
    pub fn with_access(endpoints: Vec<String>, timeout: Duration, access: EtcdAccess) -> Etcd {
        assert!(!endpoints.is_empty(), "etcd needs at least one endpoint");
        Etcd {
            endpoints,
            timeout,
            access,
            preferred: AtomicUsize::new(0),
            token: Mutex::new(None),
            authentications: AtomicU64::new(0),
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub fn access(&self) -> &EtcdAccess {
        &self.access
    }

    /// Auth tokens bought so far (one at the first call, one more each time one expired).
    pub fn authentications(&self) -> u64 {
        self.authentications.load(Relaxed)
    }

    pub(crate) fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let body = body.to_string();
        if self.access.credentials.is_none() {
            return self.pass(path, &body, None).map_err(Failure::into_error);
        }
        let token = self.token()?;
        match self.pass(path, &body, Some(&token)) {
            Err(Failure::TokenRejected(_)) => {
                self.forget_token(&token);
                let token = self.token()?;
                self.pass(path, &body, Some(&token))
                    .map_err(Failure::into_error)
            }
            other => other.map_err(Failure::into_error),
        }
    }

    /// The token in use, bought first if there is none.
    fn token(&self) -> Result<String, EtcdError> {
        let credentials = self.access.credentials.as_ref().expect("credentials");
        let mut token = self.token.lock().expect("token lock");
        if let Some(token) = token.as_ref() {
            return Ok(token.clone());
        }
        let body = json!({ "name": credentials.user, "password": credentials.password });
        let answer = self
            .pass("/v3/auth/authenticate", &body.to_string(), None)
            .map_err(Failure::into_error)?;
        let bought = answer["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| EtcdError::Refused(format!("no token in {answer}")))?
            .to_string();
        self.authentications.fetch_add(1, Relaxed);
        *token = Some(bought.clone());
        Ok(bought)
    }

    fn forget_token(&self, rejected: &str) {
        let mut token = self.token.lock().expect("token lock");
        if token.as_deref() == Some(rejected) {
            *token = None;
        }
    }

    /// Try the endpoint that answered last, then the others in order.
    fn pass(&self, path: &str, body: &str, token: Option<&str>) -> Result<Value, Failure> {
        let post = Post { path, body, token };
        let first = self.preferred.load(Relaxed);
        let mut failures = Vec::new();
        for i in 0..self.endpoints.len() {
            let at = (first + i) % self.endpoints.len();
            let endpoint = &self.endpoints[at];
            match post_json(endpoint, self.access.tls.as_ref(), &post, self.timeout) {
                Ok((200, bytes)) => match serde_json::from_slice::<Value>(&bytes) {
                    Ok(value) => {
                        self.preferred.store(at, Relaxed);
                        return Ok(value);
                    }
                    Err(e) => failures.push(format!("{endpoint}: {e}")),
                },
                Ok((401, bytes)) if token.is_some() => {
                    let text = String::from_utf8_lossy(&bytes);
                    return Err(Failure::TokenRejected(format!(
                        "{endpoint}{path}: 401 {text}"
                    )));
                }
                Ok((status, bytes)) if status < 500 => {
                    // A definite no (a bad request, a lease not found): the same anywhere.
                    let text = String::from_utf8_lossy(&bytes);
                    return Err(Failure::Etcd(EtcdError::Refused(format!(
                        "{endpoint}{path}: {status} {text}"
                    ))));
                }
                Ok((status, bytes)) => {
                    // This member is in trouble (no leader, a learner, shutting down): another
                    // may answer.
                    let text = String::from_utf8_lossy(&bytes);
                    failures.push(format!("{endpoint}: {status} {text}"));
                }
                Err(e) => failures.push(format!("{endpoint}: {e}")),
            }
        }
        Err(Failure::Etcd(EtcdError::Unreachable(failures.join("; "))))
    }

    /// A new lease of `ttl_secs`; its id.
    pub fn grant(&self, ttl_secs: u64) -> Result<i64, EtcdError> {
        let answer = self.call("/v3/lease/grant", json!({ "TTL": ttl_secs }))?;
        int(&answer["ID"]).ok_or_else(|| EtcdError::Refused(format!("no lease id in {answer}")))
    }

    /// Renew `lease`: its TTL in seconds as etcd now counts it, or `None` if it is gone
    /// (expired or revoked).
    pub fn keep_alive(&self, lease: i64) -> Result<Option<u64>, EtcdError> {
        let answer = self.call("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))?;
        let ttl = int(&answer["result"]["TTL"]).unwrap_or(0);
        Ok((ttl > 0).then_some(ttl as u64))
    }

    pub fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({ "ID": lease.to_string() }))
            .map(|_| ())
    }

    pub fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let answer = self.call("/v3/kv/range", json!({ "key": B64.encode(key) }))?;
        let Some(kv) = answer["kvs"].as_array().and_then(|kvs| kvs.first()) else {
            return Ok(None);
        };
        let value = kv["value"].as_str().unwrap_or("");
        Ok(Some(Kv {
            value: B64
                .decode(value)
                .map_err(|e| EtcdError::Refused(format!("value of {key}: {e}")))?,
            create_revision: int(&kv["create_revision"]).unwrap_or(0),
            mod_revision: int(&kv["mod_revision"]).unwrap_or(0),
            lease: int(&kv["lease"]).unwrap_or(0),
        }))
    }

    /// Every key that starts with `prefix`, with its value, in key order.
    pub fn get_prefix(&self, prefix: &str) -> Result<Vec<(String, Kv)>, EtcdError> {
        let answer = self.call(
            "/v3/kv/range",
            json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) }),
        )?;
        let mut out = Vec::new();
        for kv in answer["kvs"].as_array().into_iter().flatten() {
            let decode = |field: &str| {
                B64.decode(kv[field].as_str().unwrap_or(""))
                    .map_err(|e| EtcdError::Refused(format!("{field} under {prefix}: {e}")))
            };
            out.push((
                String::from_utf8_lossy(&decode("key")?).into_owned(),
                Kv {
                    value: decode("value")?,
                    create_revision: int(&kv["create_revision"]).unwrap_or(0),
                    mod_revision: int(&kv["mod_revision"]).unwrap_or(0),
                    lease: int(&kv["lease"]).unwrap_or(0),
                },
            ));
        }
        Ok(out)
    }

    /// Seconds `lease` has left (`None`: gone).
    pub fn time_to_live(&self, lease: i64) -> Result<Option<i64>, EtcdError> {
        let answer = self.call("/v3/lease/timetolive", json!({ "ID": lease.to_string() }))?;
        Ok(int(&answer["TTL"]).filter(|&ttl| ttl >= 0))
    }

    /// Put `key` = `value`, attached to `lease` (0: none).
    pub fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/kv/put", put_body(key, value, lease))
            .map(|_| ())
    }

    /// Take `leader_key` (absent now) for `lease` with `leader_value`, and move the epoch
    /// counter at `epoch_key` from what `epoch_seen` says it was (absent: `None`) to
    /// `epoch_value`, and put `also` (unleased), in one transaction. True when all happened;
    /// false when another node holds the key or moved the counter first.
    #[allow(clippy::too_many_arguments)]
    pub fn campaign(
        &self,
        leader_key: &str,
        leader_value: &[u8],
        lease: i64,
        epoch_key: &str,
        epoch_seen: Option<&Kv>,
        epoch_value: &[u8],
        also: &[(&str, &[u8])],
    ) -> Result<bool, EtcdError> {
        let epoch_unchanged = match epoch_seen {
            None => json!({ "key": B64.encode(epoch_key), "target": "CREATE",
                            "create_revision": "0", "result": "EQUAL" }),
            Some(kv) => json!({ "key": B64.encode(epoch_key), "target": "MOD",
                                "mod_revision": kv.mod_revision.to_string(), "result": "EQUAL" }),
        };
        let mut puts = vec![
            json!({ "request_put": put_body(leader_key, leader_value, lease) }),
            json!({ "request_put": put_body(epoch_key, epoch_value, 0) }),
        ];
        puts.extend(
            also.iter()
                .map(|(key, value)| json!({ "request_put": put_body(key, value, 0) })),
        );
        let answer = self.call(
            "/v3/kv/txn",
            json!({
                "compare": [
                    { "key": B64.encode(leader_key), "target": "CREATE",
                      "create_revision": "0", "result": "EQUAL" },
                    epoch_unchanged,
                ],
                "success": puts,
            }),
        )?;
        Ok(answer["succeeded"].as_bool().unwrap_or(false))
    }

    /// Put `key` = `value` (unleased) only while `guard_key` is attached to `guard_lease`
    /// (a leader writing for its own term, never over a newer one's). True when it did.
    pub fn put_while_held(
        &self,
        key: &str,
        value: &[u8],
        guard_key: &str,
        guard_lease: i64,
    ) -> Result<bool, EtcdError> {
        let answer = self.call(
            "/v3/kv/txn",
            json!({
                "compare": [{ "key": B64.encode(guard_key), "target": "LEASE",
                              "lease": guard_lease.to_string(), "result": "EQUAL" }],
                "success": [{ "request_put": put_body(key, value, 0) }],
            }),
        )?;
        Ok(answer["succeeded"].as_bool().unwrap_or(false))
    }

    /// Delete `key` if it is still attached to `lease` (a leader stepping down leaves a key
    /// that a newer leader took alone).
    pub fn delete_if_leased(&self, key: &str, lease: i64) -> Result<bool, EtcdError> {
        let answer = self.call(
            "/v3/kv/txn",
            json!({
                "compare": [{ "key": B64.encode(key), "target": "LEASE",
                              "lease": lease.to_string(), "result": "EQUAL" }],
                "success": [{ "request_delete_range": { "key": B64.encode(key) } }],
            }),
        )?;
        Ok(answer["succeeded"].as_bool().unwrap_or(false))
    }
}

impl Failure {
    fn into_error(self) -> EtcdError {
        match self {
            Failure::Etcd(e) => e,
            Failure::TokenRejected(why) => EtcdError::Refused(why),
        }
    }
}

/// The first key after every key that starts with `prefix` (etcd's `range_end`).
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

fn put_body(key: &str, value: &[u8], lease: i64) -> Value {
    json!({ "key": B64.encode(key), "value": B64.encode(value), "lease": lease.to_string() })
}

/// A 64-bit integer as the gateway writes it: a string, or a number.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}
