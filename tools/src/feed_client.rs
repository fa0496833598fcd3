//! A feed consumer's side of the feed port (docs/FEED.md): connect, SUBSCRIBE after a
//! sequence, read FEED_BEGIN, then FEED frames. Blocking; `surge feed`, the demo and the
//! tests use it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use engine::wire::feed::{decode_feed_frame, FeedBegin, FeedFrame, Subscribe};
use engine::wire::{frame_kind, ErrorFrame, FRAME_LEN_MAX, PROTOCOL_VERSION};
use engine::Code;

pub struct Subscription {
    stream: TcpStream,
    pub begin: FeedBegin,
    buf: Vec<u8>,
}

/// The server refused or ended the subscription with an ERROR frame.
#[derive(Debug, thiserror::Error)]
#[error("{name} ({code}): {message}")]
pub struct FeedRefused {
    pub code: u16,
    pub name: &'static str,
    pub message: String,
    /// From the FEED_BEGIN before it, if one came: where the feed begins.
    pub begins_after: Option<u64>,
}

impl Subscription {
    /// Subscribe to the events after `after`; with `follow`, the subscription stays open
    /// for new ones, else it ends at the node's head of now.
    pub fn open(addr: SocketAddr, after: u64, follow: bool) -> anyhow::Result<Subscription> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to the feed port {addr}"))?;
        stream.set_nodelay(true)?;
        let mut out = Vec::new();
        Subscribe {
            version: PROTOCOL_VERSION,
            after,
            follow,
        }
        .encode(&mut out);
        stream.write_all(&out)?;
        let mut buf = Vec::new();
        let (kind, body) = read_frame(&mut stream, &mut buf)?.context("the feed port closed")?;
        let begin = match kind {
            frame_kind::FEED_BEGIN => FeedBegin::decode(body)
                .map_err(|c| anyhow::anyhow!("a bad FEED_BEGIN: {}", c.name()))?,
            frame_kind::ERROR => return Err(refused(body, None).into()),
            other => bail!("frame kind {other} where FEED_BEGIN was due"),
        };
        let mut subscription = Subscription { stream, begin, buf };
        if after < begin.begins_after {
            // The ERROR that follows says so.
            let begins_after = Some(begin.begins_after);
            let (kind, body) = read_frame(&mut subscription.stream, &mut subscription.buf)?
                .context("the feed port closed")?;
            if kind == frame_kind::ERROR {
                return Err(refused(body, begins_after).into());
            }
            bail!(
                "the feed begins after {} but no FEED_TRUNCATED came",
                begin.begins_after
            );
        }
        Ok(subscription)
    }

    /// Keep the kernel's receive buffer for this subscription to about `bytes` (a consumer
    /// that wants to stay close to the feed's head, or a test of one that falls behind).
    pub fn limit_receive_buffer(&self, bytes: usize) {
        server::feed::port::limit_socket_buffer(&self.stream, libc::SO_RCVBUF, bytes);
    }

    /// Give up on a frame that does not come within `timeout` (None: wait for ever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    /// The next FEED frame; `None` once the server ended the subscription (without
    /// `follow`, at the head it had when it began).
    pub fn next_frame(&mut self) -> anyhow::Result<Option<FeedFrame>> {
        let Some((kind, body)) = read_frame(&mut self.stream, &mut self.buf)? else {
            return Ok(None);
        };
        match kind {
            frame_kind::FEED => {
                Ok(Some(decode_feed_frame(body).map_err(|c| {
                    anyhow::anyhow!("a bad FEED frame: {}", c.name())
                })?))
            }
            frame_kind::ERROR => Err(refused(body, None).into()),
            other => bail!("frame kind {other} on a subscription"),
        }
    }
}

fn refused(body: &[u8], begins_after: Option<u64>) -> FeedRefused {
    match ErrorFrame::decode(body) {
        Ok(e) => FeedRefused {
            code: e.code,
            name: Code::from_u16(e.code).map_or("UNKNOWN", |c| c.name()),
            message: e.message,
            begins_after,
        },
        Err(_) => FeedRefused {
            code: 0,
            name: "UNKNOWN",
            message: "an unreadable ERROR frame".into(),
            begins_after,
        },
    }
}

/// One frame: `None` at a clean end of the stream.
fn read_frame<'a>(
    stream: &mut TcpStream,
    buf: &'a mut Vec<u8>,
) -> anyhow::Result<Option<(u8, &'a [u8])>> {
    let mut header = [0u8; 5];
    match stream.read_exact(&mut header[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context("reading the feed"),
    }
    stream.read_exact(&mut header[1..])?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4")) as usize;
    if len == 0 || len > FRAME_LEN_MAX {
        bail!("a frame of length {len} from the feed port");
    }
    buf.resize(len - 1, 0);
    stream.read_exact(buf)?;
    Ok(Some((header[4], &buf[..])))
}
