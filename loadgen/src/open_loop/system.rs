//! The systems the load generator can drive: surge, or for comparison one of the `peers`
//! (Redis, PostgreSQL). Each connects over one TCP connection and hands back the codec
//! (`crate::protocol`) that speaks to it.

use std::net::TcpStream;
use std::time::Duration;

use engine::ClientId;

use crate::client::Client;
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
    ) -> anyhow::Result<(TcpStream, Box<dyn Protocol>)> {
        Ok(match self {
            System::Surge => {
                let stream = Client::connect_timeout(addr, client, timeout)?.into_stream()?;
                (stream, Box::new(SurgeProtocol::default()))
            }
            System::Redis => peers::redis::connect(addr, timeout)?,
            System::Postgres => peers::postgres::connect(addr, timeout)?,
        })
    }
}
