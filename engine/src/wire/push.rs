//! PUSH frames: events sent to a client without a request of its own — its waitlist entry
//! became an order, its order expired, a statement it sent turned up a discrepancy. A count,
//! then that many events, each `seq u64, code u16, reserved u16, body_len u32, body`; `seq`
//! is the journal sequence of the command whose application raised the event.

use super::bytes::{Reader, Writer};
use super::counted::{begin_item, end_item, read_item};
use crate::code::Code;
use crate::ids::{ClientId, OrderId, RequestId, SkuId, UserId};
use crate::outcome::{Discrepancy, DiscrepancyKind, Event};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WirePush {
    pub seq: u64,
    pub event: Event,
}

pub fn encode_push(seq: u64, event: &Event, out: &mut Vec<u8>) {
    Writer::new(out).u64(seq);
    let body_at = begin_item(out, event.code().number());
    let mut w = Writer::new(out);
    match *event {
        Event::OrderExpired {
            order,
            client,
            user,
        } => {
            w.u64(order.0).u64(client.0).u64(user.0);
        }
        Event::WaitlistOrderCreated {
            client,
            request,
            user,
            sku,
            qty,
            order,
            total,
            deadline_ns,
        } => {
            w.u64(client.0)
                .u64(request.0)
                .u64(user.0)
                .u64(sku.0)
                .u64(order.0)
                .u64(total)
                .u64(deadline_ns)
                .u32(qty)
                .u32(0);
        }
        Event::WaitlistDropped {
            client,
            request,
            user,
            sku,
        } => {
            w.u64(client.0).u64(request.0).u64(user.0).u64(sku.0);
        }
        Event::Discrepancy(d) => {
            w.u64(d.order.0)
                .u64(d.payment_ref)
                .u64(d.expected)
                .u64(d.captured);
        }
        Event::OrderRetired { order, state } => {
            w.u64(order.0).u8(state as u8).zeros(7);
        }
    }
    end_item(out, body_at);
}

pub fn decode_pushes(body: &[u8]) -> Result<Vec<WirePush>, Code> {
    let mut r = Reader::new(body);
    let count = r.u32().ok_or(Code::FrameTooShort)?;
    let mut pushes = Vec::with_capacity((count as usize).min(body.len() / 16));
    for _ in 0..count {
        let seq = r.u64().ok_or(Code::MalformedFrame)?;
        let (number, body) = read_item(&mut r).ok_or(Code::MalformedFrame)?;
        let code = Code::from_u16(number).ok_or(Code::MalformedFrame)?;
        let event = decode_event(code, body).ok_or(Code::MalformedFrame)?;
        pushes.push(WirePush { seq, event });
    }
    if r.remaining() != 0 {
        return Err(Code::MalformedFrame);
    }
    Ok(pushes)
}

fn decode_event(code: Code, body: &[u8]) -> Option<Event> {
    let mut r = Reader::new(body);
    let discrepancy = |kind, r: &mut Reader<'_>| -> Option<Event> {
        Some(Event::Discrepancy(Discrepancy {
            kind,
            order: OrderId(r.u64()?),
            payment_ref: r.u64()?,
            expected: r.u64()?,
            captured: r.u64()?,
        }))
    };
    let event = match code {
        Code::OrderExpired => Event::OrderExpired {
            order: OrderId(r.u64()?),
            client: ClientId(r.u64()?),
            user: UserId(r.u64()?),
        },
        Code::WaitlistOrderCreated => {
            let event = Event::WaitlistOrderCreated {
                client: ClientId(r.u64()?),
                request: RequestId(r.u64()?),
                user: UserId(r.u64()?),
                sku: SkuId(r.u64()?),
                order: OrderId(r.u64()?),
                total: r.u64()?,
                deadline_ns: r.u64()?,
                qty: r.u32()?,
            };
            r.zeros(4)?;
            event
        }
        Code::WaitlistDropped => Event::WaitlistDropped {
            client: ClientId(r.u64()?),
            request: RequestId(r.u64()?),
            user: UserId(r.u64()?),
            sku: SkuId(r.u64()?),
        },
        Code::DiscrepancyRefundDue => discrepancy(DiscrepancyKind::RefundDue, &mut r)?,
        Code::DiscrepancyAmountMismatch => discrepancy(DiscrepancyKind::AmountMismatch, &mut r)?,
        Code::DiscrepancyMissingFromStatement => {
            discrepancy(DiscrepancyKind::MissingFromStatement, &mut r)?
        }
        Code::DiscrepancySettledFromStatement => {
            discrepancy(DiscrepancyKind::SettledFromStatement, &mut r)?
        }
        Code::DiscrepancyBeyondHistory => discrepancy(DiscrepancyKind::BeyondHistory, &mut r)?,
        Code::OrderRetired => {
            let order = OrderId(r.u64()?);
            let state = crate::order::OrderState::from_u8(r.u8()?)?;
            r.zeros(7)?;
            Event::OrderRetired { order, state }
        }
        _ => return None,
    };
    (r.remaining() == 0).then_some(event)
}
