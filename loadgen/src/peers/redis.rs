//! Redis over RESP2: each request is one `EVALSHA` of a Lua script that checks and changes
//! the stock and the order atomically (Redis runs a script alone). With `appendonly yes`
//! and `appendfsync always`, Redis writes and fsyncs its AOF once per event-loop turn before
//! it replies, so a pipeline of scripts shares one fsync, as surge's group commit does.
//! Scripts answer `{code, values…}` with the codes of docs/ERRORS.md.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use engine::wire::Operation;
use engine::RequestId;

use super::{call, reply, Sent};
use crate::client::Incoming;
use crate::protocol::{ConnectionLost, Protocol};
use engine::wire::WireAnswer;

const UPSERT: &str = r"
local k = 'surge:sku:' .. ARGV[1]
redis.call('HSET', k, 'price', ARGV[2], 'stocked', ARGV[3], 'available', ARGV[3],
  'reserved', 0, 'sold', 0, 'limit', ARGV[4])
return {0}";

const PLACE: &str = r"
local user, sku, qty = ARGV[1], ARGV[2], tonumber(ARGV[3])
local k = 'surge:sku:' .. sku
local s = redis.call('HMGET', k, 'price', 'available', 'limit')
if not s[1] then return {100} end
local limit = tonumber(s[3])
local held_key = 'surge:held:' .. sku
if limit > 0 then
  local held = tonumber(redis.call('HGET', held_key, user) or '0')
  if held + qty > limit then return {104} end
end
if tonumber(s[2]) < qty then return {105} end
redis.call('HINCRBY', k, 'available', -qty)
redis.call('HINCRBY', k, 'reserved', qty)
if limit > 0 then redis.call('HINCRBY', held_key, user, qty) end
local id = redis.call('INCR', 'surge:order:next')
local total = tonumber(s[1]) * qty
redis.call('HSET', 'surge:order:' .. id, 'user', user, 'sku', sku, 'qty', qty,
  'total', total, 'state', 1)
return {0, id, total}";

/// The refusal for an order that is not pending, by its state.
const NOT_PENDING: &str = r"
local function not_pending(state)
  if state == 2 then return {114} elseif state == 3 then return {116}
  elseif state == 4 then return {117} else return {115} end
end";

const PAY: &str = r"
local k = 'surge:order:' .. ARGV[1]
local o = redis.call('HMGET', k, 'state', 'total', 'sku', 'qty')
if not o[1] then return {112} end
local state = tonumber(o[1])
if state ~= 1 then return not_pending(state) end
if tonumber(o[2]) ~= tonumber(ARGV[2]) then return {113} end
redis.call('HSET', k, 'state', 2, 'payment_ref', ARGV[3])
local s = 'surge:sku:' .. o[3]
redis.call('HINCRBY', s, 'reserved', -tonumber(o[4]))
redis.call('HINCRBY', s, 'sold', tonumber(o[4]))
return {0}";

const RELEASE: &str = r"
local k = 'surge:order:' .. ARGV[1]
local o = redis.call('HMGET', k, 'state', 'sku', 'qty', 'user')
if not o[1] then return {112} end
local state = tonumber(o[1])
if state ~= 1 then return not_pending(state) end
redis.call('HSET', k, 'state', ARGV[2])
local qty = tonumber(o[3])
local s = 'surge:sku:' .. o[2]
redis.call('HINCRBY', s, 'available', qty)
redis.call('HINCRBY', s, 'reserved', -qty)
if tonumber(redis.call('HGET', s, 'limit')) > 0 then
  redis.call('HINCRBY', 'surge:held:' .. o[2], o[4], -qty)
end
return {0}";

const STOCK: &str = r"
local s = redis.call('HMGET', 'surge:sku:' .. ARGV[1], 'price', 'stocked', 'available',
  'reserved', 'sold', 'limit')
if not s[1] then return {100} end
return {0, s[1], s[2], s[3], s[4], s[5], s[6]}";

const ORDER: &str = r"
local o = redis.call('HMGET', 'surge:order:' .. ARGV[1], 'state', 'total', 'user', 'sku', 'qty')
if not o[1] then return {112} end
return {0, o[1], o[2], o[3], o[4], o[5]}";

const SCRIPTS: [(&str, &str); 6] = [
    ("upsert", UPSERT),
    ("place", PLACE),
    ("pay", PAY),
    ("release", RELEASE),
    ("stock", STOCK),
    ("order", ORDER),
];

/// One RESP2 value.
#[derive(Debug, PartialEq)]
enum Value {
    Int(i64),
    Text(String),
    Error(String),
    Nil,
    Array(Vec<Value>),
}

/// Parse one value at the front of `input`: `Ok(None)` until it is all there.
fn parse(input: &[u8]) -> Result<Option<(Value, usize)>, String> {
    let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&input[1..end]).map_err(|e| e.to_string())?;
    let after = end + 2;
    let number = || line.parse::<i64>().map_err(|e| format!("{e} in {line:?}"));
    match input.first() {
        Some(b':') => Ok(Some((Value::Int(number()?), after))),
        Some(b'+') => Ok(Some((Value::Text(line.into()), after))),
        Some(b'-') => Ok(Some((Value::Error(line.into()), after))),
        Some(b'$') => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Value::Nil, after)));
            }
            let len = len as usize;
            if input.len() < after + len + 2 {
                return Ok(None);
            }
            let text = String::from_utf8_lossy(&input[after..after + len]).into_owned();
            Ok(Some((Value::Text(text), after + len + 2)))
        }
        Some(b'*') => {
            let n = number()?;
            let mut items = Vec::with_capacity(n.max(0) as usize);
            let mut at = after;
            for _ in 0..n.max(0) {
                let Some((item, used)) = parse(&input[at..])? else {
                    return Ok(None);
                };
                items.push(item);
                at += used;
            }
            Ok(Some((Value::Array(items), at)))
        }
        other => Err(format!("unexpected RESP type byte {other:?}")),
    }
}

fn command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Send one command and wait for its reply (setup only).
fn call_blocking(stream: &mut TcpStream, args: &[&[u8]]) -> anyhow::Result<Value> {
    let mut out = Vec::new();
    command(args, &mut out);
    stream.write_all(&out)?;
    let mut input = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some((value, _)) = parse(&input).map_err(anyhow::Error::msg)? {
            return Ok(value);
        }
        let n = stream.read(&mut buf)?;
        anyhow::ensure!(n > 0, "redis closed the connection");
        input.extend_from_slice(&buf[..n]);
    }
}

/// Connect, check the server, and load the scripts (SCRIPT LOAD is idempotent).
pub fn connect(addr: &str, timeout: Duration) -> anyhow::Result<(TcpStream, Box<dyn Protocol>)> {
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("no address for {addr}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut shas = Vec::new();
    for (name, body) in SCRIPTS {
        let source = format!("{NOT_PENDING}\n{body}");
        match call_blocking(&mut stream, &[b"SCRIPT", b"LOAD", source.as_bytes()])? {
            Value::Text(sha) => shas.push((name, sha)),
            other => anyhow::bail!("SCRIPT LOAD {name}: {other:?}"),
        }
    }
    stream.set_read_timeout(None)?;
    Ok((
        stream,
        Box::new(RedisProtocol {
            shas,
            sent: VecDeque::new(),
        }),
    ))
}

struct RedisProtocol {
    shas: Vec<(&'static str, String)>,
    sent: VecDeque<(RequestId, Sent)>,
}

impl Protocol for RedisProtocol {
    fn encode(
        &mut self,
        request: RequestId,
        operation: &Operation,
        out: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        let call = call(operation)?;
        let sha = &self
            .shas
            .iter()
            .find(|(name, _)| *name == call.name)
            .expect("every call has a script")
            .1;
        let args: Vec<String> = call.args.iter().map(u64::to_string).collect();
        let mut parts: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), b"0"];
        parts.extend(args.iter().map(|a| a.as_bytes()));
        command(&parts, out);
        self.sent.push_back((request, call.sent));
        Ok(())
    }

    fn decode(
        &mut self,
        input: &[u8],
        incoming: &mut Vec<Incoming>,
    ) -> Result<usize, ConnectionLost> {
        let mut used = 0;
        while let Some((value, len)) =
            parse(&input[used..]).map_err(|e| ConnectionLost::new("PROTOCOL", e))?
        {
            used += len;
            let (request, sent) = self
                .sent
                .pop_front()
                .ok_or_else(|| ConnectionLost::new("PROTOCOL", "a reply for nothing sent"))?;
            let numbers: Vec<i64> = match value {
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::Int(n) => *n,
                        Value::Text(t) => t.parse().unwrap_or(-1),
                        _ => -1,
                    })
                    .collect(),
                Value::Error(e) => return Err(ConnectionLost::new("REDIS_ERROR", e)),
                other => {
                    return Err(ConnectionLost::new("PROTOCOL", format!("{other:?}")));
                }
            };
            incoming.push(Incoming::Answer(WireAnswer {
                request,
                seq: 0,
                reply: reply(sent, &numbers),
            }));
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_values_parse_whole_or_not_at_all() {
        let bytes = b"*3\r\n:0\r\n:17\r\n$4\r\n4990\r\n";
        let (v, used) = parse(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Int(0),
                Value::Int(17),
                Value::Text("4990".into())
            ])
        );
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(
            parse(b"-NOSCRIPT x\r\n").unwrap().unwrap().0,
            Value::Error("NOSCRIPT x".into())
        );
        let mut out = Vec::new();
        command(&[b"GET", b"k"], &mut out);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
