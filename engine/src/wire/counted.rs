//! The shape ANSWERS, PUSH and REQUESTS frames share: the frame header, a `count: u32`, then
//! that many items, each ending in `code/op u16, reserved u16, body_len u32, body`.

use super::bytes::{Reader, Writer};
use super::{begin_frame, finish_frame};

/// A frame being built: `begin` writes the header and a zero count; append each item and
/// call `added`; `finish` writes the count and the length (an empty frame is taken back out).
pub struct CountedFrame {
    start: usize,
    count: u32,
}

impl CountedFrame {
    pub fn begin(out: &mut Vec<u8>, kind: u8) -> CountedFrame {
        let start = begin_frame(out, kind);
        Writer::new(out).u32(0);
        CountedFrame { start, count: 0 }
    }

    /// Call after appending each item.
    pub fn added(&mut self) {
        self.count += 1;
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes the frame holds so far (to stay under `FRAME_LEN_MAX`).
    pub fn len(&self, out: &[u8]) -> usize {
        out.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn finish(self, out: &mut Vec<u8>) {
        if self.count == 0 {
            out.truncate(self.start);
            return;
        }
        let at = self.start + 5;
        out[at..at + 4].copy_from_slice(&self.count.to_le_bytes());
        finish_frame(out, self.start);
    }
}

/// Write an item's `code u16, reserved u16, body_len u32` (length to come); returns where
/// the body starts, for `end_item`.
pub(crate) fn begin_item(out: &mut Vec<u8>, code: u16) -> usize {
    Writer::new(out).u16(code).u16(0).u32(0);
    out.len()
}

/// Write the length of the item body that started at `body_at`.
pub(crate) fn end_item(out: &mut [u8], body_at: usize) {
    let len = u32::try_from(out.len() - body_at).expect("an item body fits a u32");
    out[body_at - 4..body_at].copy_from_slice(&len.to_le_bytes());
}

/// Read an item's `code u16, reserved u16 (zero), body_len u32, body`.
pub(crate) fn read_item<'a>(r: &mut Reader<'a>) -> Option<(u16, &'a [u8])> {
    let code = r.u16()?;
    r.zeros(2)?;
    let len = r.u32()? as usize;
    Some((code, r.take(len)?))
}
