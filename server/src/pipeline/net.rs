//! The network at intake's edge, behind two small traits: a listener that accepts client
//! streams, and a stream that reads and writes bytes. Both are mio sources, so the gateway
//! polls them like sockets. Production uses mio's TCP types; a simulator can put streams of
//! its own here (a Unix socket pair with faults injected, say) without touching intake.

use std::io;
use std::net::SocketAddr;

pub trait ClientListener: mio::event::Source + Send + 'static {
    type Stream: ClientStream;
    /// The next waiting connection; `WouldBlock` when there is none.
    fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

pub trait ClientStream: io::Read + io::Write + mio::event::Source + Send + 'static {
    /// Send small answers at once (no Nagle delay).
    fn set_nodelay(&self, on: bool) -> io::Result<()>;

    /// Bytes (or, where the stream cannot count them, 1 for "some") the stream itself holds
    /// that the socket has not taken yet: `flush` sends them on the next writable event.
    fn buffered(&self) -> usize {
        0
    }
}

impl ClientListener for mio::net::TcpListener {
    type Stream = mio::net::TcpStream;

    fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        mio::net::TcpListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        mio::net::TcpListener::local_addr(self)
    }
}

impl ClientStream for mio::net::TcpStream {
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        mio::net::TcpStream::set_nodelay(self, on)
    }
}
