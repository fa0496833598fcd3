//! A small HTTP/1.1 client for a node's HTTP port: one request per connection, the status
//! code and the body back, and a reader for one `/metrics` value. `surge promote`/`fence`,
//! `surge drill`, the demo, the benches and the tests share it. Where the port speaks HTTPS
//! (`admin.tls_cert`), `trust_ca` (or `SURGE_ADMIN_CA`, a PEM file) names the certificate
//! authority to verify it with, and every request goes over TLS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::ServerName;

/// The TLS client config, once a CA is named (`None`: plain HTTP).
static TLS: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();

/// Speak HTTPS to every node, trusting the CA certificates in the PEM file at `ca`. Called
/// once, before the first request; without it `SURGE_ADMIN_CA` is read.
pub fn trust_ca(ca: &Path) -> anyhow::Result<()> {
    let config = client_config(ca)?;
    TLS.set(Some(config))
        .map_err(|_| anyhow::anyhow!("the admin client's CA was already chosen"))
}

fn client_config(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let roots = replicator::tls::pem_roots(ca).map_err(anyhow::Error::msg)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn tls() -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    if let Some(config) = TLS.get() {
        return Ok(config.clone());
    }
    let config = match std::env::var_os("SURGE_ADMIN_CA") {
        Some(ca) if !ca.is_empty() => Some(client_config(Path::new(&ca))?),
        _ => None,
    };
    Ok(TLS.get_or_init(|| config).clone())
}

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
    let mut response = String::new();
    match tls()? {
        None => {
            stream.write_all(head.as_bytes())?;
            stream.read_to_string(&mut response)?;
        }
        Some(config) => {
            let host = http.rsplit_once(':').map_or(http, |(host, _)| host);
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .with_context(|| format!("{host} as a TLS server name"))?;
            let session = rustls::ClientConnection::new(config, name)?;
            let mut secure = rustls::StreamOwned::new(session, stream);
            secure
                .write_all(head.as_bytes())
                .with_context(|| format!("HTTPS to {http}"))?;
            secure
                .read_to_string(&mut response)
                .with_context(|| format!("HTTPS from {http}"))?;
        }
    }
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
