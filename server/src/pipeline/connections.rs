//! The gateway's table of client connections: a slot per connection with a generation (so an
//! answer never reaches a later connection that reused the slot), which connection each client
//! said hello on last (pushes go there), delivering what the gate releases (answers to their
//! connection, events to the clients they concern), flushing, closing with a code, timing out
//! frames that never complete, and the end: failing or draining every connection.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use engine::wire;
use engine::{ClientId, Code, Event};
use mio::{Interest, Registry, Token};

use crate::config::GatewaySection;
use crate::pipeline::connection::Connection;
use crate::pipeline::net::ClientStream;
use crate::pipeline::slot::{ConnRef, Slot};
use crate::telemetry::log::{self, Level};
use crate::telemetry::metrics::Metrics;

/// Poll tokens below this are the gateway's own (listener, waker).
pub const FIRST_CONNECTION: usize = 2;

pub struct Connections<S> {
    conns: Vec<Option<Connection<S>>>,
    free: Vec<usize>,
    open: usize,
    generation: u32,
    /// The connection that most recently said hello as each client: pushes go there.
    clients: HashMap<ClientId, ConnRef>,
    registry: Registry,
    limits: GatewaySection,
}

impl<S: ClientStream> Connections<S> {
    pub fn new(registry: Registry, limits: GatewaySection) -> Connections<S> {
        Connections {
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            generation: 0,
            clients: HashMap::new(),
            registry,
            limits,
        }
    }

    pub fn open(&self) -> usize {
        self.open
    }

    /// Slots in the table (open or free): connection indexes are below this.
    pub fn slots(&self) -> usize {
        self.conns.len()
    }

    pub fn get(&self, index: usize) -> Option<&Connection<S>> {
        self.conns.get(index).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut Connection<S>> {
        self.conns.get_mut(index).and_then(Option::as_mut)
    }

    fn at(&mut self, to: ConnRef) -> Option<&mut Connection<S>> {
        self.conns
            .get_mut(to.index as usize)
            .and_then(Option::as_mut)
            .filter(|c| c.me == to)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Connection<S>> {
        self.conns.iter().flatten()
    }

    /// Take a new stream, if there is room (else refuse it with `TOO_MANY_CONNECTIONS`).
    pub fn add(&mut self, mut stream: S, peer: SocketAddr, now_ns: u64, metrics: &Metrics) {
        if self.open >= self.limits.connections_max {
            let mut frame = Vec::new();
            wire::ErrorFrame {
                code: Code::TooManyConnections.number(),
                message: format!("{} connections open", self.open),
            }
            .encode(&mut frame);
            let _ = io::Write::write(&mut stream, &frame);
            Metrics::count(
                &metrics.connections_closed,
                Code::TooManyConnections.number(),
            );
            return;
        }
        let _ = stream.set_nodelay(true);
        let index = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        self.generation = self.generation.wrapping_add(1);
        let me = ConnRef {
            index: index as u32,
            generation: self.generation,
        };
        let token = Token(index + FIRST_CONNECTION);
        if let Err(e) =
            self.registry
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
        {
            log::line(Level::Warn, "register_failed", None, &[("error", &e)]);
            self.free.push(index);
            return;
        }
        self.conns[index] = Some(Connection::new(stream, peer, me, now_ns));
        self.open += 1;
        metrics.connections.store(self.open as u64, Relaxed);
        metrics.connections_accepted.fetch_add(1, Relaxed);
    }

    /// `client` said hello on connection `index`: its pushes go there from now on.
    pub fn said_hello(&mut self, index: usize, client: ClientId) {
        let conn = self.conns[index].as_mut().expect("open");
        conn.client = Some(client);
        self.clients.insert(client, conn.me);
    }

    /// Encode what the gate released for `slot`: the answer to its sender and, unless this
    /// node follows a primary (whose clients get its events from it), each event to the
    /// client it concerns.
    pub fn deliver(&mut self, slot: &Slot, push_events: bool, metrics: &Metrics) {
        // SAFETY: the gate follows the engine stage, which released this sequence (it wrote
        // `output` before); the engine does not touch it again this lap.
        let out = unsafe { slot.output.get() };
        if let Some(conn) = self.at(slot.conn) {
            conn.in_flight -= 1;
            let request = slot.request.request;
            let code = match &out.answer {
                Some(answer) => {
                    conn.answer(|o| wire::encode_answer(request, answer, o));
                    answer.code()
                }
                None => {
                    let outcome = &out.output.outcome;
                    conn.answer(|o| wire::encode_outcome(request, slot.seq, outcome, o));
                    outcome.code()
                }
            };
            Metrics::count(&metrics.answers, code.number());
        }
        if !push_events {
            return;
        }
        for event in &out.output.events {
            Metrics::count(&metrics.events, event.code().number());
            let to = match event {
                Event::OrderExpired { client, .. }
                | Event::WaitlistOrderCreated { client, .. }
                | Event::WaitlistDropped { client, .. } => self.clients.get(client).copied(),
                // Reconciliation findings go to whoever sent the statement.
                Event::Discrepancy(_) => Some(slot.conn),
                // For the feed, not for any one client.
                Event::OrderRetired { .. } => None,
            };
            if let Some(conn) = to.and_then(|to| self.at(to)) {
                conn.push(slot.seq, event);
            }
        }
    }

    pub fn flush(&mut self, index: usize, metrics: &Metrics) {
        let write_buffer_max = self.limits.write_buffer_max;
        let Some(conn) = self.get_mut(index) else {
            return;
        };
        if let Err(e) = conn.flush() {
            self.close(index, None, &format!("write: {e}"), metrics);
            return;
        }
        if conn.closing && conn.unsent() == 0 {
            self.drop_connection(index, metrics);
        } else if conn.unsent() > write_buffer_max {
            let unsent = conn.unsent();
            self.close(
                index,
                Some(Code::SlowConsumer),
                &format!("{unsent} bytes unsent"),
                metrics,
            );
        }
    }

    pub fn flush_all(&mut self, metrics: &Metrics) {
        for index in 0..self.conns.len() {
            if matches!(&self.conns[index], Some(c) if c.unsent() > 0 || c.closing) {
                self.flush(index, metrics);
            }
        }
    }

    /// Close for `code` (sent in an ERROR frame first, best effort), or quietly.
    pub fn close(&mut self, index: usize, code: Option<Code>, why: &str, metrics: &Metrics) {
        let Some(conn) = self.get_mut(index) else {
            return;
        };
        if let Some(code) = code {
            log::line(
                Level::Warn,
                "connection_closed",
                Some(log::engine_code(code)),
                &[("peer", &conn.peer), ("why", &why)],
            );
            Metrics::count(&metrics.connections_closed, code.number());
            if code != Code::SlowConsumer {
                conn.send_error(code.number(), why.to_string());
                let _ = conn.flush();
            }
        }
        self.drop_connection(index, metrics);
    }

    fn drop_connection(&mut self, index: usize, metrics: &Metrics) {
        let Some(mut conn) = self.conns[index].take() else {
            return;
        };
        let _ = self.registry.deregister(&mut conn.stream);
        if let Some(client) = conn.client {
            if self.clients.get(&client) == Some(&conn.me) {
                // Pushes go to another open connection of the same client, if it has one.
                let other = self
                    .conns
                    .iter()
                    .flatten()
                    .filter(|c| c.client == Some(client))
                    .map(|c| c.me)
                    .next_back();
                match other {
                    Some(other) => self.clients.insert(client, other),
                    None => self.clients.remove(&client),
                };
            }
        }
        self.free.push(index);
        self.open -= 1;
        metrics.connections.store(self.open as u64, Relaxed);
    }

    /// Close connections whose started frame (or hello) is older than the frame timeout.
    pub fn time_out_frames(&mut self, now_ns: u64, metrics: &Metrics) {
        let timeout_ns = self.limits.frame_timeout_ms.saturating_mul(1_000_000);
        for index in 0..self.conns.len() {
            let expired = matches!(&self.conns[index],
                Some(c) if c.waiting_since_ns.is_some_and(|since| now_ns.saturating_sub(since) >= timeout_ns));
            if expired {
                self.close(
                    index,
                    Some(Code::FrameTimeout),
                    "incomplete frame or no hello",
                    metrics,
                );
            }
        }
    }

    /// Whether every answer encoded has been written out.
    pub fn all_sent(&self) -> bool {
        self.iter().all(|c| c.unsent() == 0)
    }

    /// The journal failed: tell every client, best effort.
    pub fn fail_all(&mut self) {
        for conn in self.conns.iter_mut().flatten() {
            conn.send_error(
                Code::ServerFailed.number(),
                "the journal failed; resend unanswered requests with the same ids after the restart"
                    .into(),
            );
            let _ = conn.flush();
        }
    }
}
