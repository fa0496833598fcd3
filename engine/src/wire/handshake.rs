//! The handshake and the error frame. A client's first frame is HELLO (magic, version, its
//! client id); the server answers WELCOME with its limits, or ERROR and closes.
//!
//! ```text
//! HELLO   (16 or 24): magic u32 = "SRGE", version u16, reserved u16 = 0, client_id u64,
//!               [epoch u64: the highest epoch the client has seen; a primary below it
//!               is stale and fences itself]
//! WELCOME (24): version u16, role u8, reserved u8, in_flight_max u32, frame_len_max u32,
//!               requests_per_frame_max u32, epoch u64
//! ERROR   (4+n): code u16, message_len u16, message (UTF-8, n bytes)
//! ```

use super::bytes::{Reader, Writer};
use super::{begin_frame, finish_frame, frame_kind};
use crate::code::Code;
use crate::ids::ClientId;

/// "SRGE" read as a little-endian u32: garbage at the start of a connection fails here.
pub const HELLO_MAGIC: u32 = u32::from_le_bytes(*b"SRGE");
const HELLO_LEN: usize = 16;
/// A hello that carries the client's known epoch.
const HELLO_WITH_EPOCH_LEN: usize = 24;
const WELCOME_LEN: usize = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub client: ClientId,
    /// The highest epoch the client has been welcomed at (0: none, and not sent).
    pub epoch: u64,
}

impl Hello {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = begin_frame(out, frame_kind::HELLO);
        Writer::new(out)
            .u32(HELLO_MAGIC)
            .u16(self.version)
            .u16(0)
            .u64(self.client.0);
        if self.epoch > 0 {
            Writer::new(out).u64(self.epoch);
        }
        finish_frame(out, start);
    }

    /// The version is returned as sent; the caller decides whether it speaks it.
    pub fn decode(body: &[u8]) -> Result<Hello, Code> {
        if body.len() != HELLO_LEN && body.len() != HELLO_WITH_EPOCH_LEN {
            return Err(short_or_malformed(body.len(), HELLO_LEN));
        }
        let mut r = Reader::new(body);
        if r.u32() != Some(HELLO_MAGIC) {
            return Err(Code::BadMagic);
        }
        let version = r.u16().expect("length checked");
        r.zeros(2).ok_or(Code::MalformedFrame)?;
        let client = ClientId(r.u64().expect("length checked"));
        let epoch = r.u64().unwrap_or(0);
        Ok(Hello {
            version,
            client,
            epoch,
        })
    }
}

/// A fixed-size frame body of the wrong size: too short, or too long (malformed).
fn short_or_malformed(len: usize, wanted: usize) -> Code {
    if len < wanted {
        Code::FrameTooShort
    } else {
        Code::MalformedFrame
    }
}

/// What the server is, as far as a client cares: a primary takes writes; a standby answers
/// queries only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary = 1,
    Standby = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub version: u16,
    pub role: Role,
    /// Requests a connection may have unanswered; past it the server stops reading it.
    pub in_flight_max: u32,
    pub frame_len_max: u32,
    pub requests_per_frame_max: u32,
    /// The cluster epoch (0 without replication).
    pub epoch: u64,
}

impl Welcome {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = begin_frame(out, frame_kind::WELCOME);
        Writer::new(out)
            .u16(self.version)
            .u8(self.role as u8)
            .u8(0)
            .u32(self.in_flight_max)
            .u32(self.frame_len_max)
            .u32(self.requests_per_frame_max)
            .u64(self.epoch);
        finish_frame(out, start);
    }

    pub fn decode(body: &[u8]) -> Result<Welcome, Code> {
        if body.len() != WELCOME_LEN {
            return Err(short_or_malformed(body.len(), WELCOME_LEN));
        }
        let mut r = Reader::new(body);
        let version = r.u16().expect("length checked");
        let role = match r.u8().expect("length checked") {
            1 => Role::Primary,
            2 => Role::Standby,
            _ => return Err(Code::MalformedFrame),
        };
        r.zeros(1).ok_or(Code::MalformedFrame)?;
        Ok(Welcome {
            version,
            role,
            in_flight_max: r.u32().expect("length checked"),
            frame_len_max: r.u32().expect("length checked"),
            requests_per_frame_max: r.u32().expect("length checked"),
            epoch: r.u64().expect("length checked"),
        })
    }
}

/// Sent before the server closes a connection for a framing or handshake error. `code` is a
/// u16 from docs/ERRORS.md (gateway or journal range).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    pub code: u16,
    pub message: String,
}

/// Error messages are cut to this many bytes.
const ERROR_MESSAGE_MAX: usize = 1024;

impl ErrorFrame {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut end = self.message.len().min(ERROR_MESSAGE_MAX);
        while !self.message.is_char_boundary(end) {
            end -= 1;
        }
        let start = begin_frame(out, frame_kind::ERROR);
        Writer::new(out)
            .u16(self.code)
            .u16(end as u16)
            .bytes(&self.message.as_bytes()[..end]);
        finish_frame(out, start);
    }

    pub fn decode(body: &[u8]) -> Result<ErrorFrame, Code> {
        let mut r = Reader::new(body);
        let code = r.u16().ok_or(Code::FrameTooShort)?;
        let len = r.u16().ok_or(Code::FrameTooShort)? as usize;
        let message = r.take(len).ok_or(Code::FrameTooShort)?;
        if r.remaining() != 0 {
            return Err(Code::MalformedFrame);
        }
        Ok(ErrorFrame {
            code,
            message: String::from_utf8_lossy(message).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::split_frame;

    #[test]
    fn handshake_frames_round_trip() {
        let mut out = Vec::new();
        let hello = Hello {
            version: 1,
            client: ClientId(77),
            epoch: 0,
        };
        hello.encode(&mut out);
        assert_eq!(out.len(), 5 + HELLO_LEN);
        let frame = split_frame(&out).unwrap().unwrap();
        assert_eq!(frame.kind, frame_kind::HELLO);
        assert_eq!(Hello::decode(frame.body), Ok(hello));
        let mut bad = frame.body.to_vec();
        bad[0] ^= 1;
        assert_eq!(Hello::decode(&bad), Err(Code::BadMagic));

        let welcome = Welcome {
            version: 1,
            role: Role::Primary,
            in_flight_max: 4096,
            frame_len_max: 1 << 20,
            requests_per_frame_max: 4096,
            epoch: 3,
        };
        out.clear();
        welcome.encode(&mut out);
        assert_eq!(out.len(), 5 + WELCOME_LEN);
        assert_eq!(Welcome::decode(&out[5..]), Ok(welcome));

        let error = ErrorFrame {
            code: 202,
            message: "unknown frame kind 9".into(),
        };
        out.clear();
        error.encode(&mut out);
        assert_eq!(ErrorFrame::decode(&out[5..]), Ok(error));
    }
}
