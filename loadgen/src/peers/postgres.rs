//! PostgreSQL over its frontend/backend protocol (version 3.0), written out here rather than
//! through a driver so that it runs in the generator's own non-blocking loop: each request is
//! `Bind` + `Execute` + `Sync` of a prepared `SELECT surge_…(…)`, i.e. one implicit
//! transaction per request, pipelined. The schema and functions are in
//! `postgres_schema.sql`; the server must let the user in without a password on loopback
//! (bench/peers/peers.sh sets that up). User and database come from `PGUSER` and
//! `PGDATABASE` (default `postgres`).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use engine::wire::{Operation, Reply, WireAnswer};
use engine::{Code, RequestId};

use super::{call, reply, Sent};
use crate::client::Incoming;
use crate::protocol::{ConnectionLost, Protocol};

const SCHEMA: &str = include_str!("postgres_schema.sql");
/// Serialises schema creation between connections that start together.
const SCHEMA_LOCK: u64 = 7_600_001;

const STATEMENTS: [(&str, &str); 6] = [
    ("upsert", "SELECT surge_upsert($1, $2, $3, $4)"),
    ("place", "SELECT surge_place($1, $2, $3)"),
    ("pay", "SELECT surge_pay($1, $2, $3)"),
    ("release", "SELECT surge_release($1, $2)"),
    ("stock", "SELECT surge_stock($1)"),
    ("order", "SELECT surge_get_order($1)"),
];

fn message(tag: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

fn cstr(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// One whole backend message at the front of `input`: (tag, body, bytes used).
fn split(input: &[u8]) -> Option<(u8, &[u8], usize)> {
    if input.len() < 5 {
        return None;
    }
    let len = i32::from_be_bytes(input[1..5].try_into().expect("4 bytes")) as usize;
    if len < 4 || input.len() < 1 + len {
        return None;
    }
    Some((input[0], &input[5..1 + len], 1 + len))
}

/// The `M` (message) field of an ErrorResponse.
fn error_message(body: &[u8]) -> String {
    body.split(|&b| b == 0)
        .find(|f| f.first() == Some(&b'M'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_else(|| "unknown error".into())
}

/// `{0,12,4990}` → `[0, 12, 4990]`.
fn parse_array(text: &str) -> Vec<i64> {
    text.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .map(|n| n.trim().parse().unwrap_or(-1))
        .collect()
}

/// Read messages until ReadyForQuery; the first error, if any, fails.
fn until_ready(stream: &mut TcpStream, input: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut error = None;
    let mut buf = [0u8; 8192];
    loop {
        while let Some((tag, body, used)) = split(input) {
            match tag {
                b'E' => error = error.or(Some(error_message(body))),
                b'R' => {
                    let kind = i32::from_be_bytes(body[..4].try_into()?);
                    anyhow::ensure!(
                        kind == 0,
                        "the server wants a password (auth method {kind}); allow trust on \
                         loopback, as bench/peers/peers.sh does"
                    );
                }
                b'Z' => {
                    input.drain(..used);
                    return match error {
                        Some(e) => Err(anyhow::anyhow!("postgres: {e}")),
                        None => Ok(()),
                    };
                }
                _ => {}
            }
            input.drain(..used);
        }
        let n = stream.read(&mut buf)?;
        anyhow::ensure!(n > 0, "postgres closed the connection");
        input.extend_from_slice(&buf[..n]);
    }
}

fn simple_query(stream: &mut TcpStream, sql: &str) -> anyhow::Result<()> {
    let mut body = Vec::new();
    cstr(sql, &mut body);
    let mut out = Vec::new();
    message(b'Q', &body, &mut out);
    stream.write_all(&out)?;
    until_ready(stream, &mut Vec::new())
}

/// Connect, log in, create the schema (idempotent) and prepare the statements.
pub fn connect(addr: &str, timeout: Duration) -> anyhow::Result<(TcpStream, Box<dyn Protocol>)> {
    let sock = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("no address for {addr}"))?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout)?;
    stream.set_read_timeout(Some(timeout * 6))?;
    let user = std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into());
    let database = std::env::var("PGDATABASE").unwrap_or_else(|_| "postgres".into());
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for (k, v) in [
        ("user", user.as_str()),
        ("database", &database),
        ("application_name", "surge-loadgen"),
    ] {
        cstr(k, &mut body);
        cstr(v, &mut body);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    stream.write_all(&out)?;
    until_ready(&mut stream, &mut Vec::new())?;

    simple_query(
        &mut stream,
        &format!("SELECT pg_advisory_lock({SCHEMA_LOCK})"),
    )?;
    let created = simple_query(&mut stream, SCHEMA);
    simple_query(
        &mut stream,
        &format!("SELECT pg_advisory_unlock({SCHEMA_LOCK})"),
    )?;
    created?;

    let mut out = Vec::new();
    for (name, sql) in STATEMENTS {
        let mut body = Vec::new();
        cstr(name, &mut body);
        cstr(sql, &mut body);
        body.extend_from_slice(&0i16.to_be_bytes());
        message(b'P', &body, &mut out);
    }
    message(b'S', &[], &mut out);
    stream.write_all(&out)?;
    until_ready(&mut stream, &mut Vec::new())?;
    stream.set_read_timeout(None)?;
    Ok((stream, Box::new(PostgresProtocol::default())))
}

#[derive(Default)]
struct PostgresProtocol {
    sent: VecDeque<(RequestId, Sent)>,
    row: Option<Vec<i64>>,
    error: Option<String>,
}

/// The first failed call is printed; the rest only counted.
static ERROR_SHOWN: AtomicBool = AtomicBool::new(false);

impl Protocol for PostgresProtocol {
    fn encode(
        &mut self,
        request: RequestId,
        operation: &Operation,
        out: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        let call = call(operation)?;
        let mut body = Vec::with_capacity(64);
        cstr("", &mut body);
        cstr(call.name, &mut body);
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&(call.args.len() as i16).to_be_bytes());
        for arg in &call.args {
            let text = arg.to_string();
            body.extend_from_slice(&(text.len() as i32).to_be_bytes());
            body.extend_from_slice(text.as_bytes());
        }
        body.extend_from_slice(&0i16.to_be_bytes());
        message(b'B', &body, out);
        message(b'E', b"\0\0\0\0\0", out);
        message(b'S', &[], out);
        self.sent.push_back((request, call.sent));
        Ok(())
    }

    fn decode(
        &mut self,
        input: &[u8],
        incoming: &mut Vec<Incoming>,
    ) -> Result<usize, ConnectionLost> {
        let mut used = 0;
        while let Some((tag, body, len)) = split(&input[used..]) {
            used += len;
            match tag {
                b'D' if body.len() >= 6 => {
                    let n = i32::from_be_bytes(body[2..6].try_into().expect("4 bytes"));
                    let text = body.get(6..6 + n.max(0) as usize).unwrap_or_default();
                    self.row = Some(parse_array(&String::from_utf8_lossy(text)));
                }
                b'E' => self.error = Some(error_message(body)),
                b'Z' => {
                    let (request, sent) = self.sent.pop_front().ok_or_else(|| {
                        ConnectionLost::new("PROTOCOL", "ReadyForQuery for nothing sent")
                    })?;
                    let reply = match (self.row.take(), self.error.take()) {
                        (Some(row), None) => reply(sent, &row),
                        (_, error) => {
                            if !ERROR_SHOWN.swap(true, Ordering::Relaxed) {
                                eprintln!("postgres: {}", error.unwrap_or_default());
                            }
                            Reply::Rejected {
                                code: Code::ServerFailed,
                                subject: 0,
                            }
                        }
                    };
                    incoming.push(Incoming::Answer(WireAnswer {
                        request,
                        seq: 0,
                        reply,
                    }));
                }
                _ => {}
            }
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_whole_and_arrays_parse() {
        let mut out = Vec::new();
        message(b'Z', b"I", &mut out);
        assert_eq!(out, [b'Z', 0, 0, 0, 5, b'I']);
        assert_eq!(split(&out), Some((b'Z', &b"I"[..], 6)));
        assert_eq!(split(&out[..5]), None);
        assert_eq!(parse_array("{0,12,4990}"), [0, 12, 4990]);
        assert_eq!(parse_array("{105}"), [105]);
    }
}
