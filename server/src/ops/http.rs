//! The HTTP side port: `GET /metrics` (Prometheus text format 0.0.4), `GET /health` (200
//! with a small JSON body while serving, 503 otherwise), and the admin calls, which need
//! `Authorization: Bearer <admin.token>`: `POST /admin/promote` (this standby becomes the
//! primary of a new epoch) and `POST /admin/fence` (this primary stops taking writes). One
//! short request per connection, on a thread of its own, never in the pipeline's way. With
//! `admin.tls_cert` and `admin.tls_key` it is HTTPS only (`tls.rs`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::Duration;

use replicator::ReplicationCode;

use crate::group::node::Node;
use crate::group::role::Role;
use crate::ops::{health, replication};
use crate::pipeline::shared::Shared;

/// Bytes of request head read at most.
const REQUEST_HEAD_MAX: usize = 8 << 10;
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the accept loop looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// How long a promote call waits for the gateway.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn spawn(
    listener: TcpListener,
    shared: Arc<Shared>,
    node: Arc<Node>,
    token: String,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("surge-http".into())
        .spawn(move || loop {
            if shared.stop.load(SeqCst) {
                return;
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = serve(stream, tls.as_ref(), &shared, &node, &token);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    wait_readable(&listener, ACCEPT_POLL)
                }
                Err(_) => std::thread::sleep(ACCEPT_POLL),
            }
        })
}

/// One connection: plain HTTP, or HTTPS when the port has a certificate (a client that does
/// not speak TLS fails the handshake and is closed).
fn serve(
    stream: TcpStream,
    tls: Option<&Arc<rustls::ServerConfig>>,
    shared: &Shared,
    node: &Node,
    token: &str,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some(config) = tls else {
        return handle(stream, shared, node, token);
    };
    let session = rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
    let mut secure = rustls::StreamOwned::new(session, stream);
    handle(&mut secure, shared, node, token)?;
    secure.conn.send_close_notify();
    secure.flush()
}

fn handle(
    mut stream: impl Read + Write,
    shared: &Shared,
    node: &Node,
    token: &str,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_MAX {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let m = &shared.metrics;
    let (durable, applied) = (shared.release.durable(), m.applied_seq.load(Relaxed));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let mut body = m.render(durable, shared.release.bound());
            replication::render_metrics(node, durable, applied, &mut body);
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
        }
        ("GET", "/health") => {
            let (code, body) = health::render(shared, node);
            (code, "application/json", body)
        }
        ("POST", "/admin/promote" | "/admin/fence") => admin(path, &head, shared, node, token),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".into()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET, or POST to /admin/*\n".into(),
        ),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// An admin call: check the token, then promote or fence.
fn admin(
    path: &str,
    head: &[u8],
    shared: &Shared,
    node: &Node,
    token: &str,
) -> (&'static str, &'static str, String) {
    let error = |status, code: ReplicationCode, why: &str| {
        (
            status,
            "application/json",
            format!(
                "{{\"code\":{},\"name\":\"{}\",\"error\":{why:?}}}\n",
                code.number(),
                code.name()
            ),
        )
    };
    if token.is_empty() {
        return error(
            "403 Forbidden",
            ReplicationCode::AdminTokenRequired,
            "admin calls are off: set admin.token in the config",
        );
    }
    // In constant time: how long a wrong guess takes says nothing of how close it was.
    let presented = bearer(head).unwrap_or_default();
    if !replicator::auth::constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        return error(
            "401 Unauthorized",
            ReplicationCode::AdminTokenRequired,
            "missing or wrong Authorization: Bearer token",
        );
    }
    match path {
        // With failover through etcd, etcd decides: a promotion by hand would take an epoch
        // etcd never handed out and fence a primary that still holds the lease.
        "/admin/promote"
            if node
                .lease()
                .enabled
                .load(std::sync::atomic::Ordering::SeqCst) =>
        {
            error(
                "409 Conflict",
                ReplicationCode::UnsafeFailover,
                "replication.failover = \"etcd\": etcd decides who leads; stop the primary (its \
             lease is revoked and this standby takes over) instead of promoting by hand",
            )
        }
        "/admin/promote" => match node.promote(shared.clock.mono_ns(), PROMOTE_TIMEOUT, None) {
            Ok(p) => (
                "200 OK",
                "application/json",
                format!(
                    "{{\"role\":\"primary\",\"epoch\":{},\"start_seq\":{},\"promote_us\":{}}}\n",
                    p.epoch, p.start_seq, p.micros
                ),
            ),
            Err(why) => error(
                "409 Conflict",
                ReplicationCode::NotPrimary,
                &why.to_string(),
            ),
        },
        _ => {
            if node.role() == Role::Primary {
                node.fenced_by(node.epoch() + 1, "an admin fence call");
            }
            (
                "200 OK",
                "application/json",
                format!(
                    "{{\"role\":\"{}\",\"epoch\":{}}}\n",
                    node.role().name(),
                    node.epoch()
                ),
            )
        }
    }
}

/// The bearer token in the request head, if any.
fn bearer(head: &[u8]) -> Option<String> {
    String::from_utf8_lossy(head).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        value
            .trim()
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_string())
    })
}

/// Sleep until a connection arrives or `timeout` passes (an admin call is not kept waiting
/// for a polling interval: promotion is measured in microseconds).
fn wait_readable(listener: &TcpListener, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe {
        libc::poll(&mut fd, 1, timeout.as_millis() as i32);
    }
}
