//! The network at replication's edge, behind three small traits: a `Listener` the primary
//! accepts standbys on, a `Dialer` the standby reaches its primary with, and the `Conn` both
//! talk over (blocking reads and writes with timeouts, a clone for the second thread of a
//! session, a shutdown that ends both). Production uses TCP; a simulator can hand in
//! connections of its own (in-memory pipes with faults) without touching the stream logic.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

pub trait Conn: Read + Write + Send + 'static {
    /// A second handle on the same connection (a session reads acks on one thread and sends
    /// records on another).
    fn clone_conn(&self) -> io::Result<Stream>;
    /// End the connection in both directions; the other handles see it closed.
    fn shutdown(&self);
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

pub type Stream = Box<dyn Conn>;

pub trait Listener: Send + 'static {
    /// The next waiting connection, if there is one (never blocks).
    fn accept(&self) -> io::Result<Option<(Stream, SocketAddr)>>;
}

pub trait Dialer: Send + Sync {
    fn dial(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Stream>;
}

impl Conn for TcpStream {
    fn clone_conn(&self) -> io::Result<Stream> {
        Ok(Box::new(self.try_clone()?))
    }

    fn shutdown(&self) {
        let _ = TcpStream::shutdown(self, Shutdown::Both);
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

/// A TCP listener, polled: `accept` returns at once.
pub struct TcpAcceptor(TcpListener);

impl TcpAcceptor {
    pub fn new(listener: TcpListener) -> io::Result<TcpAcceptor> {
        listener.set_nonblocking(true)?;
        Ok(TcpAcceptor(listener))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl TcpAcceptor {
    /// The next waiting connection as a blocking TCP stream with Nagle off, if there is one
    /// (`()` keeps the shape of `accept`'s answer for the TLS acceptor that wraps it).
    pub fn accept_tcp(&self) -> io::Result<Option<((), SocketAddr, TcpStream)>> {
        match self.0.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false)?;
                let _ = stream.set_nodelay(true);
                Ok(Some(((), peer, stream)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Listener for TcpAcceptor {
    fn accept(&self) -> io::Result<Option<(Stream, SocketAddr)>> {
        Ok(self
            .accept_tcp()?
            .map(|((), peer, stream)| (Box::new(stream) as Stream, peer)))
    }
}

/// Dials TCP, with Nagle off.
pub struct TcpDialer;

impl TcpDialer {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Dialer for TcpDialer {
    fn dial(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Stream> {
        Ok(Box::new(TcpDialer::connect(addr, timeout)?))
    }
}
