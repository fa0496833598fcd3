//! One non-blocking connection: requests are encoded into an output buffer and written as the
//! socket takes them; whatever arrives is decoded into answers and pushes. `wait` sleeps in
//! `ppoll`, whose timeout has nanosecond resolution (epoll's is a millisecond, far too coarse
//! to keep a schedule of requests microseconds apart).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use engine::wire::{Operation, Reply};
use engine::RequestId;

use crate::client::{Handover, Incoming};
use crate::protocol::{ConnectionLost, Protocol};
use crate::traffic::Setup;

pub struct Conn {
    stream: TcpStream,
    protocol: Box<dyn Protocol>,
    out: Vec<u8>,
    written: usize,
    /// Bytes read and not yet decoded are `input[decoded..filled]`; the buffer is zeroed
    /// once (when it grows), not on every read.
    input: Vec<u8>,
    decoded: usize,
    filled: usize,
    next_request: u64,
}

/// Initial input buffer; it doubles when a message does not fit.
const INPUT_LEN: usize = 256 << 10;

impl Conn {
    /// Drive `handed.stream`, starting with the bytes already received on it.
    pub fn new(handed: Handover, protocol: Box<dyn Protocol>) -> io::Result<Conn> {
        let Handover { stream, unread } = handed;
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let mut input = vec![0; INPUT_LEN.max(unread.len().next_power_of_two())];
        input[..unread.len()].copy_from_slice(&unread);
        Ok(Conn {
            stream,
            protocol,
            out: Vec::with_capacity(64 << 10),
            written: 0,
            input,
            decoded: 0,
            filled: unread.len(),
            next_request: 1,
        })
    }

    /// Request ids continue from here (the caller picks a range no earlier run used).
    pub fn set_next_request(&mut self, next: u64) {
        self.next_request = next;
    }

    /// Encode one request under the next request id.
    pub fn queue(&mut self, operation: &Operation) -> anyhow::Result<RequestId> {
        let request = RequestId(self.next_request);
        self.next_request += 1;
        self.protocol.encode(request, operation, &mut self.out)?;
        Ok(request)
    }

    /// Encode a request again under its original id (a resend after failover).
    pub fn requeue(&mut self, request: RequestId, operation: &Operation) -> anyhow::Result<()> {
        self.protocol.encode(request, operation, &mut self.out)
    }

    /// The id the next request gets.
    pub fn next_request(&self) -> u64 {
        self.next_request
    }

    pub fn unwritten(&self) -> bool {
        self.written < self.out.len()
    }

    /// Seal what was queued and write as much as the socket takes now.
    pub fn write_some(&mut self) -> Result<(), ConnectionLost> {
        self.protocol.seal(&mut self.out);
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(ConnectionLost::new("DISCONNECTED", "write returned 0")),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnectionLost::new("DISCONNECTED", e)),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        }
        Ok(())
    }

    /// Read what has arrived (without waiting) and decode it into `incoming`.
    pub fn read_some(&mut self, incoming: &mut Vec<Incoming>) -> Result<(), ConnectionLost> {
        loop {
            if self.filled == self.input.len() {
                self.make_room();
            }
            match self.stream.read(&mut self.input[self.filled..]) {
                Ok(0) => return Err(ConnectionLost::new("DISCONNECTED", "the server closed")),
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnectionLost::new("DISCONNECTED", e)),
            }
            let used = self
                .protocol
                .decode(&self.input[self.decoded..self.filled], incoming)?;
            self.decoded += used;
            if self.decoded == self.filled {
                (self.decoded, self.filled) = (0, 0);
            }
        }
        Ok(())
    }

    /// Move undecoded bytes to the front, or grow when they fill the buffer.
    fn make_room(&mut self) {
        if self.decoded > 0 {
            self.input.copy_within(self.decoded..self.filled, 0);
            self.filled -= self.decoded;
            self.decoded = 0;
        } else {
            self.input.resize(self.input.len() * 2, 0);
        }
    }

    /// Sleep until the socket is readable (or writable, while output is pending) or
    /// `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        wait_any(&mut [self.poll_fd()], timeout);
    }

    /// What `wait_any` watches for on this connection: readable, and writable while output
    /// is pending.
    pub fn poll_fd(&self) -> libc::pollfd {
        libc::pollfd {
            fd: self.stream.as_raw_fd(),
            events: libc::POLLIN | if self.unwritten() { libc::POLLOUT } else { 0 },
            revents: 0,
        }
    }
}

/// Sleep until one of `fds` is ready or `timeout` passes (`ppoll`: nanosecond resolution).
pub fn wait_any(fds: &mut [libc::pollfd], timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` is a valid slice of pollfds and `ts` a valid timespec, both live for the
    // call.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
}

/// How long setup requests may take in all.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

impl Setup for Conn {
    fn call_all(&mut self, operations: &[Operation]) -> anyhow::Result<Vec<Reply>> {
        let mut ids = Vec::with_capacity(operations.len());
        for operation in operations {
            ids.push(self.queue(operation)?);
        }
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut replies = Vec::with_capacity(ids.len());
        let mut incoming = Vec::new();
        while replies.len() < ids.len() {
            self.write_some()?;
            self.read_some(&mut incoming)?;
            for item in incoming.drain(..) {
                if let Incoming::Answer(answer) = item {
                    anyhow::ensure!(
                        answer.request == ids[replies.len()],
                        "setup: answer for request {} out of order",
                        answer.request.0
                    );
                    replies.push(answer.reply);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(!left.is_zero(), "setup: no answer within {SETUP_TIMEOUT:?}");
            if replies.len() < ids.len() {
                self.wait(left.min(Duration::from_millis(100)));
            }
        }
        Ok(replies)
    }
}
