//! The codec a load connection speaks through: the `Protocol` trait (encode requests, decode
//! answers), the `ConnectionLost` its decoder returns, and surge's own codec. The peers'
//! codecs (Redis, PostgreSQL) are in `crate::peers`; which system a run drives, and how it
//! connects, is `open_loop::System`. The generator's loop, schedule and measurements are the
//! same for all of them; only the bytes differ.

use engine::wire::{self, frame_kind, ErrorFrame, Operation, RequestsFrameBuilder};
use engine::RequestId;

use crate::client::{decode_items, Incoming};

/// What went wrong on a connection, for the error table: a stable name and the detail.
#[derive(Debug)]
pub struct ConnectionLost {
    pub name: String,
    pub detail: String,
}

impl std::fmt::Display for ConnectionLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.detail)
    }
}

impl std::error::Error for ConnectionLost {}

impl ConnectionLost {
    pub fn new(name: &str, detail: impl std::fmt::Display) -> ConnectionLost {
        ConnectionLost {
            name: name.into(),
            detail: detail.to_string(),
        }
    }
}

/// One connection's encoder and decoder. Requests are answered in the order they were sent.
pub trait Protocol: Send {
    /// Append one request.
    fn encode(
        &mut self,
        request: RequestId,
        operation: &Operation,
        out: &mut Vec<u8>,
    ) -> anyhow::Result<()>;
    /// Finish what `encode` appended so it can be written (surge closes its frame; the
    /// peers' messages stand alone).
    fn seal(&mut self, _out: &mut Vec<u8>) {}
    /// Decode the whole messages at the front of `input` into `incoming`; returns the bytes
    /// consumed.
    fn decode(
        &mut self,
        input: &[u8],
        incoming: &mut Vec<Incoming>,
    ) -> Result<usize, ConnectionLost>;
}

/// surge's own protocol (docs/PROTOCOL.md): requests packed into REQUESTS frames.
#[derive(Default)]
pub struct SurgeProtocol {
    frame: Option<RequestsFrameBuilder>,
}

impl Protocol for SurgeProtocol {
    fn encode(
        &mut self,
        request: RequestId,
        operation: &Operation,
        out: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        let frame = self
            .frame
            .get_or_insert_with(|| RequestsFrameBuilder::begin(out));
        frame.push(request, operation, out);
        if frame.count() >= wire::REQUESTS_PER_FRAME_MAX
            || frame.len(out) >= wire::FRAME_LEN_MAX / 2
        {
            self.seal(out);
        }
        Ok(())
    }

    fn seal(&mut self, out: &mut Vec<u8>) {
        if let Some(frame) = self.frame.take() {
            frame.finish(out);
        }
    }

    fn decode(
        &mut self,
        input: &[u8],
        incoming: &mut Vec<Incoming>,
    ) -> Result<usize, ConnectionLost> {
        let mut used = 0;
        let protocol = |code: engine::Code| ConnectionLost::new("PROTOCOL", code);
        while let Some(frame) = wire::split_frame(&input[used..]).map_err(protocol)? {
            if frame.kind == frame_kind::ERROR {
                let e = ErrorFrame::decode(frame.body).map_err(protocol)?;
                let name = engine::Code::from_u16(e.code).map_or("SERVER_ERROR", |c| c.name());
                return Err(ConnectionLost::new(name, e.message));
            }
            decode_items(frame.kind, frame.body, incoming)
                .map_err(|e| ConnectionLost::new("PROTOCOL", e))?;
            used += frame.len;
        }
        Ok(used)
    }
}
