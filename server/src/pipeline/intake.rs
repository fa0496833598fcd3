//! Intake: connections in, frames off them. It accepts connections, reads each one's bytes,
//! splits the buffer into frames (once per frame), answers the HELLO, and decodes a REQUESTS
//! frame straight into the sequencer, refusing what may not go in (bad requests, writes this
//! node does not take, requests while draining) with a code.
//!
//! Backpressure (`admit`): a frame is not taken while its connection would have more than
//! `in_flight_max` requests unanswered, while its unsent answers pass a quarter of
//! `write_buffer_max`, or while the ring has no room for all of it. The frame stays in the
//! buffer and the rest in the socket (TCP flow control does the rest), so memory per
//! connection is bounded by one frame in and `write_buffer_max` out.

use std::io;
use std::sync::atomic::Ordering::SeqCst;

use engine::wire::{self, frame_kind, Hello, Operation, Welcome, FRAME_HEADER_LEN};
use engine::{ClientId, Code, RequestId};
use mio::Registry;

use crate::config::GatewaySection;
use crate::group::node::Node;
use crate::group::role::Role;
use crate::pipeline::connections::Connections;
use crate::pipeline::net::ClientListener;
use crate::pipeline::sequencer::Sequencer;
use crate::pipeline::shared::Shared;
use crate::telemetry::log::{self, Level};
use crate::telemetry::metrics::Metrics;

/// Frames handled from one connection per turn before the others get theirs.
const FRAMES_PER_TURN: usize = 64;

/// Why a whole frame waits instead of being sequenced now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The connection would have more than `in_flight_max` requests unanswered.
    InFlight,
    /// The connection's unsent answers pass a quarter of `write_buffer_max`: it is not
    /// reading them.
    AnswersPilingUp,
    /// The ring has no room for the whole frame.
    RingFull,
}

/// The backpressure rule for a frame of `count` requests. A connection with nothing in
/// flight always gets one frame in (a frame larger than `in_flight_max` must not wait for
/// ever).
pub fn admit(
    in_flight: u32,
    count: u32,
    in_flight_max: u32,
    unsent: usize,
    write_buffer_max: usize,
    free_slots: usize,
) -> Result<(), Hold> {
    if in_flight > 0 && in_flight + count > in_flight_max {
        return Err(Hold::InFlight);
    }
    if unsent > write_buffer_max / 4 {
        return Err(Hold::AnswersPilingUp);
    }
    if free_slots < count as usize {
        return Err(Hold::RingFull);
    }
    Ok(())
}

/// How serving one connection ended this turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Read everything there was, or gave way to others.
    Done,
    /// Cannot take the next frame until answers drain or the ring frees up.
    Blocked,
    Closed,
}

pub struct Intake<L: ClientListener> {
    listener: Option<L>,
    limits: GatewaySection,
    /// Requests of the frame being taken that go into the ring.
    admitted: Vec<(RequestId, Operation)>,
    /// Requests of the frame being taken that are refused: (request, code, subject).
    refused: Vec<(RequestId, Code, u64)>,
}

impl<L: ClientListener> Intake<L> {
    pub fn new(listener: L, limits: GatewaySection) -> Intake<L> {
        Intake {
            listener: Some(listener),
            limits,
            admitted: Vec::new(),
            refused: Vec::new(),
        }
    }

    pub fn listener_mut(&mut self) -> Option<&mut L> {
        self.listener.as_mut()
    }

    /// Take every waiting connection.
    pub fn accept(&mut self, conns: &mut Connections<L::Stream>, now_ns: u64, metrics: &Metrics) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, peer)) => conns.add(stream, peer, now_ns, metrics),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of descriptors and the like: say so, keep serving the others.
                    log::line(Level::Warn, "accept_failed", None, &[("error", &e)]);
                    return;
                }
            }
        }
    }

    /// Stop taking connections (draining).
    pub fn stop_listening(&mut self, registry: &Registry) {
        if let Some(mut listener) = self.listener.take() {
            let _ = registry.deregister(&mut listener);
        }
    }

    /// Serve every connection with bytes to read, or with whole frames held back earlier
    /// (those must be retried even when the socket has nothing new).
    pub fn serve_reads(
        &mut self,
        conns: &mut Connections<L::Stream>,
        sequencer: &mut Sequencer,
        node: &Node,
        shared: &Shared,
    ) {
        for index in 0..conns.slots() {
            let ready = matches!(conns.get(index),
                Some(c) if (c.readable || c.blocked) && !c.closing);
            if ready {
                let turn = self.serve(index, conns, sequencer, node, shared);
                if let Some(conn) = conns.get_mut(index) {
                    conn.blocked = turn == Turn::Blocked;
                }
            }
        }
    }

    /// Handle what this connection has sent, reading more while it can take it.
    fn serve(
        &mut self,
        index: usize,
        conns: &mut Connections<L::Stream>,
        sequencer: &mut Sequencer,
        node: &Node,
        shared: &Shared,
    ) -> Turn {
        let metrics = &shared.metrics;
        let mut frames = 0;
        loop {
            match self.take_frames(index, &mut frames, conns, sequencer, node, shared) {
                Turn::Done => {}
                other => return other,
            }
            if frames >= FRAMES_PER_TURN {
                return Turn::Done;
            }
            let conn = conns.get_mut(index).expect("serving an open connection");
            if !conn.readable {
                return Turn::Done;
            }
            match conn.fill(sequencer.mono_ns()) {
                Ok(0) => {
                    conns.close(index, None, "peer closed", metrics);
                    return Turn::Closed;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.readable = false;
                    return self.take_frames(index, &mut frames, conns, sequencer, node, shared);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    conns.close(index, None, &format!("read: {e}"), metrics);
                    return Turn::Closed;
                }
            }
        }
    }

    /// Handle every complete frame in the buffer, until blocked.
    fn take_frames(
        &mut self,
        index: usize,
        frames: &mut usize,
        conns: &mut Connections<L::Stream>,
        sequencer: &mut Sequencer,
        node: &Node,
        shared: &Shared,
    ) -> Turn {
        let metrics = &shared.metrics;
        loop {
            let now_ns = sequencer.mono_ns();
            let conn = conns.get_mut(index).expect("open");
            // The one split of this frame: its kind and length; the body is sliced from them.
            let (kind, len) = match wire::split_frame(conn.unread()) {
                Ok(Some(frame)) => (frame.kind, frame.len),
                Ok(None) => {
                    let waiting = !conn.unread().is_empty() || conn.client.is_none();
                    if !waiting {
                        conn.waiting_since_ns = None;
                    } else if conn.waiting_since_ns.is_none() {
                        conn.waiting_since_ns = Some(now_ns);
                    }
                    return Turn::Done;
                }
                Err(code) => {
                    conns.close(index, Some(code), "bad frame length", metrics);
                    return Turn::Closed;
                }
            };
            // A whole frame is here: whatever happens to it now (backpressure included) is
            // not the client being slow to send.
            conn.waiting_since_ns = None;
            let said_hello = conn.client.is_some();
            let result = match (kind, said_hello) {
                (frame_kind::HELLO, false) => self.hello(index, len, conns, node),
                (frame_kind::HELLO, true) => Err(Code::DuplicateHello),
                (frame_kind::REQUESTS, true) => {
                    match self.take_requests(index, len, conns, sequencer, node, shared) {
                        Ok(true) => Ok(()),
                        Ok(false) => return Turn::Blocked,
                        Err(code) => Err(code),
                    }
                }
                (_, false) => Err(Code::HelloRequired),
                (_, true) => Err(Code::UnknownFrameKind),
            };
            if let Err(code) = result {
                conns.close(index, Some(code), &format!("frame kind {kind}"), metrics);
                return Turn::Closed;
            }
            conns.get_mut(index).expect("open").consume(len);
            *frames += 1;
            if *frames >= FRAMES_PER_TURN {
                return Turn::Done;
            }
        }
    }

    fn hello(
        &mut self,
        index: usize,
        len: usize,
        conns: &mut Connections<L::Stream>,
        node: &Node,
    ) -> Result<(), Code> {
        let conn = conns.get_mut(index).expect("open");
        let hello = Hello::decode(&conn.unread()[FRAME_HEADER_LEN..len])?;
        if hello.version != wire::PROTOCOL_VERSION {
            return Err(Code::UnsupportedVersion);
        }
        if hello.client == ClientId::SYSTEM {
            return Err(Code::BadClientId);
        }
        if hello.epoch > node.epoch() {
            node.fenced_by(
                hello.epoch,
                &format!(
                    "client {} at {} was welcomed at epoch {}",
                    hello.client.0, conn.peer, hello.epoch
                ),
            );
        }
        let welcome = Welcome {
            version: wire::PROTOCOL_VERSION,
            role: match node.role() {
                Role::Standby | Role::Promoting => wire::Role::Standby,
                Role::Primary | Role::Fenced => wire::Role::Primary,
            },
            in_flight_max: self.limits.in_flight_max,
            frame_len_max: wire::FRAME_LEN_MAX as u32,
            requests_per_frame_max: wire::REQUESTS_PER_FRAME_MAX,
            epoch: node.epoch(),
        };
        conn.send_frame(|out| welcome.encode(out));
        conns.said_hello(index, hello.client);
        Ok(())
    }

    /// Sequence the REQUESTS frame of `len` bytes at the front of this connection's buffer.
    /// `Ok(false)`: not now (backpressure), the frame stays where it is.
    fn take_requests(
        &mut self,
        index: usize,
        len: usize,
        conns: &mut Connections<L::Stream>,
        sequencer: &mut Sequencer,
        node: &Node,
        shared: &Shared,
    ) -> Result<bool, Code> {
        let free_slots = sequencer.free_slots();
        let conn = conns.get_mut(index).expect("open");
        let requests = wire::decode_requests(&conn.unread()[FRAME_HEADER_LEN..len])?;
        let held = admit(
            conn.in_flight,
            requests.len() as u32,
            self.limits.in_flight_max,
            conn.unsent(),
            self.limits.write_buffer_max,
            free_slots,
        );
        if held.is_err() {
            return Ok(false);
        }
        self.admitted.clear();
        self.refused.clear();
        let draining = shared.draining.load(SeqCst);
        let writes_refused = node.write_refusal();
        for request in requests {
            let refusal = match &request.operation {
                Ok(_) if draining => Some((Code::ShuttingDown, u64::from(request.op))),
                Ok(Operation::Command(_)) => writes_refused.map(|c| (c, u64::from(request.op))),
                Ok(Operation::Query(_)) => None,
                Err((code, subject)) => Some((*code, *subject)),
            };
            match (refusal, request.operation) {
                (Some((code, subject)), _) => self.refused.push((request.request, code, subject)),
                (None, Ok(operation)) => self.admitted.push((request.request, operation)),
                (None, Err(_)) => unreachable!("a decoding error is a refusal"),
            }
        }
        for &(request, code, subject) in &self.refused {
            Metrics::count(&shared.metrics.answers, code.number());
            conn.answer(|out| wire::encode_refusal(request, 0, code, subject, out));
        }
        if !self.admitted.is_empty() {
            conn.in_flight += self.admitted.len() as u32;
            let (me, client) = (conn.me, conn.client.expect("after hello"));
            let received_ns = conn.unread_since_ns;
            sequencer.publish_requests(me, client, received_ns, self.admitted.drain(..));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backpressure_decisions() {
        // in_flight, count, in_flight_max, unsent, write_buffer_max, free_slots → decision
        let table = [
            (0, 10, 100, 0, 4000, 100, Ok(())),
            (90, 10, 100, 0, 4000, 100, Ok(())),
            (91, 10, 100, 0, 4000, 100, Err(Hold::InFlight)),
            // nothing in flight: one frame always goes in, however large
            (0, 500, 100, 0, 4000, 1000, Ok(())),
            (0, 10, 100, 1000, 4000, 100, Ok(())),
            (0, 10, 100, 1001, 4000, 100, Err(Hold::AnswersPilingUp)),
            (0, 10, 100, 0, 4000, 9, Err(Hold::RingFull)),
            (0, 10, 100, 0, 4000, 10, Ok(())),
            // several reasons: in-flight is named first
            (95, 10, 100, 5000, 4000, 0, Err(Hold::InFlight)),
            (0, 10, 100, 5000, 4000, 0, Err(Hold::AnswersPilingUp)),
        ];
        for (in_flight, count, max, unsent, wmax, free, want) in table {
            assert_eq!(
                admit(in_flight, count, max, unsent, wmax, free),
                want,
                "in_flight {in_flight} count {count} unsent {unsent} free {free}"
            );
        }
    }
}
