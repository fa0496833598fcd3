//! REQUESTS frames: a count, then that many requests, each `request_id u64, op u16,
//! reserved u16, body_len u32, body`. The op numbers of commands are their journal kinds
//! (`codec::kind`); queries are 20–22. Bodies are fixed little-endian layouts, given next to
//! each encoder below and in docs/PROTOCOL.md.
//!
//! Two levels of failure: a frame whose request headers do not add up to its length is a
//! framing error (the connection is closed); a request whose body is wrong for its op is
//! refused on its own (`MALFORMED_REQUEST`, `UNKNOWN_OP`, …) and its neighbours go ahead.

use super::bytes::{Reader, Writer};
use super::{frame_kind, CountedFrame, REQUESTS_PER_FRAME_MAX};
use crate::code::Code;
use crate::codec::kind;
use crate::command::{Command, OrderLine, Query, SaleWindow, SkuSpec};
use crate::command::{StatementEntry, StatementStatus};
use crate::config::{ORDER_LINES_MAX, STATEMENT_ENTRIES_MAX};
use crate::ids::{OrderId, RequestId, SkuId, UserId};

/// Op numbers of the queries (commands use their journal kinds, 1–8).
pub mod op {
    pub const QUERY_ORDER: u16 = 20;
    pub const QUERY_STOCK: u16 = 21;
    pub const QUERY_WAITLIST: u16 = 22;
}

const REQUEST_HEADER_LEN: usize = 16;
const UPSERT_SKU_LEN: usize = 48;
const PLACE_ORDER_HEADER_LEN: usize = 16;
const ORDER_LINE_LEN: usize = 16;
const STATEMENT_HEADER_LEN: usize = 16;
const STATEMENT_ENTRY_LEN: usize = 32;

/// What a client can ask: a command (sequenced and journaled) or a query (sequenced, not
/// journaled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    Command(Command),
    Query(Query),
}

impl Operation {
    pub fn op(&self) -> u16 {
        match self {
            Operation::Command(command) => command.kind(),
            Operation::Query(Query::Order { .. }) => op::QUERY_ORDER,
            Operation::Query(Query::Stock { .. }) => op::QUERY_STOCK,
            Operation::Query(Query::WaitlistPosition { .. }) => op::QUERY_WAITLIST,
        }
    }
}

/// A request refused before it reaches the engine: the code and its subject (as in
/// `Outcome::Rejected`).
pub type Refusal = (Code, u64);

/// One request as decoded from a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRequest {
    pub request: RequestId,
    pub op: u16,
    pub operation: Result<Operation, Refusal>,
}

/// Check a REQUESTS frame's framing and return its requests. A framing error is the code to
/// close the connection with.
pub fn decode_requests(
    body: &[u8],
) -> Result<impl ExactSizeIterator<Item = WireRequest> + '_, Code> {
    let mut r = Reader::new(body);
    let count = r.u32().ok_or(Code::FrameTooShort)?;
    if count == 0 || count > REQUESTS_PER_FRAME_MAX {
        return Err(Code::BadRequestCount);
    }
    // First pass: the headers must tile the frame exactly.
    let mut check = Reader::new(&body[4..]);
    for _ in 0..count {
        let header = check.take(REQUEST_HEADER_LEN).ok_or(Code::MalformedFrame)?;
        let body_len = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
        check.take(body_len as usize).ok_or(Code::MalformedFrame)?;
    }
    if check.remaining() != 0 {
        return Err(Code::MalformedFrame);
    }
    Ok((0..count).map(move |_| {
        let request = RequestId(r.u64().expect("checked"));
        let op = r.u16().expect("checked");
        let reserved = r.u16().expect("checked");
        let body_len = r.u32().expect("checked") as usize;
        let body = r.take(body_len).expect("checked");
        let operation = if reserved != 0 {
            Err((Code::MalformedRequest, u64::from(op)))
        } else {
            decode_operation(op, body)
        };
        WireRequest {
            request,
            op,
            operation,
        }
    }))
}

fn decode_operation(op: u16, body: &[u8]) -> Result<Operation, Refusal> {
    let malformed = (Code::MalformedRequest, u64::from(op));
    let mut r = Reader::new(body);
    let exact = |len: usize| {
        if body.len() == len {
            Ok(())
        } else {
            Err(malformed)
        }
    };
    let operation = match op {
        kind::UPSERT_SKU => {
            exact(UPSERT_SKU_LEN)?;
            let sku = SkuId(r.u64().expect("len"));
            let price = r.u64().expect("len");
            let stock = r.u64().expect("len");
            let per_user_limit = r.u32().expect("len");
            let windowed = r.flag().ok_or(malformed)?;
            r.zeros(3).ok_or(malformed)?;
            let (start_ns, end_ns) = (r.u64().expect("len"), r.u64().expect("len"));
            if !windowed && (start_ns, end_ns) != (0, 0) {
                return Err(malformed);
            }
            Command::UpsertSku(SkuSpec {
                sku,
                price,
                stock,
                per_user_limit,
                sale_window: windowed.then_some(SaleWindow { start_ns, end_ns }),
            })
            .into()
        }
        kind::RESTOCK => {
            exact(16)?;
            Command::Restock {
                sku: SkuId(r.u64().expect("len")),
                units: r.u64().expect("len"),
            }
            .into()
        }
        kind::DELIST => {
            exact(8)?;
            Command::Delist {
                sku: SkuId(r.u64().expect("len")),
            }
            .into()
        }
        kind::PLACE_ORDER => {
            let user = UserId(r.u64().ok_or(malformed)?);
            let line_count = r.u16().ok_or(malformed)? as usize;
            let join_waitlist = r.flag().ok_or(malformed)?;
            r.zeros(5).ok_or(malformed)?;
            if line_count > ORDER_LINES_MAX {
                // Refused here, as the engine would, without decoding an unbounded list.
                return Err((Code::BadLineCount, line_count as u64));
            }
            exact(PLACE_ORDER_HEADER_LEN + line_count * ORDER_LINE_LEN)?;
            let mut lines = Vec::with_capacity(line_count);
            for _ in 0..line_count {
                let sku = SkuId(r.u64().expect("len"));
                let qty = r.u32().expect("len");
                r.zeros(4).ok_or(malformed)?;
                lines.push(OrderLine { sku, qty });
            }
            Command::PlaceOrder {
                user,
                lines,
                join_waitlist,
            }
            .into()
        }
        kind::CONFIRM_PAYMENT => {
            exact(24)?;
            Command::ConfirmPayment {
                order: OrderId(r.u64().expect("len")),
                amount: r.u64().expect("len"),
                payment_ref: r.u64().expect("len"),
            }
            .into()
        }
        kind::FAIL_PAYMENT => {
            exact(8)?;
            Command::FailPayment {
                order: OrderId(r.u64().expect("len")),
            }
            .into()
        }
        kind::CANCEL_ORDER => {
            exact(8)?;
            Command::CancelOrder {
                order: OrderId(r.u64().expect("len")),
            }
            .into()
        }
        kind::STATEMENT_BATCH => {
            let entry_count = r.u32().ok_or(malformed)? as usize;
            let closes = r.flag().ok_or(malformed)?;
            r.zeros(3).ok_or(malformed)?;
            let closes_through_ns = r.u64().ok_or(malformed)?;
            if entry_count > STATEMENT_ENTRIES_MAX {
                return Err((Code::BadStatement, entry_count as u64));
            }
            exact(STATEMENT_HEADER_LEN + entry_count * STATEMENT_ENTRY_LEN)?;
            if !closes && closes_through_ns != 0 {
                return Err(malformed);
            }
            let mut entries = Vec::with_capacity(entry_count);
            for _ in 0..entry_count {
                let payment_ref = r.u64().expect("len");
                let order = OrderId(r.u64().expect("len"));
                let amount = r.u64().expect("len");
                let status = match r.u8().expect("len") {
                    1 => StatementStatus::Captured,
                    2 => StatementStatus::Declined,
                    _ => return Err(malformed),
                };
                r.zeros(7).ok_or(malformed)?;
                entries.push(StatementEntry {
                    payment_ref,
                    order,
                    amount,
                    status,
                });
            }
            Command::StatementBatch {
                entries,
                closes_through_ns: closes.then_some(closes_through_ns),
            }
            .into()
        }
        op::QUERY_ORDER => {
            exact(8)?;
            Operation::Query(Query::Order {
                order: OrderId(r.u64().expect("len")),
            })
        }
        op::QUERY_STOCK => {
            exact(8)?;
            Operation::Query(Query::Stock {
                sku: SkuId(r.u64().expect("len")),
            })
        }
        op::QUERY_WAITLIST => {
            exact(16)?;
            Operation::Query(Query::WaitlistPosition {
                sku: SkuId(r.u64().expect("len")),
                user: UserId(r.u64().expect("len")),
            })
        }
        // Tick (9) is the sequencer's own; clients cannot send it.
        _ => return Err((Code::UnknownOp, u64::from(op))),
    };
    Ok(operation)
}

impl From<Command> for Operation {
    fn from(command: Command) -> Operation {
        Operation::Command(command)
    }
}

/// Append one request (header and body) to `out`.
pub fn encode_operation(request: RequestId, operation: &Operation, out: &mut Vec<u8>) {
    let header_at = out.len();
    Writer::new(out)
        .u64(request.0)
        .u16(operation.op())
        .u16(0)
        .u32(0);
    let body_at = out.len();
    let mut w = Writer::new(out);
    match operation {
        Operation::Command(Command::UpsertSku(spec)) => {
            let window = spec.sale_window;
            w.u64(spec.sku.0)
                .u64(spec.price)
                .u64(spec.stock)
                .u32(spec.per_user_limit)
                .u8(u8::from(window.is_some()))
                .zeros(3)
                .u64(window.map_or(0, |w| w.start_ns))
                .u64(window.map_or(0, |w| w.end_ns));
        }
        Operation::Command(Command::Restock { sku, units }) => {
            w.u64(sku.0).u64(*units);
        }
        Operation::Command(Command::Delist { sku }) => {
            w.u64(sku.0);
        }
        Operation::Command(Command::PlaceOrder {
            user,
            lines,
            join_waitlist,
        }) => {
            let count = u16::try_from(lines.len()).expect("lines fit a u16");
            w.u64(user.0)
                .u16(count)
                .u8(u8::from(*join_waitlist))
                .zeros(5);
            for line in lines {
                w.u64(line.sku.0).u32(line.qty).zeros(4);
            }
        }
        Operation::Command(Command::ConfirmPayment {
            order,
            amount,
            payment_ref,
        }) => {
            w.u64(order.0).u64(*amount).u64(*payment_ref);
        }
        Operation::Command(Command::FailPayment { order })
        | Operation::Command(Command::CancelOrder { order }) => {
            w.u64(order.0);
        }
        Operation::Command(Command::StatementBatch {
            entries,
            closes_through_ns,
        }) => {
            let count = u32::try_from(entries.len()).expect("entries fit a u32");
            w.u32(count)
                .u8(u8::from(closes_through_ns.is_some()))
                .zeros(3)
                .u64(closes_through_ns.unwrap_or(0));
            for e in entries {
                let status = match e.status {
                    StatementStatus::Captured => 1,
                    StatementStatus::Declined => 2,
                };
                w.u64(e.payment_ref)
                    .u64(e.order.0)
                    .u64(e.amount)
                    .u8(status)
                    .zeros(7);
            }
        }
        Operation::Command(Command::Tick) => {}
        Operation::Query(Query::Order { order }) => {
            w.u64(order.0);
        }
        Operation::Query(Query::Stock { sku }) => {
            w.u64(sku.0);
        }
        Operation::Query(Query::WaitlistPosition { sku, user }) => {
            w.u64(sku.0).u64(user.0);
        }
    }
    let body_len = (out.len() - body_at) as u32;
    out[header_at + 12..header_at + 16].copy_from_slice(&body_len.to_le_bytes());
}

/// Builds one REQUESTS frame.
pub struct RequestsFrameBuilder {
    frame: CountedFrame,
}

impl RequestsFrameBuilder {
    pub fn begin(out: &mut Vec<u8>) -> RequestsFrameBuilder {
        RequestsFrameBuilder {
            frame: CountedFrame::begin(out, frame_kind::REQUESTS),
        }
    }

    pub fn push(&mut self, request: RequestId, operation: &Operation, out: &mut Vec<u8>) {
        assert!(self.count() < REQUESTS_PER_FRAME_MAX, "too many requests");
        encode_operation(request, operation, out);
        self.frame.added();
    }

    pub fn count(&self) -> u32 {
        self.frame.count()
    }

    /// Bytes the frame holds so far (to stay under `FRAME_LEN_MAX`).
    pub fn len(&self, out: &[u8]) -> usize {
        self.frame.len(out)
    }

    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    pub fn finish(self, out: &mut Vec<u8>) {
        assert!(
            !self.is_empty(),
            "a REQUESTS frame carries at least one request"
        );
        self.frame.finish(out);
    }
}
