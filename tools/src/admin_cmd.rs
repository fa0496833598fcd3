//! `surge promote --http ADDR [--token T]`: make the standby at ADDR the primary of a new
//! epoch (`POST /admin/promote`), and `surge fence`: make a primary stop taking writes
//! (`POST /admin/fence`). Prints the node's JSON answer; exit 0 on success.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context;

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The node's HTTP address (its `http`).
    #[arg(long)]
    pub http: String,
    /// The admin token (`admin.token` in the node's config); or SURGE_ADMIN_TOKEN.
    #[arg(long, env = "SURGE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub fn promote(args: AdminArgs) -> anyhow::Result<()> {
    call(&args, "/admin/promote")
}

pub fn fence(args: AdminArgs) -> anyhow::Result<()> {
    call(&args, "/admin/fence")
}

fn call(args: &AdminArgs, path: &str) -> anyhow::Result<()> {
    let (status, body) = post(&args.http, path, args.token.as_deref().unwrap_or(""))?;
    print!("{body}");
    anyhow::ensure!(status == 200, "{} answered {status}", args.http);
    Ok(())
}

/// One admin POST; the status code and the body.
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

fn request(http: &str, head: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(http).with_context(|| format!("connecting to {http}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
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
