//! The blocking client's socket: plain TCP, or TLS over it (a server with
//! `gateway.tls_cert`). Reads and writes go through whichever it is; timeouts are the TCP
//! socket's.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// How to speak TLS to the client port: the rustls config (the CA the server's certificate
/// chains to) and the name to check the certificate for.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

pub enum ClientConn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl ClientConn {
    /// Over `tcp`, with TLS if `tls` is given (the handshake happens with the first write).
    pub fn new(tcp: TcpStream, tls: Option<&ClientTls>) -> io::Result<ClientConn> {
        Ok(match tls {
            None => ClientConn::Plain(tcp),
            Some(tls) => {
                let session =
                    rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone())
                        .map_err(|e| io::Error::other(e.to_string()))?;
                ClientConn::Tls(Box::new(rustls::StreamOwned::new(session, tcp)))
            }
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientConn::Plain(tcp) => tcp,
            ClientConn::Tls(tls) => &tls.sock,
        }
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(timeout)
    }
}

impl Read for ClientConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientConn::Plain(tcp) => tcp.read(buf),
            ClientConn::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for ClientConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientConn::Plain(tcp) => tcp.write(buf),
            ClientConn::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientConn::Plain(tcp) => tcp.flush(),
            ClientConn::Tls(tls) => tls.flush(),
        }
    }
}
