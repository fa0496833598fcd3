//! A primary and a hot standby as two real processes: catch-up, SIGKILL and promotion under
//! load, failback, epochs and fencing, and a network partition between two namespaces.

mod catch_up;
mod epochs;
mod etcd_failover;
mod failover;
mod handshake;
mod harness;
mod journals;
mod partition;
#[path = "../common/pki.rs"]
mod pki;
mod promotion_crash;
#[path = "../common/scratch.rs"]
mod scratch;
mod tls;
