//! One blocking HTTP/1.1 POST with a JSON body, `Connection: close`, a deadline on connect,
//! write and read, over TLS where configured, with an `Authorization` token where given, and
//! the response body de-chunked: all etcd's gateway needs.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

/// One request: where it goes and what it carries.
pub struct Post<'a> {
    pub path: &'a str,
    pub body: &'a str,
    /// etcd's auth token, sent as `Authorization` (the gateway's name for it).
    pub token: Option<&'a str>,
}

/// Status code and body.
pub fn post_json(
    endpoint: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    post: &Post<'_>,
    timeout: Duration,
) -> io::Result<(u16, Vec<u8>)> {
    let addr = endpoint.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{endpoint}: no address"))
    })?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let authorization = post
        .token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\n\
         {authorization}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        post.path,
        post.body.len(),
        post.body
    );
    let response = match tls {
        None => exchange(stream, request.as_bytes())?,
        Some(config) => {
            let name = ServerName::try_from(host_of(endpoint).to_string()).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{endpoint}: {e}"))
            })?;
            let session = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| io::Error::other(format!("{endpoint}: TLS: {e}")))?;
            exchange(
                rustls::StreamOwned::new(session, stream),
                request.as_bytes(),
            )?
        }
    };
    parse_response(&response)
}

/// Write the request, read until the server closes. A TLS peer that closes without its
/// close_notify after a whole response is taken as done: the response is checked whole by
/// its parsing, and nothing follows `Connection: close`.
fn exchange(mut stream: impl Read + Write, request: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(request)?;
    stream.flush()?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => Ok(response),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => Ok(response),
        Err(e) => Err(e),
    }
}

/// The host of `host:port` (`[v6]:port` without its brackets), for the certificate check.
fn host_of(endpoint: &str) -> &str {
    if let Some(rest) = endpoint.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    endpoint.rsplit_once(':').map_or(endpoint, |(host, _)| host)
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Split a whole response into its status and body.
fn parse_response(response: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    if response.is_empty() {
        // What etcd does with plain HTTP on a TLS-only port.
        return Err(bad(
            "closed without answering (if etcd serves TLS, give its CA: coordinator.tls_ca)",
        ));
    }
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&response[..head_end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &response[head_end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut body: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("a chunk without its size line"))?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("chunk size {size_text:?}")))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size {
            return Err(bad("a chunk cut short"));
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=1\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            (200, b"{\"a\":1}".to_vec())
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn hosts_for_the_certificate_check() {
        assert_eq!(host_of("10.0.0.5:2379"), "10.0.0.5");
        assert_eq!(host_of("etcd-a.example:2379"), "etcd-a.example");
        assert_eq!(host_of("[::1]:2379"), "::1");
        assert_eq!(host_of("etcd"), "etcd");
    }
}
