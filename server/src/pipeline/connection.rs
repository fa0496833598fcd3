//! One client connection as the gateway holds it: the stream, a read buffer that grows only
//! as far as the frame being read needs (at most one frame), a write buffer of encoded
//! answers, and the counts that bound both (requests in flight, bytes unsent).

use std::io;
use std::net::SocketAddr;

use engine::wire::{self, frame_kind, CountedFrame, ErrorFrame};
use engine::{ClientId, Event};

use crate::pipeline::net::ClientStream;
use crate::pipeline::slot::ConnRef;

/// Read buffer a connection starts with (and shrinks back to).
const READ_BUFFER_LEN: usize = 64 << 10;
/// An ANSWERS frame is closed once it holds this much (and a new one begun).
const ANSWERS_FRAME_SOFT_MAX: usize = 64 << 10;
/// A write buffer that grew past this is given back once it empties.
const WRITE_BUFFER_KEEP: usize = 1 << 20;

pub struct Connection<S> {
    pub stream: S,
    pub peer: SocketAddr,
    pub me: ConnRef,
    pub client: Option<ClientId>,
    read_buf: Vec<u8>,
    /// Bytes `read_buf[read_start..read_end]` are received and not yet consumed.
    read_start: usize,
    read_end: usize,
    write_buf: Vec<u8>,
    written: usize,
    answers: Option<CountedFrame>,
    /// Requests sequenced and not yet answered.
    pub in_flight: u32,
    /// The socket may have more to read (edge-triggered: cleared only on WouldBlock).
    pub readable: bool,
    /// A whole frame waits in the buffer for backpressure to ease (in flight, unsent
    /// answers, ring room): retried after answers are released, whatever the socket does.
    pub blocked: bool,
    /// When (`mono_ns`) the oldest unconsumed byte was read: what the request-latency
    /// metric counts from (never later than the truth for any request in the buffer).
    pub unread_since_ns: u64,
    /// Since when (`mono_ns`) an incomplete frame (or the missing hello) has been waited for.
    pub waiting_since_ns: Option<u64>,
    /// Set when the connection is to be dropped once its last bytes are flushed.
    pub closing: bool,
}

impl<S: ClientStream> Connection<S> {
    pub fn new(stream: S, peer: SocketAddr, me: ConnRef, now_ns: u64) -> Connection<S> {
        Connection {
            stream,
            peer,
            me,
            client: None,
            read_buf: vec![0; READ_BUFFER_LEN],
            read_start: 0,
            read_end: 0,
            write_buf: Vec::new(),
            written: 0,
            answers: None,
            in_flight: 0,
            readable: true,
            blocked: false,
            unread_since_ns: now_ns,
            waiting_since_ns: Some(now_ns),
            closing: false,
        }
    }

    /// Bytes received and not yet consumed.
    pub fn unread(&self) -> &[u8] {
        &self.read_buf[self.read_start..self.read_end]
    }

    pub fn consume(&mut self, n: usize) {
        self.read_start += n;
        debug_assert!(self.read_start <= self.read_end);
        if self.read_start == self.read_end {
            self.read_start = 0;
            self.read_end = 0;
        }
    }

    /// Read once from the socket into the buffer, at `now_ns`. `Ok(0)` is end of stream.
    pub fn fill(&mut self, now_ns: u64) -> io::Result<usize> {
        // Room for the frame being received: grow to its length (bounded by FRAME_LEN_MAX,
        // checked before this), or compact what is left to the front.
        let pending = self.read_end - self.read_start;
        let wanted = match wire::split_frame(self.unread()) {
            Ok(None) if pending >= 4 => {
                let len = u32::from_le_bytes(self.unread()[..4].try_into().expect("4"));
                4 + len as usize
            }
            _ => 0,
        };
        if self.read_end == self.read_buf.len() || wanted > self.read_buf.len() - self.read_start {
            self.read_buf.copy_within(self.read_start..self.read_end, 0);
            self.read_start = 0;
            self.read_end = pending;
            if wanted > self.read_buf.len() {
                self.read_buf.resize(wanted, 0);
            }
        } else if pending == 0 && self.read_buf.len() > READ_BUFFER_LEN {
            self.read_buf.truncate(READ_BUFFER_LEN);
            self.read_buf.shrink_to_fit();
        }
        let n = self.stream.read(&mut self.read_buf[self.read_end..])?;
        if pending == 0 && n > 0 {
            self.unread_since_ns = now_ns;
        }
        self.read_end += n;
        Ok(n)
    }

    /// Bytes encoded and not yet written to the socket (some may wait inside the stream:
    /// TLS records sealed and not yet sent).
    pub fn unsent(&self) -> usize {
        self.write_buf.len() - self.written + self.stream.buffered()
    }

    /// Append to the open ANSWERS frame (opening one if needed) with `encode`.
    pub fn answer(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let frame = self
            .answers
            .get_or_insert_with(|| CountedFrame::begin(&mut self.write_buf, frame_kind::ANSWERS));
        encode(&mut self.write_buf);
        frame.added();
        if frame.len(&self.write_buf) >= ANSWERS_FRAME_SOFT_MAX {
            self.close_frames();
        }
    }

    pub fn push(&mut self, seq: u64, event: &Event) {
        self.close_frames();
        let mut frame = CountedFrame::begin(&mut self.write_buf, frame_kind::PUSH);
        wire::encode_push(seq, event, &mut self.write_buf);
        frame.added();
        frame.finish(&mut self.write_buf);
    }

    pub fn send_frame(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        self.close_frames();
        encode(&mut self.write_buf);
    }

    pub fn send_error(&mut self, code: u16, message: String) {
        self.send_frame(|out| ErrorFrame { code, message }.encode(out));
    }

    /// Finish the open ANSWERS frame, if any.
    pub fn close_frames(&mut self) {
        if let Some(frame) = self.answers.take() {
            frame.finish(&mut self.write_buf);
        }
    }

    /// Write what can be written now. `Err` means the connection is broken.
    pub fn flush(&mut self) -> io::Result<()> {
        self.close_frames();
        while self.written < self.write_buf.len() {
            match self.stream.write(&self.write_buf[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.write_buf.clear();
        self.written = 0;
        if self.write_buf.capacity() > WRITE_BUFFER_KEEP {
            self.write_buf.shrink_to(WRITE_BUFFER_KEEP);
        }
        match self.stream.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }
}
