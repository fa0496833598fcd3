//! A small HTTP/1.1 client for a node's HTTP port: one request per connection, the status
//! code and the body back, and a reader for one `/metrics` value. `surge promote`/`fence`,
//! `surge drill`, the demo, the benches and the tests share it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context;

/// How long an answer may take (a promotion waits for the gateway, at most seconds).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One admin POST with the bearer token; the status code and the body.
pub fn post(http: &str, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    request(http, &format!("POST {path} HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
}

/// One GET; the status code and the body.
pub fn get(http: &str, path: &str) -> anyhow::Result<(u16, String)> {
    request(
        http,
        &format!("GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"),
    )
}

/// An unlabelled metric's value in a `/metrics` body (Prometheus text), if it is there.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn request(http: &str, head: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(http).with_context(|| format!("connecting to {http}"))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.set_nodelay(true)?;
    stream.write_all(head.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status in the answer")?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}
