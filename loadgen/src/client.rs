//! The Rust client for surge's protocol (docs/PROTOCOL.md): connect and say hello, pipeline
//! requests (many per frame), read answers and pushes. Blocking, one connection, no threads:
//! the CLI, the tests and the load generator build on it.
//!
//! ```no_run
//! use engine::{wire::Operation, Query, SkuId};
//! let mut client = loadgen::client::Client::connect("127.0.0.1:7600", engine::ClientId(7))?;
//! let answer = client.call(Operation::Query(Query::Stock { sku: SkuId(1) }))?;
//! println!("{:?}", answer.reply);
//! # Ok::<(), loadgen::client::ClientError>(())
//! ```

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use crate::client_conn::ClientConn;
pub use crate::client_conn::ClientTls;
use std::time::{Duration, Instant};

use engine::wire::{self, frame_kind, ErrorFrame, Hello, Operation, RequestsFrameBuilder};
use engine::wire::{Welcome, WireAnswer, WirePush};
use engine::{ClientId, RequestId};

/// What the server said of an order asked for by id (`Client::query_orders`).
#[derive(Clone, Debug)]
pub enum OrderLookup {
    /// Held: open, or closed and not yet retired.
    Held(engine::outcome::OrderView),
    /// Retired: its final state and key fields.
    Retired(engine::RetiredOrder),
    /// Older than the retired history reaches (`ORDER_BEYOND_HISTORY`).
    BeyondHistory,
    /// Anything else (not found, or an unexpected reply).
    Other(wire::Reply),
}

impl From<wire::Reply> for OrderLookup {
    fn from(reply: wire::Reply) -> OrderLookup {
        use engine::Answer;
        match reply {
            wire::Reply::Answer(Answer::Order(view)) => OrderLookup::Held(view),
            wire::Reply::Answer(Answer::RetiredOrder(r)) => OrderLookup::Retired(r),
            // A refused query decodes as `Reply::Rejected`, never `Answer::Rejected`.
            wire::Reply::Rejected {
                code: engine::Code::OrderBeyondHistory,
                ..
            } => OrderLookup::BeyondHistory,
            other => OrderLookup::Other(other),
        }
    }
}

fn order_query(order: u64) -> Operation {
    Operation::Query(engine::Query::Order {
        order: engine::OrderId(order),
    })
}

/// Default time to wait for the server.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    /// The server sent an ERROR frame (its code from docs/ERRORS.md) and closed.
    Server {
        code: u16,
        message: String,
    },
    /// The server sent bytes this client cannot read.
    Protocol(String),
    /// The connection closed.
    Closed,
    /// Nothing arrived within the timeout.
    Timeout,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o: {e}"),
            ClientError::Server { code, message } => {
                let name = engine::Code::from_u16(*code).map_or("", |c| c.name());
                write!(f, "server error {code} {name}: {message}")
            }
            ClientError::Protocol(what) => write!(f, "protocol: {what}"),
            ClientError::Closed => write!(f, "the server closed the connection"),
            ClientError::Timeout => write!(f, "timed out waiting for the server"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => ClientError::Closed,
            _ => ClientError::Io(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A connected stream handed from one reader to another, with what was received on it and
/// not yet read.
pub struct Handover {
    pub stream: TcpStream,
    pub unread: Vec<u8>,
}

impl Handover {
    /// A stream nothing has been read from.
    pub fn fresh(stream: TcpStream) -> Handover {
        Handover {
            stream,
            unread: Vec::new(),
        }
    }
}

/// Something the server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    Answer(WireAnswer),
    Push(WirePush),
}

/// The answers or pushes of one ANSWERS or PUSH frame, appended to `into`; any other kind
/// (ERROR is the caller's to handle) or a body that does not decode is described in the error.
/// The blocking client and the load generator's non-blocking loop both read frames with it.
pub fn decode_items(
    kind: u8,
    body: &[u8],
    into: &mut impl Extend<Incoming>,
) -> std::result::Result<(), String> {
    let protocol = |c: engine::Code| format!("{c} in kind {kind}");
    match kind {
        frame_kind::ANSWERS => {
            let answers = wire::decode_answers(body).map_err(protocol)?;
            into.extend(answers.into_iter().map(Incoming::Answer));
        }
        frame_kind::PUSH => {
            let pushes = wire::decode_pushes(body).map_err(protocol)?;
            into.extend(pushes.into_iter().map(Incoming::Push));
        }
        other => return Err(format!("unexpected frame kind {other}")),
    }
    Ok(())
}

pub struct Client {
    stream: ClientConn,
    client: ClientId,
    welcome: Welcome,
    /// Requests encoded and not yet written (one open frame at most).
    out: Vec<u8>,
    frame: Option<RequestsFrameBuilder>,
    read_buf: Vec<u8>,
    read_start: usize,
    incoming: VecDeque<Incoming>,
    next_request: u64,
    timeout: Duration,
}

impl Client {
    /// Connect and complete the handshake.
    pub fn connect(addr: impl ToSocketAddrs, client: ClientId) -> Result<Client> {
        Client::connect_timeout(addr, client, TIMEOUT_DEFAULT)
    }

    pub fn connect_timeout(
        addr: impl ToSocketAddrs,
        client: ClientId,
        timeout: Duration,
    ) -> Result<Client> {
        Client::connect_at_epoch(addr, client, timeout, 0)
    }

    /// Connect, telling the server the highest epoch this client has seen (a primary below it
    /// learns that it was replaced).
    pub fn connect_at_epoch(
        addr: impl ToSocketAddrs,
        client: ClientId,
        timeout: Duration,
        epoch: u64,
    ) -> Result<Client> {
        Client::connect_with(addr, client, timeout, epoch, None)
    }

    /// The same, over TLS when `tls` is given (a server with `gateway.tls_cert`).
    pub fn connect_with(
        addr: impl ToSocketAddrs,
        client: ClientId,
        timeout: Duration,
        epoch: u64,
        tls: Option<&ClientTls>,
    ) -> Result<Client> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| ClientError::Protocol("no address".into()))?;
        let tcp = TcpStream::connect_timeout(&addr, timeout)?;
        tcp.set_nodelay(true)?;
        let mut this = Client {
            stream: ClientConn::new(tcp, tls)?,
            client,
            welcome: Welcome {
                version: 0,
                role: wire::Role::Primary,
                in_flight_max: 0,
                frame_len_max: 0,
                requests_per_frame_max: 0,
                epoch: 0,
            },
            out: Vec::with_capacity(64 << 10),
            frame: None,
            read_buf: Vec::with_capacity(64 << 10),
            read_start: 0,
            incoming: VecDeque::new(),
            next_request: 1,
            timeout,
        };
        Hello {
            version: wire::PROTOCOL_VERSION,
            client,
            epoch,
        }
        .encode(&mut this.out);
        this.flush()?;
        let deadline = Instant::now() + timeout;
        let (kind, body) = this.read_frame(deadline)?;
        if kind != frame_kind::WELCOME {
            return Err(ClientError::Protocol(format!(
                "expected WELCOME, got kind {kind}"
            )));
        }
        this.welcome = Welcome::decode(&body).map_err(|c| ClientError::Protocol(c.to_string()))?;
        Ok(this)
    }

    /// Give up the client for its socket, after the handshake, to drive the connection some
    /// other way (the load generator's non-blocking loop), with the bytes received and not
    /// yet read (a PUSH may follow the WELCOME at once). Fails if answers were decoded and
    /// not taken.
    pub fn into_handover(mut self) -> Result<Handover> {
        self.flush()?;
        let ClientConn::Plain(stream) = self.stream else {
            return Err(ClientError::Protocol(
                "the load generator's loop speaks plain TCP, not TLS".into(),
            ));
        };
        if !self.incoming.is_empty() {
            return Err(ClientError::Protocol(
                "decoded answers not taken when handing over the stream".into(),
            ));
        }
        let unread = self.read_buf.split_off(self.read_start);
        Ok(Handover { stream, unread })
    }

    pub fn client_id(&self) -> ClientId {
        self.client
    }

    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Request ids this client hands out with `next_request_id` start here (a client that
    /// reconnects as the same id must keep going upwards: the server's idempotency window
    /// refuses ids far below the highest it has seen).
    pub fn set_next_request_id(&mut self, next: u64) {
        self.next_request = next;
    }

    pub fn next_request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    /// Queue a request; it goes out with the next `flush` (or earlier, when a frame fills).
    pub fn send(&mut self, request: RequestId, operation: &Operation) -> Result<()> {
        let frame = self
            .frame
            .get_or_insert_with(|| RequestsFrameBuilder::begin(&mut self.out));
        frame.push(request, operation, &mut self.out);
        let full = frame.count() >= wire::REQUESTS_PER_FRAME_MAX
            || frame.len(&self.out) >= wire::FRAME_LEN_MAX / 2;
        if full {
            self.close_frame();
            if self.out.len() >= 256 << 10 {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn close_frame(&mut self) {
        if let Some(frame) = self.frame.take() {
            frame.finish(&mut self.out);
        }
    }

    /// Write every queued request.
    pub fn flush(&mut self) -> Result<()> {
        self.close_frame();
        if !self.out.is_empty() {
            self.stream.set_write_timeout(Some(self.timeout))?;
            self.stream.write_all(&self.out)?;
            self.stream.flush()?;
            self.out.clear();
        }
        Ok(())
    }

    /// Send raw bytes (tests that speak the protocol badly on purpose).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.flush()?;
        self.stream.write_all(bytes)?;
        self.stream.flush()?;
        Ok(())
    }

    /// The next answer or push, waiting up to the timeout.
    pub fn recv(&mut self) -> Result<Incoming> {
        let deadline = Instant::now() + self.timeout;
        self.recv_until(deadline)
    }

    pub fn recv_until(&mut self, deadline: Instant) -> Result<Incoming> {
        self.flush()?;
        loop {
            if let Some(incoming) = self.incoming.pop_front() {
                return Ok(incoming);
            }
            let (kind, body) = self.read_frame(deadline)?;
            decode_items(kind, &body, &mut self.incoming).map_err(ClientError::Protocol)?;
        }
    }

    /// The next answer; pushes that arrive first are kept for `take_pushes`.
    pub fn recv_answer(&mut self) -> Result<WireAnswer> {
        let deadline = Instant::now() + self.timeout;
        let mut pushes = Vec::new();
        let result = loop {
            match self.recv_until(deadline) {
                Ok(Incoming::Answer(answer)) => break Ok(answer),
                Ok(Incoming::Push(push)) => pushes.push(Incoming::Push(push)),
                Err(e) => break Err(e),
            }
        };
        for push in pushes.into_iter().rev() {
            self.incoming.push_front(push);
        }
        result
    }

    /// Send one request with the next request id and wait for its answer (answers to other
    /// requests that come first are kept).
    pub fn call(&mut self, operation: Operation) -> Result<WireAnswer> {
        let request = self.next_request_id();
        self.call_with_id(request, operation)
    }

    pub fn call_with_id(&mut self, request: RequestId, operation: Operation) -> Result<WireAnswer> {
        self.send(request, &operation)?;
        self.flush()?;
        let deadline = Instant::now() + self.timeout;
        let mut others = Vec::new();
        let result = loop {
            match self.recv_until(deadline) {
                Ok(Incoming::Answer(a)) if a.request == request => break Ok(a),
                Ok(other) => others.push(other),
                Err(e) => break Err(e),
            }
        };
        for other in others.into_iter().rev() {
            self.incoming.push_front(other);
        }
        result
    }

    /// Ask for each of `orders` by id, pipelined (1,024 at a time); what the server said of
    /// each, in order.
    pub fn query_orders(&mut self, orders: &[u64]) -> Result<Vec<OrderLookup>> {
        let mut found = Vec::with_capacity(orders.len());
        for chunk in orders.chunks(1024) {
            let first = self.next_request_id();
            self.send(first, &order_query(chunk[0]))?;
            let mut last = first;
            for &order in &chunk[1..] {
                last = self.next_request_id();
                self.send(last, &order_query(order))?;
            }
            self.flush()?;
            for expected in first.0..=last.0 {
                let answer = self.recv_answer()?;
                if answer.request.0 != expected {
                    return Err(ClientError::Protocol(format!(
                        "answer for request {} where {expected} was due",
                        answer.request.0
                    )));
                }
                found.push(OrderLookup::from(answer.reply));
            }
        }
        Ok(found)
    }

    /// Pushes received so far (waiting for none).
    pub fn take_pushes(&mut self) -> Vec<WirePush> {
        let mut pushes = Vec::new();
        self.incoming.retain(|i| match i {
            Incoming::Push(p) => {
                pushes.push(p.clone());
                false
            }
            Incoming::Answer(_) => true,
        });
        pushes
    }

    /// Wait up to `timeout` for a push (answers that come meanwhile are kept).
    pub fn wait_push(&mut self, timeout: Duration) -> Result<Option<WirePush>> {
        if let Some(p) = self.take_pushes().into_iter().next() {
            return Ok(Some(p));
        }
        let deadline = Instant::now() + timeout;
        let mut answers = Vec::new();
        let result = loop {
            match self.recv_until(deadline) {
                Ok(Incoming::Push(p)) => break Ok(Some(p)),
                Ok(answer) => answers.push(answer),
                Err(ClientError::Timeout) => break Ok(None),
                Err(e) => break Err(e),
            }
        };
        for a in answers.into_iter().rev() {
            self.incoming.push_front(a);
        }
        result
    }

    /// Read one whole frame (kind, body), or the server's ERROR as an error.
    fn read_frame(&mut self, deadline: Instant) -> Result<(u8, Vec<u8>)> {
        loop {
            match wire::split_frame(&self.read_buf[self.read_start..]) {
                Ok(Some(frame)) => {
                    let (kind, body, len) = (frame.kind, frame.body.to_vec(), frame.len);
                    self.read_start += len;
                    if self.read_start == self.read_buf.len() {
                        self.read_buf.clear();
                        self.read_start = 0;
                    }
                    if kind == frame_kind::ERROR {
                        let e = ErrorFrame::decode(&body)
                            .map_err(|c| ClientError::Protocol(c.to_string()))?;
                        return Err(ClientError::Server {
                            code: e.code,
                            message: e.message,
                        });
                    }
                    return Ok((kind, body));
                }
                Ok(None) => {}
                Err(code) => return Err(ClientError::Protocol(code.to_string())),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout);
            }
            self.stream.set_read_timeout(Some(left))?;
            if self.read_start > 0 {
                self.read_buf.drain(..self.read_start);
                self.read_start = 0;
            }
            let at = self.read_buf.len();
            self.read_buf.resize(at + (64 << 10), 0);
            let n = match self.stream.read(&mut self.read_buf[at..]) {
                Ok(n) => n,
                Err(e) => {
                    self.read_buf.truncate(at);
                    return Err(e.into());
                }
            };
            self.read_buf.truncate(at + n);
            if n == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::Code;

    #[test]
    fn an_order_beyond_history_is_told_apart_from_a_missing_one() {
        // A refused query decodes as `Reply::Rejected`: that is where "beyond history" is.
        let beyond = wire::Reply::Rejected {
            code: Code::OrderBeyondHistory,
            subject: 7,
        };
        assert!(matches!(
            OrderLookup::from(beyond),
            OrderLookup::BeyondHistory
        ));
        let missing = wire::Reply::Rejected {
            code: Code::UnknownOrder,
            subject: 7,
        };
        assert!(matches!(OrderLookup::from(missing), OrderLookup::Other(_)));
    }
}
