//! A primary and hot standbys as real processes: catch-up, SIGKILL and promotion under
//! load, failback, epochs and fencing, several standbys ("k of N", a DR standby), and a
//! network partition between two namespaces.

mod catch_up;
mod epochs;
mod etcd_failover;
mod etcd_security;
mod etcd_standbys;
mod failover;
mod handshake;
mod harness;
mod journals;
mod outside_faults;
mod partition;
#[path = "../common/pki.rs"]
mod pki;
mod promotion_crash;
#[path = "../common/scratch.rs"]
mod scratch;
mod standbys;
mod tls;
