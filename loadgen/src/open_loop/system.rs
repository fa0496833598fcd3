//! The systems the load generator can drive: surge, or for comparison one of the `peers`
//! (Redis, PostgreSQL). Each connects over one TCP connection and hands back the codec
//! (`crate::protocol`) that speaks to it.

use std::time::Duration;

use engine::ClientId;

use crate::client::{Client, Handover};
use crate::peers;
use crate::protocol::{Protocol, SurgeProtocol};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Surge,
    Redis,
    Postgres,
}

impl System {
    pub fn parse(name: &str) -> anyhow::Result<System> {
        Ok(match name {
            "surge" => System::Surge,
            "redis" => System::Redis,
            "postgres" | "postgresql" => System::Postgres,
            other => anyhow::bail!("unknown system {other:?}: expected surge, redis or postgres"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            System::Surge => "surge",
            System::Redis => "redis",
            System::Postgres => "postgres",
        }
    }

    /// Connect and complete the handshake (blocking), as `client`.
    pub fn connect(
        self,
        addr: &str,
        client: ClientId,
        timeout: Duration,
    ) -> anyhow::Result<(Handover, Box<dyn Protocol>)> {
        Ok(match self {
            System::Surge => {
                let handed = Client::connect_timeout(addr, client, timeout)?.into_handover()?;
                (handed, Box::new(SurgeProtocol::default()))
            }
            System::Redis => {
                let (stream, protocol) = peers::redis::connect(addr, timeout)?;
                (Handover::fresh(stream), protocol)
            }
            System::Postgres => {
                let (stream, protocol) = peers::postgres::connect(addr, timeout)?;
                (Handover::fresh(stream), protocol)
            }
        })
    }
}
