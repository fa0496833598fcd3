//! The client protocol's bytes (docs/PROTOCOL.md describes every one): length-prefixed
//! frames, the hello/welcome handshake, request frames carrying many requests, answer frames
//! and push frames coming back. Pure encoding and decoding, no sockets: the gateway, the Rust
//! client and the fuzz target all use this one codec.
//!
//! A frame is `len: u32` (the bytes after this field, 1..=`FRAME_LEN_MAX`), `kind: u8`, then
//! `len - 1` bytes of body. All integers little-endian, fixed width.

pub(crate) mod bytes;
mod counted;
pub mod feed;
mod handshake;
mod push;
mod reply;
mod request;

pub use bytes::{Reader, Writer};
pub use counted::CountedFrame;
pub use handshake::{ErrorFrame, Hello, Role, Welcome, HELLO_MAGIC};
pub use push::{decode_pushes, encode_push, WirePush};
pub use reply::{decode_answers, encode_answer, encode_outcome, encode_refusal, encode_reply};
pub use reply::{Reply, WireAnswer};
pub use request::{
    decode_requests, encode_operation, Operation, RequestsFrameBuilder, WireRequest,
};

use crate::code::Code;

/// The protocol version this build speaks. A hello with another version gets
/// `UNSUPPORTED_VERSION`.
pub const PROTOCOL_VERSION: u16 = 1;
/// `len` field plus `kind`.
pub const FRAME_HEADER_LEN: usize = 5;
/// Largest `len` accepted (kind + body). A statement batch of 4096 entries is 131 KiB.
pub const FRAME_LEN_MAX: usize = 1 << 20;
/// Requests in one REQUESTS frame at most.
pub const REQUESTS_PER_FRAME_MAX: u32 = 4096;

/// Frame kinds. Never renumbered.
pub mod frame_kind {
    /// Client → server, first frame: magic, version, client id.
    pub const HELLO: u8 = 1;
    /// Server → client, the reply to HELLO: version, role, limits.
    pub const WELCOME: u8 = 2;
    /// Client → server: one or more requests.
    pub const REQUESTS: u8 = 3;
    /// Server → client: one or more answers, each naming its request id.
    pub const ANSWERS: u8 = 4;
    /// Server → client: events the client did not ask for (waitlist hand-offs, expiries).
    pub const PUSH: u8 = 5;
    /// Server → client: a framing or handshake error; the server closes the connection.
    pub const ERROR: u8 = 6;
    /// Client → feed port, first frame: the sequence to start after, follow or not.
    pub const SUBSCRIBE: u8 = 7;
    /// Feed port → client, the reply to SUBSCRIBE: where the feed begins, its head.
    pub const FEED_BEGIN: u8 = 8;
    /// Feed port → client: events in sequence order (none: a heartbeat with the head).
    pub const FEED: u8 = 9;
}

/// One complete frame found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: u8,
    pub body: &'a [u8],
    /// Bytes the frame took from the buffer (header included).
    pub len: usize,
}

/// Find the first frame in `buf`: `Ok(None)` if it is not complete yet, an error code if
/// its length is impossible (the connection cannot be read any further).
pub fn split_frame(buf: &[u8]) -> Result<Option<Frame<'_>>, Code> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return Err(Code::FrameTooShort);
    }
    if len > FRAME_LEN_MAX {
        return Err(Code::FrameTooLarge);
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some(Frame {
        kind: buf[4],
        body: &buf[FRAME_HEADER_LEN..4 + len],
        len: 4 + len,
    }))
}

/// Start a frame of `kind` in `out`; returns where it starts, for `finish_frame`.
pub fn begin_frame(out: &mut Vec<u8>, kind: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind]);
    start
}

/// Write the length of the frame begun at `start`, now that its body is in `out`.
pub fn finish_frame(out: &mut [u8], start: usize) {
    let len = out.len() - start - 4;
    assert!(len <= FRAME_LEN_MAX, "frame of {len} bytes");
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_only_when_whole() {
        let mut out = Vec::new();
        let start = begin_frame(&mut out, frame_kind::PUSH);
        out.extend_from_slice(&[1, 2, 3]);
        finish_frame(&mut out, start);
        assert_eq!(out, [4, 0, 0, 0, 5, 1, 2, 3]);
        for cut in 0..out.len() {
            assert_eq!(split_frame(&out[..cut]), Ok(None));
        }
        out.push(9);
        let frame = split_frame(&out).unwrap().unwrap();
        assert_eq!((frame.kind, frame.body, frame.len), (5, &[1, 2, 3][..], 8));
        assert_eq!(split_frame(&[0, 0, 0, 0, 1]), Err(Code::FrameTooShort));
        let huge = ((FRAME_LEN_MAX + 1) as u32).to_le_bytes();
        assert_eq!(split_frame(&huge), Err(Code::FrameTooLarge));
    }
}
