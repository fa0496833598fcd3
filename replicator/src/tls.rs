//! TLS on the replication port (rustls): a `Conn` both threads of a session can use at once,
//! a listener that makes every accepted connection TLS (and answers a plaintext standby with
//! a clear refusal before closing), and a dialer for the standby side.
//!
//! One rustls connection is shared by the handles of a session. Encrypting and decrypting
//! happen under its lock; the socket is never read or written under it, so a sender blocked
//! on a full socket never stops the other thread from reading. Bytes leave in the order they
//! were encrypted: a second lock (`send`) is taken before the connection's and held until the
//! bytes are on the socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::code::ReplicationCode;
use crate::net::{Conn, Dialer, Listener, Stream, TcpAcceptor, TcpDialer};
use crate::wire::{self, Message};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 32 << 10;
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// TLS settings for replication: this node's certificate and key (it serves them as a
/// primary, and shows them as a standby when the primary asks), and the CA that signed the
/// other node's.
#[derive(Clone)]
pub struct TlsSettings {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
    /// The name the standby checks the primary's certificate for; `None`: its address.
    pub server_name: Option<String>,
}

impl TlsSettings {
    /// From PEM files. With `require_client_cert` the primary takes only standbys whose
    /// certificate `ca` signed.
    pub fn from_files(
        cert: &Path,
        key: &Path,
        ca: &Path,
        require_client_cert: bool,
        server_name: Option<String>,
    ) -> Result<TlsSettings, String> {
        let chain = pem_chain(cert)?;
        let server_name = match server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map(|_| name)
                    .map_err(|e| format!("tls_server_name: {e}"))?,
            ),
            None => None,
        };
        let roots = Arc::new(pem_roots(ca)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let server = match require_client_cert {
            true => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.clone(),
                    provider.clone(),
                )
                .build()
                .map_err(|e| e.to_string())?;
                server.with_client_cert_verifier(verifier)
            }
            false => server.with_no_client_auth(),
        }
        .with_single_cert(chain.clone(), pem_key(key)?)
        .map_err(|e| format!("the certificate and the key do not go together: {e}"))?;
        let client = client_config(roots, Some((chain, pem_key(key)?)))?;
        Ok(TlsSettings {
            server: Arc::new(server),
            client,
            server_name,
        })
    }
}

/// A client config trusting `roots`, showing `identity` (a certificate chain and its key) to
/// servers that ask for one: the standby's side of replication, and surge's side of etcd.
pub fn client_config(
    roots: Arc<rustls::RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        None => config.with_no_client_auth(),
        Some((chain, key)) => config
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the certificate and the key do not go together: {e}"))?,
    };
    Ok(Arc::new(config))
}

/// A PEM certificate chain (at least one certificate).
pub fn pem_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(chain)
}

/// A PEM private key.
pub fn pem_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{}: not a PEM private key: {e}", path.display()))
}

/// The CA certificates of a PEM file (at least one), as trust roots.
pub fn pem_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: not a PEM file: {e}", path.display()))?
    {
        let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate in it", path.display()));
    }
    Ok(roots)
}

struct Shared {
    tls: Mutex<rustls::Connection>,
    /// Held from encrypting to the bytes being on the socket.
    send: Mutex<()>,
    /// Ciphertext read from the socket and not yet taken by the session; held by a reader
    /// across its socket read (only readers take it), so no handle's bytes are lost or
    /// reordered, whichever handle reads next.
    recv: Mutex<Received>,
    /// A write to the socket failed part-way: the stream has a hole, nothing more may go.
    broken: AtomicBool,
}

#[derive(Default)]
struct Received {
    bytes: Vec<u8>,
    at: usize,
    /// Where the socket is read into; swapped in only when a read succeeds (a read that
    /// times out leaves everything as it was).
    spare: Vec<u8>,
}

/// One handle on a TLS session.
pub struct TlsConn {
    tcp: TcpStream,
    shared: Arc<Shared>,
}

/// A failed TLS link: a handshake refused, a plaintext peer, an alert. What 421
/// `TLS_REQUIRED` reports; `is_tls_failure` finds it inside an `io::Error`.
#[derive(Debug)]
pub struct TlsFailure(pub String);

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = ReplicationCode::TlsRequired;
        write!(f, "{} ({}): {}", code.name(), code.number(), self.0)
    }
}

impl std::error::Error for TlsFailure {}

pub fn is_tls_failure(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TlsFailure>())
}

fn tls_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TlsFailure(e.to_string()))
}

/// `e` with `context` before it, keeping it a `TlsFailure` if it was one.
fn in_context(e: io::Error, context: &str) -> io::Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsFailure>())
    {
        Some(failure) => tls_error(format!("{context}: {}", failure.0)),
        None => io::Error::new(e.kind(), format!("{context}: {e}")),
    }
}

impl TlsConn {
    /// Complete the handshake on `tcp` (within its timeouts).
    fn establish(
        mut tcp: TcpStream,
        mut tls: rustls::Connection,
        within: Duration,
    ) -> io::Result<TlsConn> {
        // One deadline for the whole handshake: a peer sending a byte at a time gets no more.
        let deadline = std::time::Instant::now() + within;
        let (read_timeout, write_timeout) = (tcp.read_timeout()?, tcp.write_timeout()?);
        while tls.is_handshaking() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the TLS handshake took longer than {within:?}"),
                ));
            }
            tcp.set_read_timeout(Some(left))?;
            tcp.set_write_timeout(Some(left))?;
            if let Err(e) = tls.complete_io(&mut tcp) {
                // Say why to the other side (a queued alert), then fail.
                while tls.wants_write() && tls.write_tls(&mut tcp).is_ok() {}
                return Err(match e.kind() {
                    io::ErrorKind::InvalidData => tls_error(e),
                    _ => e,
                });
            }
        }
        tcp.set_read_timeout(read_timeout)?;
        tcp.set_write_timeout(write_timeout)?;
        Ok(TlsConn {
            tcp,
            shared: Arc::new(Shared {
                tls: Mutex::new(tls),
                send: Mutex::new(()),
                recv: Mutex::new(Received::default()),
                broken: AtomicBool::new(false),
            }),
        })
    }

    /// Send whatever the session has to say (under `send`, taken by the caller).
    fn flush_tls(&self) -> io::Result<()> {
        if self.shared.broken.load(SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write to this TLS session failed part-way",
            ));
        }
        let mut out = Vec::new();
        {
            let mut tls = self.shared.tls.lock().expect("tls lock");
            while tls.wants_write() {
                tls.write_tls(&mut out)?;
            }
        }
        (&self.tcp).write_all(&out).inspect_err(|_| {
            self.shared.broken.store(true, SeqCst);
        })
    }
}

impl Read for TlsConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut recv = self.shared.recv.lock().expect("recv lock");
        loop {
            let fed = {
                let mut tls = self.shared.tls.lock().expect("tls lock");
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if recv.at == recv.bytes.len() {
                    None
                } else {
                    let Received { bytes, at, .. } = &mut *recv;
                    *at += tls.read_tls(&mut &bytes[*at..])?;
                    match tls.process_new_packets() {
                        Ok(_) => Some(tls.wants_write()),
                        Err(e) => {
                            drop(tls);
                            // The alert rustls queued tells the other side why.
                            let _send = self.shared.send.lock().expect("send lock");
                            let _ = self.flush_tls();
                            return Err(tls_error(e));
                        }
                    }
                }
            };
            match fed {
                // What the session decrypted is read at the top.
                Some(true) => {
                    let _send = self.shared.send.lock().expect("send lock");
                    self.flush_tls()?;
                    continue;
                }
                Some(false) => continue,
                None => {}
            }
            let Received { bytes, at, spare } = &mut *recv;
            spare.resize(READ_CHUNK, 0);
            let n = (&self.tcp).read(spare)?;
            if n == 0 {
                return Ok(0);
            }
            spare.truncate(n);
            std::mem::swap(bytes, spare);
            *at = 0;
        }
    }
}

impl Write for TlsConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _send = self.shared.send.lock().expect("send lock");
        if self.shared.broken.load(SeqCst) {
            return self.flush_tls().map(|()| 0);
        }
        let n = self
            .shared
            .tls
            .lock()
            .expect("tls lock")
            .writer()
            .write(buf)?;
        self.flush_tls()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let _send = self.shared.send.lock().expect("send lock");
        self.flush_tls()
    }
}

impl Conn for TlsConn {
    fn clone_conn(&self) -> io::Result<Stream> {
        Ok(Box::new(TlsConn {
            tcp: self.tcp.try_clone()?,
            shared: self.shared.clone(),
        }))
    }

    fn shutdown(&self) {
        let _ = self.tcp.shutdown(Shutdown::Both);
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_write_timeout(timeout)
    }
}

/// Accepts TLS connections only. The handshake happens on the connection's own thread, at
/// its first read or write (`LazyTls`), so a slow or silent peer never holds up the accept
/// loop. A peer whose first bytes are not a TLS handshake (a standby without TLS) gets a
/// replication REFUSED with `TlsRequired` in plaintext, then is closed.
pub struct TlsAcceptor {
    tcp: TcpAcceptor,
    tls: TlsSettings,
    /// How long a connecting standby has for the whole TLS handshake.
    handshake_timeout: Duration,
}

impl TlsAcceptor {
    pub fn new(tcp: TcpAcceptor, tls: TlsSettings, handshake_timeout: Duration) -> TlsAcceptor {
        TlsAcceptor {
            tcp,
            tls,
            handshake_timeout,
        }
    }
}

impl Listener for TlsAcceptor {
    fn accept(&self) -> io::Result<Option<(Stream, SocketAddr)>> {
        let Some(((), peer, tcp)) = self.tcp.accept_tcp()? else {
            return Ok(None);
        };
        let lazy = LazyTls {
            state: Lazy::Pending {
                tcp,
                config: self.tls.server.clone(),
                within: self.handshake_timeout,
                peer,
            },
        };
        Ok(Some((Box::new(lazy), peer)))
    }
}

/// An accepted connection whose TLS handshake has not happened yet.
struct LazyTls {
    state: Lazy,
}

enum Lazy {
    Pending {
        tcp: TcpStream,
        config: Arc<rustls::ServerConfig>,
        within: Duration,
        peer: SocketAddr,
    },
    Ready(TlsConn),
    Failed(TcpStream),
}

impl LazyTls {
    fn ready(&mut self) -> io::Result<&mut TlsConn> {
        if let Lazy::Pending { tcp, .. } = &self.state {
            let failed = Lazy::Failed(tcp.try_clone()?);
            let Lazy::Pending {
                tcp,
                config,
                within,
                peer,
            } = std::mem::replace(&mut self.state, failed)
            else {
                unreachable!("checked")
            };
            let mut first = [0u8; 1];
            if tcp.peek(&mut first)? == 1 && first[0] != TLS_HANDSHAKE {
                refuse_plaintext(tcp);
                return Err(tls_error(format!(
                    "{peer} spoke plaintext to a TLS replication port"
                )));
            }
            let session = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
            let conn = TlsConn::establish(tcp, rustls::Connection::Server(session), within)
                .map_err(|e| in_context(e, &format!("TLS handshake with {peer}")))?;
            self.state = Lazy::Ready(conn);
        }
        match &mut self.state {
            Lazy::Ready(conn) => Ok(conn),
            _ => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the TLS handshake failed",
            )),
        }
    }

    fn tcp(&self) -> &TcpStream {
        match &self.state {
            Lazy::Pending { tcp, .. } | Lazy::Failed(tcp) => tcp,
            Lazy::Ready(conn) => &conn.tcp,
        }
    }
}

impl Read for LazyTls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ready()?.read(buf)
    }
}

impl Write for LazyTls {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ready()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ready()?.flush()
    }
}

impl Conn for LazyTls {
    fn clone_conn(&self) -> io::Result<Stream> {
        match &self.state {
            Lazy::Ready(conn) => conn.clone_conn(),
            _ => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no TLS session to share before the handshake",
            )),
        }
    }

    fn shutdown(&self) {
        let _ = self.tcp().shutdown(Shutdown::Both);
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(timeout)
    }
}

/// Tell a plaintext standby, in its own protocol, why it is refused.
fn refuse_plaintext(mut tcp: TcpStream) {
    let refusal = Message::refuse(
        ReplicationCode::TlsRequired,
        "this primary's replication port speaks TLS only: set replication.tls_cert, tls_key \
         and tls_ca on the standby too",
    );
    let _ = wire::send(&mut tcp, &refusal, &mut Vec::new());
    // Close our side and drain theirs briefly: closing with their HELLO unread would reset
    // the connection and could drop the refusal before it is read.
    let _ = tcp.shutdown(Shutdown::Write);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 1024];
    while matches!(tcp.read(&mut sink), Ok(n) if n > 0) {}
}

/// Dials the primary and completes a TLS handshake, checking its certificate.
pub struct TlsDialer(pub TlsSettings);

impl Dialer for TlsDialer {
    fn dial(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Stream> {
        let tcp = TcpDialer::connect(addr, timeout)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let name = match &self.0.server_name {
            Some(name) => ServerName::try_from(name.clone()),
            None => Ok(ServerName::from(addr.ip())),
        }
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let session =
            rustls::ClientConnection::new(self.0.client.clone(), name).map_err(io::Error::other)?;
        let conn =
            TlsConn::establish(tcp, rustls::Connection::Client(session), timeout).map_err(|e| {
                in_context(
                    e,
                    &format!(
                        "TLS handshake with the primary at {addr} (is TLS on at the primary, \
                         and did this CA sign its certificate?)"
                    ),
                )
            })?;
        Ok(Box::new(conn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn settings(dir: &std::path::Path) -> TlsSettings {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        TlsSettings::from_files(
            &dir.join("cert.pem"),
            &dir.join("key.pem"),
            &dir.join("ca.pem"),
            true,
            None,
        )
        .unwrap()
    }

    #[test]
    fn both_threads_of_a_session_use_one_tls_connection() {
        let dir = std::env::temp_dir().join(format!("surge-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tls = settings(&dir);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::new(
            TcpAcceptor::new(listener).unwrap(),
            tls.clone(),
            Duration::from_secs(5),
        );
        let client = std::thread::spawn({
            let tls = tls.clone();
            move || {
                let mut conn = TlsDialer(tls).dial(addr, Duration::from_secs(5)).unwrap();
                let mut reader = conn.clone_conn().unwrap();
                // One thread sends a megabyte while the other reads the echo back.
                let sender = std::thread::spawn(move || {
                    for i in 0..1024u32 {
                        conn.write_all(&[i as u8; 1024]).unwrap();
                    }
                    conn
                });
                let mut got = vec![0u8; 1024 * 1024];
                reader.read_exact(&mut got).unwrap();
                let conn = sender.join().unwrap();
                (got, conn)
            }
        });
        let (mut server, _) = loop {
            if let Some(accepted) = acceptor.accept().unwrap() {
                break accepted;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut buf = vec![0u8; 1024 * 1024];
        server.read_exact(&mut buf).unwrap();
        server.write_all(&buf).unwrap();
        let (got, conn) = client.join().unwrap();
        let peer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            conn
        });
        assert_eq!(got, buf);
        // An idle link: reads time out (the follower reads with its heartbeat as timeout)
        // and the session goes on unharmed.
        server
            .set_read_timeout(Some(Duration::from_millis(30)))
            .unwrap();
        let mut one = [0u8; 1];
        for _ in 0..3 {
            let e = server.read(&mut one).unwrap_err();
            assert!(matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ));
        }
        let mut tail = peer.join().unwrap();
        tail.write_all(b"after the silence").unwrap();
        let mut after = [0u8; 17];
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        server.read_exact(&mut after).unwrap();
        assert_eq!(&after, b"after the silence");
        assert!(got.chunks(1024).enumerate().all(|(i, c)| c[0] == i as u8));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
