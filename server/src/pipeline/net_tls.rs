//! TLS on the client port (`gateway.tls_cert`, `gateway.tls_key`): a listener and a stream
//! that wrap mio's TCP types in a rustls server session, behind the same `ClientListener`
//! and `ClientStream` traits the gateway polls. Non-blocking throughout: a read pulls TLS
//! records off the socket until it would block, answering the handshake as it goes; a write
//! hands plaintext to rustls and pushes sealed records out as far as the socket takes them,
//! and what it does not take waits in the session (`buffered`) for the next writable event.
//! The session's outgoing buffer is bounded, so a client that stops reading still fills
//! `gateway.write_buffer_max` and is closed as a slow consumer.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::event::Source;
use mio::{Interest, Registry, Token};

use crate::pipeline::net::{ClientListener, ClientStream};

/// Sealed bytes a session may hold unsent before its writes would block.
const SESSION_OUT_MAX: usize = 256 << 10;

pub struct TlsListener {
    tcp: mio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
}

impl TlsListener {
    pub fn new(tcp: mio::net::TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        TlsListener { tcp, config }
    }
}

impl ClientListener for TlsListener {
    type Stream = TlsClientStream;

    fn accept(&self) -> io::Result<(TlsClientStream, SocketAddr)> {
        let (tcp, peer) = self.tcp.accept()?;
        let mut session = rustls::ServerConnection::new(self.config.clone())
            .map_err(|e| io::Error::other(e.to_string()))?;
        session.set_buffer_limit(Some(SESSION_OUT_MAX));
        Ok((TlsClientStream { tcp, session }, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

impl Source for TlsListener {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.tcp.register(r, t, i)
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.tcp.reregister(r, t, i)
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        self.tcp.deregister(r)
    }
}

pub struct TlsClientStream {
    tcp: mio::net::TcpStream,
    session: rustls::ServerConnection,
}

impl TlsClientStream {
    /// Push sealed records to the socket until it would block or none are left.
    fn send_sealed(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Read for TlsClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.session.reader().read(buf) {
                // 0 here is the client's close_notify: a clean end of stream.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.session.read_tls(&mut self.tcp) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.send_sealed()?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
            if let Err(e) = self.session.process_new_packets() {
                // Tell the client why (a TLS alert), then give up on the connection.
                let _ = self.send_sealed();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // The handshake's answers, and anything the session wants to say.
            self.send_sealed()?;
        }
    }
}

impl Write for TlsClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let taken = self.session.writer().write(buf)?;
        self.send_sealed()?;
        if taken == 0 && !buf.is_empty() {
            // The session's buffer is full until the socket takes some of it.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_sealed()
    }
}

impl Source for TlsClientStream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.tcp.register(r, t, i)
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.tcp.reregister(r, t, i)
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        self.tcp.deregister(r)
    }
}

impl ClientStream for TlsClientStream {
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp.set_nodelay(on)
    }

    fn buffered(&self) -> usize {
        usize::from(self.session.wants_write())
    }
}
