//! ANSWERS frames: a count, then that many answers, each `request_id u64, seq u64, code u16,
//! reserved u16, body_len u32, body`. `seq` is the journal sequence of the command the answer
//! is for (0 for queries and for requests refused before sequencing). The body layout follows
//! from the code: see each arm below and docs/PROTOCOL.md.

use super::bytes::{Reader, Writer};
use super::counted::{begin_item, end_item, read_item};
use crate::code::Code;
use crate::command::OrderLine;
use crate::ids::{ClientId, OrderId, RequestId, SkuId, UserId};
use crate::order::OrderState;
use crate::outcome::{Answer, OrderView, Outcome, StockView, WaitlistView};
use crate::retired::RetiredOrder;

const ANSWER_HEADER_LEN: usize = 24;
/// `eta_ns` when there is no estimate yet (an estimate is capped one below).
const ETA_UNKNOWN: u64 = u64::MAX;

/// What came back for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A command's outcome (never `Outcome::Rejected`: that decodes as `Rejected`).
    Outcome(Outcome),
    /// A query's answer (never `Answer::Rejected`).
    Answer(Answer),
    /// Refused by the engine (100–199) or the gateway (200–299); `subject` as in
    /// `Outcome::Rejected`.
    Rejected { code: Code, subject: u64 },
}

impl Reply {
    pub fn code(&self) -> Code {
        match self {
            Reply::Outcome(o) => o.code(),
            Reply::Answer(a) => a.code(),
            Reply::Rejected { code, .. } => *code,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireAnswer {
    pub request: RequestId,
    pub seq: u64,
    pub reply: Reply,
}

/// Append one answer for `reply`.
pub fn encode_reply(request: RequestId, seq: u64, reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Outcome(outcome) => encode_outcome(request, seq, outcome, out),
        Reply::Answer(answer) => encode_answer(request, answer, out),
        Reply::Rejected { code, subject } => encode_refusal(request, seq, *code, *subject, out),
    }
}

fn header(request: RequestId, seq: u64, code: Code, out: &mut Vec<u8>) -> usize {
    Writer::new(out).u64(request.0).u64(seq);
    begin_item(out, code.number())
}

fn finish_body(body_at: usize, out: &mut [u8]) {
    end_item(out, body_at);
}

pub fn encode_refusal(request: RequestId, seq: u64, code: Code, subject: u64, out: &mut Vec<u8>) {
    let at = header(request, seq, code, out);
    Writer::new(out).u64(subject);
    finish_body(at, out);
}

pub fn encode_outcome(request: RequestId, seq: u64, outcome: &Outcome, out: &mut Vec<u8>) {
    let at = header(request, seq, outcome.code(), out);
    let mut w = Writer::new(out);
    match *outcome {
        Outcome::OrderPlaced {
            order,
            total,
            deadline_ns,
        } => w.u64(order.0).u64(total).u64(deadline_ns),
        Outcome::WaitlistJoined {
            sku,
            position,
            units_ahead,
        } => w.u64(sku.0).u32(position).u32(0).u64(units_ahead),
        Outcome::PaymentConfirmed { order }
        | Outcome::PaymentFailed { order }
        | Outcome::OrderCancelled { order } => w.u64(order.0),
        Outcome::SkuUpserted { sku } => w.u64(sku.0),
        Outcome::SkuRestocked { sku, available } => w.u64(sku.0).u64(available),
        Outcome::SkuDelisted {
            sku,
            waitlist_dropped,
        } => w.u64(sku.0).u32(waitlist_dropped).u32(0),
        Outcome::Ticked { now_ns } => w.u64(now_ns),
        Outcome::StatementApplied {
            entries,
            matched,
            discrepancies,
        } => w.u32(entries).u32(matched).u32(discrepancies).u32(0),
        Outcome::Rejected { subject, .. } => w.u64(subject),
    };
    finish_body(at, out);
}

pub fn encode_answer(request: RequestId, answer: &Answer, out: &mut Vec<u8>) {
    let at = header(request, 0, answer.code(), out);
    let mut w = Writer::new(out);
    match answer {
        Answer::Order(o) => {
            w.u64(o.order.0)
                .u64(o.client.0)
                .u64(o.request.0)
                .u64(o.user.0)
                .u64(o.total)
                .u64(o.created_ns)
                .u64(o.deadline_ns)
                .u64(o.payment_ref)
                .u8(o.state as u8)
                .u8(0)
                .u16(u16::try_from(o.lines.len()).expect("lines fit a u16"))
                .u32(0);
            for line in &o.lines {
                w.u64(line.sku.0).u32(line.qty).u32(0);
            }
        }
        Answer::RetiredOrder(o) => {
            w.u64(o.id.0)
                .u64(o.client.0)
                .u64(o.request.0)
                .u64(o.user.0)
                .u64(o.total)
                .u64(o.created_ns)
                .u64(o.closed_ns)
                .u64(o.payment_ref)
                .u8(o.state as u8)
                .u8(u8::from(o.reconciled))
                .u16(o.line_count)
                .u32(o.first_qty)
                .u64(o.first_sku.0);
        }
        Answer::Stock(s) => {
            w.u64(s.sku.0)
                .u64(s.price)
                .u64(s.stocked)
                .u64(s.available)
                .u64(s.reserved)
                .u64(s.sold)
                .u32(s.per_user_limit)
                .u32(s.waitlist_len)
                .u8(u8::from(s.listed))
                .zeros(7);
        }
        Answer::WaitlistPosition(v) => {
            w.u64(v.sku.0)
                .u64(v.user.0)
                .u32(v.qty)
                .u32(v.position)
                .u64(v.units_ahead)
                .u64(v.eta_ns.map_or(ETA_UNKNOWN, |eta| eta.min(ETA_UNKNOWN - 1)));
        }
        Answer::Rejected { subject, .. } => {
            w.u64(*subject);
        }
    }
    finish_body(at, out);
}

/// Every answer in an ANSWERS frame body.
pub fn decode_answers(body: &[u8]) -> Result<Vec<WireAnswer>, Code> {
    let mut r = Reader::new(body);
    let count = r.u32().ok_or(Code::FrameTooShort)?;
    let mut answers = Vec::with_capacity((count as usize).min(body.len() / ANSWER_HEADER_LEN));
    for _ in 0..count {
        let request = RequestId(r.u64().ok_or(Code::MalformedFrame)?);
        let seq = r.u64().ok_or(Code::MalformedFrame)?;
        let (number, body) = read_item(&mut r).ok_or(Code::MalformedFrame)?;
        let code = Code::from_u16(number).ok_or(Code::MalformedFrame)?;
        let reply = decode_reply(code, body).ok_or(Code::MalformedFrame)?;
        if matches!(reply, Reply::Answer(_)) && seq != 0 {
            // Query answers carry no sequence: one encoding per answer.
            return Err(Code::MalformedFrame);
        }
        answers.push(WireAnswer {
            request,
            seq,
            reply,
        });
    }
    if r.remaining() != 0 {
        return Err(Code::MalformedFrame);
    }
    Ok(answers)
}

fn decode_reply(code: Code, body: &[u8]) -> Option<Reply> {
    let mut r = Reader::new(body);
    let reply = match code {
        Code::OrderPlaced => Reply::Outcome(Outcome::OrderPlaced {
            order: OrderId(r.u64()?),
            total: r.u64()?,
            deadline_ns: r.u64()?,
        }),
        Code::WaitlistJoined => {
            let sku = SkuId(r.u64()?);
            let position = r.u32()?;
            r.zeros(4)?;
            Reply::Outcome(Outcome::WaitlistJoined {
                sku,
                position,
                units_ahead: r.u64()?,
            })
        }
        Code::PaymentConfirmed => Reply::Outcome(Outcome::PaymentConfirmed {
            order: OrderId(r.u64()?),
        }),
        Code::PaymentFailed => Reply::Outcome(Outcome::PaymentFailed {
            order: OrderId(r.u64()?),
        }),
        Code::OrderCancelled => Reply::Outcome(Outcome::OrderCancelled {
            order: OrderId(r.u64()?),
        }),
        Code::SkuUpserted => Reply::Outcome(Outcome::SkuUpserted {
            sku: SkuId(r.u64()?),
        }),
        Code::SkuRestocked => Reply::Outcome(Outcome::SkuRestocked {
            sku: SkuId(r.u64()?),
            available: r.u64()?,
        }),
        Code::SkuDelisted => {
            let sku = SkuId(r.u64()?);
            let waitlist_dropped = r.u32()?;
            r.zeros(4)?;
            Reply::Outcome(Outcome::SkuDelisted {
                sku,
                waitlist_dropped,
            })
        }
        Code::Ticked => Reply::Outcome(Outcome::Ticked { now_ns: r.u64()? }),
        Code::StatementApplied => {
            let outcome = Outcome::StatementApplied {
                entries: r.u32()?,
                matched: r.u32()?,
                discrepancies: r.u32()?,
            };
            r.zeros(4)?;
            Reply::Outcome(outcome)
        }
        Code::OrderInfo => {
            let order = OrderId(r.u64()?);
            let client = ClientId(r.u64()?);
            let request = RequestId(r.u64()?);
            let user = UserId(r.u64()?);
            let total = r.u64()?;
            let created_ns = r.u64()?;
            let deadline_ns = r.u64()?;
            let payment_ref = r.u64()?;
            let state = order_state(r.u8()?)?;
            r.zeros(1)?;
            let line_count = r.u16()? as usize;
            r.zeros(4)?;
            if r.remaining() != line_count * 16 {
                return None;
            }
            let mut lines = Vec::with_capacity(line_count);
            for _ in 0..line_count {
                let sku = SkuId(r.u64()?);
                let qty = r.u32()?;
                r.zeros(4)?;
                lines.push(OrderLine { sku, qty });
            }
            Reply::Answer(Answer::Order(OrderView {
                order,
                client,
                request,
                user,
                state,
                total,
                created_ns,
                deadline_ns,
                payment_ref,
                lines,
            }))
        }
        Code::RetiredOrderInfo => Reply::Answer(Answer::RetiredOrder(RetiredOrder {
            id: OrderId(r.u64()?),
            client: ClientId(r.u64()?),
            request: RequestId(r.u64()?),
            user: UserId(r.u64()?),
            total: r.u64()?,
            created_ns: r.u64()?,
            closed_ns: r.u64()?,
            payment_ref: r.u64()?,
            state: order_state(r.u8()?)?,
            reconciled: r.flag()?,
            line_count: r.u16()?,
            first_qty: r.u32()?,
            first_sku: SkuId(r.u64()?),
        })),
        Code::StockInfo => {
            let view = StockView {
                sku: SkuId(r.u64()?),
                price: r.u64()?,
                stocked: r.u64()?,
                available: r.u64()?,
                reserved: r.u64()?,
                sold: r.u64()?,
                per_user_limit: r.u32()?,
                waitlist_len: r.u32()?,
                listed: r.flag()?,
            };
            r.zeros(7)?;
            Reply::Answer(Answer::Stock(view))
        }
        Code::WaitlistPosition => Reply::Answer(Answer::WaitlistPosition(WaitlistView {
            sku: SkuId(r.u64()?),
            user: UserId(r.u64()?),
            qty: r.u32()?,
            position: r.u32()?,
            units_ahead: r.u64()?,
            eta_ns: Some(r.u64()?).filter(|&eta| eta != ETA_UNKNOWN),
        })),
        code if code.number() >= 100 && code.number() < 300 => Reply::Rejected {
            code,
            subject: r.u64()?,
        },
        // Event codes never come as answers.
        _ => return None,
    };
    (r.remaining() == 0).then_some(reply)
}

fn order_state(n: u8) -> Option<OrderState> {
    OrderState::from_u8(n)
}
