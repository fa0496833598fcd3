//! Structured logs: one logfmt line per notable event on stderr (journald keeps it under
//! systemd), with the event's code number and name where it has one, so operators can grep
//! and alert on the codes listed in docs/ERRORS.md.
//!
//! `ts=2026-11-21T06:50:01.123456Z level=warn event=connection_closed code=214
//! code_name=SLOW_CONSUMER peer=127.0.0.1:5123`

use std::cell::RefCell;
use std::fmt::{Display, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where this thread's lines go instead of stderr, when set (the simulator runs every
/// node on one thread and keeps each node's lines apart, stamped with simulated time).
type Capture = Box<dyn FnMut(String)>;

thread_local! {
    static CAPTURE: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// Send this thread's lines (without the `ts=` prefix) to `sink` until `release`.
pub fn capture(sink: Capture) {
    CAPTURE.with(|c| *c.borrow_mut() = Some(sink));
}

/// Lines go to stderr again; the sink set by `capture`, if any.
pub fn release() -> Option<Capture> {
    CAPTURE.with(|c| c.borrow_mut().take())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// A code as logs show it: number and name.
pub type LogCode = (u16, &'static str);

pub fn engine_code(code: engine::Code) -> LogCode {
    (code.number(), code.name())
}

pub fn journal_code(code: journal::ErrorCode) -> LogCode {
    (code.number(), code.name())
}

pub fn repl_code(code: replicator::ReplicationCode) -> LogCode {
    (code.number(), code.name())
}

pub fn line(level: Level, event: &str, code: Option<LogCode>, fields: &[(&str, &dyn Display)]) {
    let mut out = begin(level, event, code);
    for (key, value) in fields {
        let value = value.to_string();
        if value.is_empty() || value.contains([' ', '"', '=']) {
            let _ = write!(out, " {key}={value:?}");
        } else {
            let _ = write!(out, " {key}={value}");
        }
    }
    finish(out);
}

/// A line whose fields are already logfmt (`key=value key="two words"`).
pub fn raw(level: Level, event: &str, code: Option<LogCode>, fields: &str) {
    let mut out = begin(level, event, code);
    if !fields.is_empty() {
        out.push(' ');
        out.push_str(fields);
    }
    finish(out);
}

fn begin(level: Level, event: &str, code: Option<LogCode>) -> String {
    let mut out = String::with_capacity(160);
    let level = match level {
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    };
    if !CAPTURE.with(|c| c.borrow().is_some()) {
        let _ = write!(out, "ts={} ", timestamp());
    }
    let _ = write!(out, "level={level} event={event}");
    if let Some((number, name)) = code {
        let _ = write!(out, " code={number} code_name={name}");
    }
    out
}

fn finish(mut out: String) {
    let captured = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(sink) => {
            sink(std::mem::take(&mut out));
            true
        }
        None => false,
    });
    if !captured {
        out.push('\n');
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
    }
}

pub fn info(event: &str, fields: &[(&str, &dyn Display)]) {
    line(Level::Info, event, None, fields);
}

/// RFC 3339 UTC with microseconds, from the system clock (no time-zone crate needed).
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's method).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_778), (2026, 11, 21));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
