//! Operating the node: the HTTP port (`/metrics`, `/health`, admin calls), and the
//! replication lines of `/metrics`.

pub mod health;
pub mod http;
pub mod replication;
