//! The replication stream's frames (docs/REPLICATION.md has them byte by byte). Every frame
//! is `u32 len, u8 kind, body` (len counts kind and body), little-endian, as on the client
//! port; bodies are fixed layouts except the records, which are journal records exactly as
//! the primary's journal holds them (each carries its own CRC32C).

use std::io::{self, Read, Write};

use crate::auth::{Nonce, PROOF_LEN};
use crate::code::ReplicationCode;

/// "SRPL": the first bytes of a standby's hello.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SRPL");
/// 2: the secret is proven (CHALLENGE, PROOF), never sent; 1 sent it in the HELLO.
pub const VERSION: u16 = 2;
/// A frame is at most this long (a records frame carries one group commit, at most 4 MiB).
pub const FRAME_LEN_MAX: usize = 8 << 20;
/// `u32 len, u8 kind`: the bytes before a frame's body.
pub const FRAME_HEADER_LEN: usize = 5;
/// Node names and refusal messages are at most this long.
const NAME_MAX: usize = 256;
/// `Welcome::truncate_to` when nothing needs cutting.
pub const NO_TRUNCATION: u64 = u64::MAX;

pub mod kind {
    pub const HELLO: u8 = 1;
    pub const WELCOME: u8 = 2;
    pub const REFUSE: u8 = 3;
    pub const RECORDS: u8 = 4;
    pub const HEARTBEAT: u8 = 5;
    pub const CHECKPOINT: u8 = 6;
    pub const ACK: u8 = 7;
    pub const FENCE: u8 = 8;
    pub const SNAPSHOT: u8 = 9;
    pub const SNAPSHOT_CHUNK: u8 = 10;
    pub const CHALLENGE: u8 = 11;
    pub const PROOF: u8 = 12;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Standby → primary, first: who it is, where it stands, and a fresh nonce.
    Hello {
        node: String,
        epoch: u64,
        last_seq: u64,
        /// The standby's rolling hash at `last_seq`.
        hash: u64,
        nonce: Nonce,
    },
    /// Primary → standby, after the HELLO: the primary's nonce and its proof that it knows
    /// the secret (`auth::primary_proof`).
    Challenge {
        nonce: Nonce,
        proof: [u8; PROOF_LEN],
    },
    /// Standby → primary: its proof that it knows the secret (`auth::standby_proof`).
    Proof { proof: [u8; PROOF_LEN] },
    /// Primary → standby: accepted. `truncate_to`: cut the journal after this sequence and
    /// come back (failback), or `NO_TRUNCATION`.
    Welcome {
        epoch: u64,
        /// `(epoch, first sequence written in it)`, oldest first.
        history: Vec<(u64, u64)>,
        primary_last_seq: u64,
        truncate_to: u64,
        /// The payload of the primary's first journal record (the engine configuration).
        config: Vec<u8>,
    },
    /// Either side: not accepted, with a code; the connection closes.
    Refuse { code: u16, message: String },
    /// Journal records `first_seq..=last_seq`, back to back.
    Records {
        first_seq: u64,
        last_seq: u64,
        bytes: Vec<u8>,
    },
    /// Primary → standby when there is nothing else to send.
    Heartbeat {
        /// The last sequence the primary has sequenced (journaled or not).
        last_seq: u64,
        durable_seq: u64,
        unix_ns: u64,
    },
    /// Primary → standby: the primary's rolling hash after applying `seq`.
    Checkpoint { seq: u64, hash: u64 },
    /// Standby → primary: what it holds in memory, on disk, and has applied.
    Ack {
        received: u64,
        durable: u64,
        applied: u64,
    },
    /// The sender is at `epoch`; a node below it stops taking writes.
    Fence { epoch: u64 },
    /// Primary → standby, after the welcome: the sequence the standby needs next is no
    /// longer in the primary's journal; here is its newest snapshot file (taken at `seq`),
    /// `len` bytes in SNAPSHOT_CHUNK frames. The standby starts over from it and comes back
    /// for the records after `seq`.
    Snapshot { seq: u64, len: u64 },
    /// The next piece of the snapshot file.
    SnapshotChunk { bytes: Vec<u8> },
}

impl Message {
    pub fn refuse(code: ReplicationCode, message: impl Into<String>) -> Message {
        Message::Refuse {
            code: code.number(),
            message: message.into(),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Message::Hello {
                node,
                epoch,
                last_seq,
                hash,
                nonce,
            } => {
                out.push(kind::HELLO);
                put_u32(out, MAGIC);
                put_u16(out, VERSION);
                put_u16(out, 0);
                put_u64(out, *epoch);
                put_u64(out, *last_seq);
                put_u64(out, *hash);
                out.extend_from_slice(nonce);
                put_bytes16(out, node.as_bytes());
            }
            Message::Challenge { nonce, proof } => {
                out.push(kind::CHALLENGE);
                out.extend_from_slice(nonce);
                out.extend_from_slice(proof);
            }
            Message::Proof { proof } => {
                out.push(kind::PROOF);
                out.extend_from_slice(proof);
            }
            Message::Welcome {
                epoch,
                history,
                primary_last_seq,
                truncate_to,
                config,
            } => {
                out.push(kind::WELCOME);
                put_u64(out, *epoch);
                put_u64(out, *primary_last_seq);
                put_u64(out, *truncate_to);
                put_u32(out, history.len() as u32);
                for &(e, s) in history {
                    put_u64(out, e);
                    put_u64(out, s);
                }
                put_u32(out, config.len() as u32);
                out.extend_from_slice(config);
            }
            Message::Refuse { code, message } => {
                out.push(kind::REFUSE);
                put_u16(out, *code);
                put_bytes16(out, message.as_bytes());
            }
            Message::Records {
                first_seq,
                last_seq,
                bytes,
            } => {
                out.push(kind::RECORDS);
                put_u64(out, *first_seq);
                put_u64(out, *last_seq);
                out.extend_from_slice(bytes);
            }
            Message::Heartbeat {
                last_seq,
                durable_seq,
                unix_ns,
            } => {
                out.push(kind::HEARTBEAT);
                put_u64(out, *last_seq);
                put_u64(out, *durable_seq);
                put_u64(out, *unix_ns);
            }
            Message::Checkpoint { seq, hash } => {
                out.push(kind::CHECKPOINT);
                put_u64(out, *seq);
                put_u64(out, *hash);
            }
            Message::Ack {
                received,
                durable,
                applied,
            } => {
                out.push(kind::ACK);
                put_u64(out, *received);
                put_u64(out, *durable);
                put_u64(out, *applied);
            }
            Message::Fence { epoch } => {
                out.push(kind::FENCE);
                put_u64(out, *epoch);
            }
            Message::Snapshot { seq, len } => {
                out.push(kind::SNAPSHOT);
                put_u64(out, *seq);
                put_u64(out, *len);
            }
            Message::SnapshotChunk { bytes } => {
                out.push(kind::SNAPSHOT_CHUNK);
                out.extend_from_slice(bytes);
            }
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// Decode one frame's kind and body.
    pub fn decode(kind: u8, body: &[u8]) -> Result<Message, String> {
        let mut r = Reader(body);
        let message = match kind {
            kind::HELLO => {
                if r.u32()? != MAGIC {
                    return Err("not a surge standby (bad magic)".into());
                }
                let version = r.u16()?;
                if version != VERSION {
                    return Err(format!(
                        "replication version {version}, this node speaks {VERSION}"
                    ));
                }
                r.u16()?;
                Message::Hello {
                    epoch: r.u64()?,
                    last_seq: r.u64()?,
                    hash: r.u64()?,
                    nonce: r.array()?,
                    node: String::from_utf8_lossy(r.bytes16()?).into_owned(),
                }
            }
            kind::CHALLENGE => Message::Challenge {
                nonce: r.array()?,
                proof: r.array()?,
            },
            kind::PROOF => Message::Proof { proof: r.array()? },
            kind::WELCOME => {
                let epoch = r.u64()?;
                let primary_last_seq = r.u64()?;
                let truncate_to = r.u64()?;
                let n = r.u32()? as usize;
                if n > body.len() / 16 {
                    return Err("epoch history longer than the frame".into());
                }
                let mut history = Vec::with_capacity(n);
                for _ in 0..n {
                    history.push((r.u64()?, r.u64()?));
                }
                let len = r.u32()? as usize;
                Message::Welcome {
                    epoch,
                    history,
                    primary_last_seq,
                    truncate_to,
                    config: r.take(len)?.to_vec(),
                }
            }
            kind::REFUSE => Message::Refuse {
                code: r.u16()?,
                message: String::from_utf8_lossy(r.bytes16()?).into_owned(),
            },
            kind::RECORDS => Message::Records {
                first_seq: r.u64()?,
                last_seq: r.u64()?,
                bytes: std::mem::take(&mut r.0).to_vec(),
            },
            kind::HEARTBEAT => Message::Heartbeat {
                last_seq: r.u64()?,
                durable_seq: r.u64()?,
                unix_ns: r.u64()?,
            },
            kind::CHECKPOINT => Message::Checkpoint {
                seq: r.u64()?,
                hash: r.u64()?,
            },
            kind::ACK => Message::Ack {
                received: r.u64()?,
                durable: r.u64()?,
                applied: r.u64()?,
            },
            kind::FENCE => Message::Fence { epoch: r.u64()? },
            kind::SNAPSHOT => Message::Snapshot {
                seq: r.u64()?,
                len: r.u64()?,
            },
            kind::SNAPSHOT_CHUNK => Message::SnapshotChunk {
                bytes: std::mem::take(&mut r.0).to_vec(),
            },
            other => return Err(format!("unknown frame kind {other}")),
        };
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the frame's fields", r.0.len()));
        }
        Ok(message)
    }
}

/// Write one message (one `write_all`).
pub fn send(stream: &mut impl Write, message: &Message, scratch: &mut Vec<u8>) -> io::Result<()> {
    scratch.clear();
    message.encode(scratch);
    stream.write_all(scratch)
}

/// Read one message. A malformed frame is `InvalidData` carrying the reason.
pub fn receive(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Message> {
    receive_at_most(stream, buf, FRAME_LEN_MAX)
}

/// `receive` with a smaller frame limit; the frame stays in `buf` (kind, then body).
pub fn receive_at_most(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    len_max: usize,
) -> io::Result<Message> {
    receive_frame_at_most(stream, buf, len_max)?;
    Message::decode(buf[0], &buf[1..]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Read one frame without decoding it: its kind is `buf[0]`, its body `buf[1..]`. A length
/// of 0 or over `FRAME_LEN_MAX` is `InvalidData`.
pub fn receive_frame(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<()> {
    receive_frame_at_most(stream, buf, FRAME_LEN_MAX)
}

/// A handshake frame (HELLO, PROOF) is at most this long: a peer not yet authenticated gets no
/// 8 MiB buffer.
pub const HANDSHAKE_FRAME_LEN_MAX: usize = 1024;

/// `receive_frame` with a smaller limit.
pub fn receive_frame_at_most(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    len_max: usize,
) -> io::Result<()> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > len_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len}"),
        ));
    }
    buf.resize(len, 0);
    stream.read_exact(buf)?;
    debug_assert_eq!(buf.len(), len);
    Ok(())
}

/// What a surge *client* port answers a replication HELLO with, recognised from its bytes
/// (this crate does not depend on `engine`; the layout is docs/PROTOCOL.md's). The client
/// protocol frames the same way (`u32 len, u8 kind, body`), and its HELLO is kind 1 too, but
/// of another length: the client port answers an ERROR frame and closes. That ERROR's kind,
/// 6, is a CHECKPOINT here, so a standby pointed at a client port must look at the bytes
/// before it decodes them as a replication message.
pub mod client_port {
    use std::ops::RangeInclusive;

    /// `engine::wire::frame_kind::ERROR`.
    pub const ERROR_KIND: u8 = 6;
    /// The client protocol's framing, handshake and gateway codes (docs/ERRORS.md), the
    /// ones its ERROR frame carries.
    pub const ERROR_CODES: RangeInclusive<u16> = 200..=299;
    /// The ERROR body's fixed part: `u16 code, u16 message length`; the message follows.
    const ERROR_HEADER_LEN: usize = 4;

    /// The code and message, if `kind` and `body` are a client port's ERROR frame: kind 6,
    /// a code of 200–299, a message length that is exactly what is left of the body.
    pub fn error(kind: u8, body: &[u8]) -> Option<(u16, String)> {
        if kind != ERROR_KIND || body.len() < ERROR_HEADER_LEN {
            return None;
        }
        let code = u16::from_le_bytes([body[0], body[1]]);
        let message_len = usize::from(u16::from_le_bytes([body[2], body[3]]));
        let message = &body[ERROR_HEADER_LEN..];
        if !ERROR_CODES.contains(&code) || message.len() != message_len {
            return None;
        }
        Some((code, String::from_utf8_lossy(message).into_owned()))
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_bytes16(out: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(NAME_MAX)];
    put_u16(out, bytes.len() as u16);
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "frame too short: {n} bytes wanted, {} left",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn bytes16(&mut self) -> Result<&'a [u8], String> {
        let n = usize::from(self.u16()?);
        if n > NAME_MAX {
            return Err(format!("a {n}-byte string (at most {NAME_MAX})"));
        }
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello {
                node: "standby-a".into(),
                epoch: 3,
                last_seq: 77,
                hash: 0xfeed,
                nonce: [7; 32],
            },
            Message::Challenge {
                nonce: [9; 32],
                proof: [1; 32],
            },
            Message::Proof { proof: [2; 32] },
            Message::Welcome {
                epoch: 4,
                history: vec![(1, 1), (4, 900)],
                primary_last_seq: 1200,
                truncate_to: NO_TRUNCATION,
                config: vec![1, 2, 3],
            },
            Message::refuse(ReplicationCode::BadSecret, "no"),
            Message::Records {
                first_seq: 5,
                last_seq: 6,
                bytes: vec![9; 128],
            },
            Message::Heartbeat {
                last_seq: 10,
                durable_seq: 9,
                unix_ns: 123,
            },
            Message::Checkpoint {
                seq: 1024,
                hash: 42,
            },
            Message::Ack {
                received: 8,
                durable: 7,
                applied: 6,
            },
            Message::Fence { epoch: 9 },
            Message::Snapshot { seq: 77, len: 4096 },
            Message::SnapshotChunk {
                bytes: vec![1, 2, 3],
            },
        ]
    }

    #[test]
    fn every_message_round_trips_through_a_stream() {
        let mut stream = Vec::new();
        let mut scratch = Vec::new();
        for m in samples() {
            send(&mut stream, &m, &mut scratch).unwrap();
        }
        let mut reader = &stream[..];
        let mut buf = Vec::new();
        for m in samples() {
            assert_eq!(receive(&mut reader, &mut buf).unwrap(), m);
        }
        assert!(reader.is_empty());
    }

    #[test]
    fn a_hello_with_the_wrong_magic_is_refused() {
        let mut out = Vec::new();
        samples()[0].encode(&mut out);
        out[5] ^= 0xff;
        let err = receive(&mut &out[..], &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_client_ports_error_frame_is_recognised() {
        // What a surge client port answers a replication HELLO with: 209 MALFORMED_FRAME,
        // "frame kind 1". Its body is 16 bytes, so it also decodes as a CHECKPOINT.
        let mut body = Vec::new();
        body.extend_from_slice(&209u16.to_le_bytes());
        body.extend_from_slice(&12u16.to_le_bytes());
        body.extend_from_slice(b"frame kind 1");
        assert_eq!(
            client_port::error(client_port::ERROR_KIND, &body),
            Some((209, "frame kind 1".into()))
        );
        assert!(matches!(
            Message::decode(kind::CHECKPOINT, &body),
            Ok(Message::Checkpoint { .. })
        ));
        assert_eq!(client_port::error(kind::WELCOME, &body), None);
        assert_eq!(
            client_port::error(client_port::ERROR_KIND, &body[..15]),
            None
        );
        let mut checkpoint = Vec::new();
        Message::Checkpoint {
            seq: 1024,
            hash: 42,
        }
        .encode(&mut checkpoint);
        assert_eq!(client_port::error(checkpoint[4], &checkpoint[5..]), None);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(kind in 0u8..12, body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(kind, &body);
            let _ = client_port::error(kind, &body);
        }

        #[test]
        fn every_cut_of_a_frame_is_an_error(cut in 0usize..60) {
            let mut out = Vec::new();
            samples()[1].encode(&mut out);
            let cut = cut.min(out.len() - 1);
            prop_assert!(receive(&mut &out[..cut], &mut Vec::new()).is_err());
        }
    }
}
