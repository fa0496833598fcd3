//! Failover for clients that know both nodes of a pair: find the node that takes writes
//! (skipping a standby), remember the highest epoch seen (and say it in each hello, so a
//! replaced primary learns it is stale), and for the blocking client, resend an unanswered
//! request with the same request id on the new primary: the engine's idempotency answers a
//! request it already applied with the original outcome, so a resend never orders twice.

use std::time::{Duration, Instant};

use engine::wire::{Operation, Reply, Role, WireAnswer};
use engine::{ClientId, Code, RequestId};

use crate::client::{Client, ClientError, Result};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between rounds over the addresses.
const ROUND_PAUSE: Duration = Duration::from_millis(5);

/// Answers that mean "not here: try the other node" rather than a result.
pub fn means_move(code: Code) -> bool {
    matches!(
        code,
        Code::NotPrimary | Code::Fenced | Code::StandbyUnavailable | Code::ShuttingDown
    )
}

/// The addresses of a pair and what this client learned about them.
#[derive(Clone, Debug)]
pub struct Nodes {
    pub servers: Vec<String>,
    pub client: ClientId,
    /// The highest epoch any node welcomed this client at.
    pub epoch: u64,
    /// The server last connected to (the next round starts after it).
    at: usize,
    /// Moves made (connections to a writable node after the first).
    pub moves: u64,
    connected: bool,
}

impl Nodes {
    pub fn new(servers: Vec<String>, client: ClientId) -> Nodes {
        Nodes {
            servers,
            client,
            epoch: 0,
            at: 0,
            moves: 0,
            connected: false,
        }
    }

    /// Connect to a node that takes writes, trying each address in turn until `deadline`.
    pub fn connect_writable(&mut self, deadline: Instant) -> Result<Client> {
        self.connect(deadline, true)
    }

    fn connect(&mut self, deadline: Instant, writable: bool) -> Result<Client> {
        let mut last_error = ClientError::Closed;
        loop {
            for i in 0..self.servers.len() {
                let at = (self.at + i) % self.servers.len();
                match Client::connect_at_epoch(
                    &self.servers[at],
                    self.client,
                    CONNECT_TIMEOUT,
                    self.epoch,
                ) {
                    Ok(client) => {
                        self.epoch = self.epoch.max(client.welcome().epoch);
                        if writable && client.welcome().role == Role::Standby {
                            last_error =
                                ClientError::Protocol(format!("{} is a standby", self.servers[at]));
                            continue;
                        }
                        if self.connected {
                            self.moves += 1;
                        }
                        self.connected = true;
                        self.at = at;
                        return Ok(client);
                    }
                    Err(e) => last_error = e,
                }
            }
            if Instant::now() + ROUND_PAUSE >= deadline {
                return Err(last_error);
            }
            std::thread::sleep(ROUND_PAUSE);
        }
    }

    /// After a failure on the current node: start the next round at the other one.
    pub fn skip_current(&mut self) {
        self.at = (self.at + 1) % self.servers.len().max(1);
    }
}

/// A blocking client over a pair: `call_with_id` moves to the new primary on disconnect or
/// on a "not here" answer and resends with the same request id, until `patience` runs out.
pub struct FailoverClient {
    pub nodes: Nodes,
    client: Option<Client>,
    pub patience: Duration,
}

impl FailoverClient {
    pub fn connect(
        servers: Vec<String>,
        client: ClientId,
        patience: Duration,
    ) -> Result<FailoverClient> {
        let mut nodes = Nodes::new(servers, client);
        let first = nodes.connect_writable(Instant::now() + patience)?;
        Ok(FailoverClient {
            nodes,
            client: Some(first),
            patience,
        })
    }

    /// The connected client (reconnecting first if the last call lost it).
    pub fn client(&mut self) -> Result<&mut Client> {
        if self.client.is_none() {
            let client = self
                .nodes
                .connect_writable(Instant::now() + self.patience)?;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected"))
    }

    pub fn call_with_id(
        &mut self,
        request: RequestId,
        operation: &Operation,
    ) -> Result<WireAnswer> {
        let deadline = Instant::now() + self.patience;
        loop {
            let result = self
                .client()
                .and_then(|c| c.call_with_id(request, operation.clone()));
            match result {
                Ok(answer) => match &answer.reply {
                    Reply::Rejected { code, .. }
                        if means_move(*code) && Instant::now() < deadline => {}
                    _ => return Ok(answer),
                },
                Err(
                    ClientError::Server { .. }
                    | ClientError::Closed
                    | ClientError::Io(_)
                    | ClientError::Timeout,
                ) if Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
            self.client = None;
            self.nodes.skip_current();
            std::thread::sleep(ROUND_PAUSE);
        }
    }
}
