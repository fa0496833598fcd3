//! The feed's bytes (docs/FEED.md): the SUBSCRIBE frame a consumer opens with, the
//! FEED_BEGIN frame that answers it, and FEED frames of events. An event is
//! `seq u64, at_ns u64, type u16, reserved u16, body_len u32, body`; the same bytes are what
//! a node's feed log stores, so serving a consumer copies them and encodes nothing.

use super::bytes::{Reader, Writer};
use super::counted::{begin_item, end_item, read_item};
use super::{begin_frame, finish_frame, frame_kind};
use crate::code::Code;
use crate::command::{OrderLine, SaleWindow};
use crate::feed::{FeedEvent, FeedItem, OrderImage, SkuImage};
use crate::ids::{ClientId, OrderId, RequestId, SkuId, UserId};
use crate::order::OrderState;
use crate::outcome::{Discrepancy, DiscrepancyKind};
use crate::retired::RetiredOrder;

/// SUBSCRIBE's body: `version u16, flags u16, reserved u32, after u64`.
pub const SUBSCRIBE_LEN: usize = 16;
/// Flag: keep the subscription open and send events as they come.
pub const FOLLOW: u16 = 1;
/// Bytes before an event's body.
pub const ITEM_HEADER_LEN: usize = 24;
/// A FEED frame's fields before its events: `head u64, through u64, count u32, reserved u32`.
pub const FEED_HEADER_LEN: usize = 24;

/// A consumer's request: every event with a sequence above `after`, then (with `follow`)
/// each new one as it comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscribe {
    pub version: u16,
    pub after: u64,
    pub follow: bool,
}

impl Subscribe {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = begin_frame(out, frame_kind::SUBSCRIBE);
        Writer::new(out)
            .u16(self.version)
            .u16(if self.follow { FOLLOW } else { 0 })
            .u32(0)
            .u64(self.after);
        finish_frame(out, start);
    }

    pub fn decode(body: &[u8]) -> Result<Subscribe, Code> {
        if body.len() < SUBSCRIBE_LEN {
            return Err(Code::FrameTooShort);
        }
        if body.len() > SUBSCRIBE_LEN {
            return Err(Code::MalformedFrame);
        }
        let mut r = Reader::new(body);
        let version = r.u16().ok_or(Code::FrameTooShort)?;
        let flags = r.u16().ok_or(Code::FrameTooShort)?;
        let reserved = r.u32().ok_or(Code::FrameTooShort)?;
        let after = r.u64().ok_or(Code::FrameTooShort)?;
        if flags & !FOLLOW != 0 || reserved != 0 {
            return Err(Code::MalformedFrame);
        }
        Ok(Subscribe {
            version,
            after,
            follow: flags & FOLLOW != 0,
        })
    }
}

/// The answer to SUBSCRIBE: the node's feed holds every event after `begins_after` up to
/// `head` (the last sequence it may send now).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedBegin {
    pub begins_after: u64,
    pub head: u64,
}

impl FeedBegin {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = begin_frame(out, frame_kind::FEED_BEGIN);
        Writer::new(out).u64(self.begins_after).u64(self.head);
        finish_frame(out, start);
    }

    pub fn decode(body: &[u8]) -> Result<FeedBegin, Code> {
        let mut r = Reader::new(body);
        let begins_after = r.u64().ok_or(Code::FrameTooShort)?;
        let head = r.u64().ok_or(Code::FrameTooShort)?;
        if r.remaining() != 0 {
            return Err(Code::MalformedFrame);
        }
        Ok(FeedBegin { begins_after, head })
    }
}

/// Start a FEED frame in `out` under `head` (the highest sequence the node may send now);
/// `finish_feed_frame` writes its count and `through` once its events (as stored,
/// `encode_feed_item`'s bytes) follow. Returns where it starts.
pub fn begin_feed_frame(out: &mut Vec<u8>, head: u64) -> usize {
    let start = begin_frame(out, frame_kind::FEED);
    Writer::new(out).u64(head).u64(0).u32(0).u32(0);
    start
}

/// `through`: every event with a sequence at or below it has now been sent (a consumer
/// that has processed this frame resumes after it).
pub fn finish_feed_frame(out: &mut [u8], start: usize, count: u32, through: u64) {
    let at = start + 5 + 8;
    out[at..at + 8].copy_from_slice(&through.to_le_bytes());
    out[at + 8..at + 12].copy_from_slice(&count.to_le_bytes());
    finish_frame(out, start);
}

/// A FEED frame, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedFrame {
    pub head: u64,
    pub through: u64,
    pub items: Vec<FeedItem>,
}

pub fn decode_feed_frame(body: &[u8]) -> Result<FeedFrame, Code> {
    let mut r = Reader::new(body);
    let head = r.u64().ok_or(Code::FrameTooShort)?;
    let through = r.u64().ok_or(Code::FrameTooShort)?;
    let count = r.u32().ok_or(Code::FrameTooShort)?;
    r.zeros(4).ok_or(Code::MalformedFrame)?;
    let mut items = Vec::with_capacity((count as usize).min(r.remaining() / ITEM_HEADER_LEN));
    for _ in 0..count {
        items.push(read_feed_item(&mut r).ok_or(Code::MalformedFrame)?);
    }
    if r.remaining() != 0 {
        return Err(Code::MalformedFrame);
    }
    Ok(FeedFrame {
        head,
        through,
        items,
    })
}

/// Read one event, as a FEED frame or the feed log holds it.
pub fn read_feed_item(r: &mut Reader<'_>) -> Option<FeedItem> {
    let seq = r.u64()?;
    let at_ns = r.u64()?;
    let (number, body) = read_item(r)?;
    let event = decode_event(Code::from_u16(number)?, body)?;
    Some(FeedItem { seq, at_ns, event })
}

pub fn encode_feed_item(seq: u64, at_ns: u64, event: &FeedEvent, out: &mut Vec<u8>) {
    Writer::new(out).u64(seq).u64(at_ns);
    let body_at = begin_item(out, event.code().number());
    let mut w = Writer::new(out);
    match event {
        FeedEvent::Order { order: o, .. } => {
            w.u64(o.id.0)
                .u64(o.client.0)
                .u64(o.request.0)
                .u64(o.user.0)
                .u64(o.total)
                .u64(o.created_ns)
                .u64(o.deadline_ns)
                .u64(o.paid_ns)
                .u64(o.payment_ref)
                .u64(o.closed_ns)
                .u8(o.state as u8)
                .u8(0)
                .u16(o.lines.len() as u16)
                .u32(0);
            for line in &o.lines {
                w.u64(line.sku.0).u32(line.qty).u32(0);
            }
        }
        FeedEvent::OrderRetired(r) => {
            w.u64(r.id.0)
                .u64(r.client.0)
                .u64(r.request.0)
                .u64(r.user.0)
                .u64(r.total)
                .u64(r.created_ns)
                .u64(r.closed_ns)
                .u64(r.payment_ref)
                .u64(r.first_sku.0)
                .u32(r.first_qty)
                .u16(r.line_count)
                .u8(r.state as u8)
                .u8(r.reconciled as u8);
        }
        FeedEvent::WaitlistJoined {
            client,
            request,
            user,
            sku,
            qty,
            position,
            units_ahead,
        } => {
            w.u64(client.0)
                .u64(request.0)
                .u64(user.0)
                .u64(sku.0)
                .u64(*units_ahead)
                .u32(*qty)
                .u32(*position);
        }
        FeedEvent::WaitlistDropped {
            client,
            request,
            user,
            sku,
        } => {
            w.u64(client.0).u64(request.0).u64(user.0).u64(sku.0);
        }
        FeedEvent::Discrepancy(d) => {
            w.u64(d.order.0)
                .u64(d.payment_ref)
                .u64(d.expected)
                .u64(d.captured);
        }
        FeedEvent::Sku { sku: s, .. } => {
            let (start, end) = s.sale_window.map_or((0, 0), |w| (w.start_ns, w.end_ns));
            w.u64(s.id.0)
                .u64(s.price)
                .u64(s.stocked)
                .u64(s.available)
                .u64(s.reserved)
                .u64(s.sold)
                .u64(start)
                .u64(end)
                .u32(s.per_user_limit)
                .u32(s.waitlist)
                .u8(s.listed as u8)
                .u8(s.sale_window.is_some() as u8)
                .zeros(6);
        }
    }
    end_item(out, body_at);
}

fn decode_event(code: Code, body: &[u8]) -> Option<FeedEvent> {
    let mut r = Reader::new(body);
    let event = match code {
        Code::OrderPlaced
        | Code::PaymentConfirmed
        | Code::PaymentFailed
        | Code::OrderCancelled
        | Code::OrderExpired
        | Code::WaitlistOrderCreated => {
            let mut order = OrderImage {
                id: OrderId(r.u64()?),
                client: ClientId(r.u64()?),
                request: RequestId(r.u64()?),
                user: UserId(r.u64()?),
                total: r.u64()?,
                created_ns: r.u64()?,
                deadline_ns: r.u64()?,
                paid_ns: r.u64()?,
                payment_ref: r.u64()?,
                closed_ns: r.u64()?,
                state: OrderState::from_u8(r.u8()?)?,
                lines: Vec::new(),
            };
            r.zeros(1)?;
            let count = r.u16()?;
            r.zeros(4)?;
            for _ in 0..count {
                let sku = SkuId(r.u64()?);
                let qty = r.u32()?;
                r.zeros(4)?;
                order.lines.push(OrderLine { sku, qty });
            }
            FeedEvent::Order { code, order }
        }
        Code::OrderRetired => FeedEvent::OrderRetired(RetiredOrder {
            id: OrderId(r.u64()?),
            client: ClientId(r.u64()?),
            request: RequestId(r.u64()?),
            user: UserId(r.u64()?),
            total: r.u64()?,
            created_ns: r.u64()?,
            closed_ns: r.u64()?,
            payment_ref: r.u64()?,
            first_sku: SkuId(r.u64()?),
            first_qty: r.u32()?,
            line_count: r.u16()?,
            state: OrderState::from_u8(r.u8()?)?,
            reconciled: r.u8()? != 0,
        }),
        Code::WaitlistJoined => {
            let (client, request, user, sku) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
            FeedEvent::WaitlistJoined {
                client: ClientId(client),
                request: RequestId(request),
                user: UserId(user),
                sku: SkuId(sku),
                units_ahead: r.u64()?,
                qty: r.u32()?,
                position: r.u32()?,
            }
        }
        Code::WaitlistDropped => FeedEvent::WaitlistDropped {
            client: ClientId(r.u64()?),
            request: RequestId(r.u64()?),
            user: UserId(r.u64()?),
            sku: SkuId(r.u64()?),
        },
        Code::SkuUpserted | Code::SkuRestocked | Code::SkuDelisted => {
            let (id, price, stocked, available, reserved, sold) =
                (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
            let (start_ns, end_ns) = (r.u64()?, r.u64()?);
            let (per_user_limit, waitlist) = (r.u32()?, r.u32()?);
            let listed = r.u8()? != 0;
            let windowed = r.u8()? != 0;
            r.zeros(6)?;
            FeedEvent::Sku {
                code,
                sku: SkuImage {
                    id: SkuId(id),
                    price,
                    per_user_limit,
                    sale_window: windowed.then_some(SaleWindow { start_ns, end_ns }),
                    listed,
                    stocked,
                    available,
                    reserved,
                    sold,
                    waitlist,
                },
            }
        }
        _ => {
            let kind = discrepancy_kind(code)?;
            FeedEvent::Discrepancy(Discrepancy {
                kind,
                order: OrderId(r.u64()?),
                payment_ref: r.u64()?,
                expected: r.u64()?,
                captured: r.u64()?,
            })
        }
    };
    (r.remaining() == 0).then_some(event)
}

fn discrepancy_kind(code: Code) -> Option<DiscrepancyKind> {
    Some(match code {
        Code::DiscrepancyRefundDue => DiscrepancyKind::RefundDue,
        Code::DiscrepancyAmountMismatch => DiscrepancyKind::AmountMismatch,
        Code::DiscrepancyMissingFromStatement => DiscrepancyKind::MissingFromStatement,
        Code::DiscrepancySettledFromStatement => DiscrepancyKind::SettledFromStatement,
        Code::DiscrepancyBeyondHistory => DiscrepancyKind::BeyondHistory,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::split_frame;

    fn sample() -> Vec<FeedEvent> {
        let order = OrderImage {
            id: OrderId(7),
            client: ClientId(3),
            request: RequestId(11),
            user: UserId(99),
            total: 2_500,
            created_ns: 1_000,
            deadline_ns: 61_000,
            paid_ns: 5_000,
            payment_ref: 77,
            closed_ns: 5_000,
            state: OrderState::Paid,
            lines: vec![
                OrderLine {
                    sku: SkuId(1),
                    qty: 2,
                },
                OrderLine {
                    sku: SkuId(4),
                    qty: 1,
                },
            ],
        };
        vec![
            FeedEvent::Order {
                code: Code::PaymentConfirmed,
                order,
            },
            FeedEvent::WaitlistJoined {
                client: ClientId(3),
                request: RequestId(12),
                user: UserId(5),
                sku: SkuId(1),
                qty: 1,
                position: 4,
                units_ahead: 6,
            },
            FeedEvent::Discrepancy(Discrepancy {
                kind: DiscrepancyKind::AmountMismatch,
                order: OrderId(7),
                payment_ref: 77,
                expected: 2_500,
                captured: 2_400,
            }),
            FeedEvent::Sku {
                code: Code::SkuRestocked,
                sku: SkuImage {
                    id: SkuId(1),
                    price: 1_250,
                    per_user_limit: 2,
                    sale_window: Some(SaleWindow {
                        start_ns: 1,
                        end_ns: 2,
                    }),
                    listed: true,
                    stocked: 10,
                    available: 3,
                    reserved: 2,
                    sold: 5,
                    waitlist: 0,
                },
            },
        ]
    }

    #[test]
    fn a_feed_frame_round_trips_every_event() {
        let events = sample();
        let mut out = Vec::new();
        let start = begin_feed_frame(&mut out, 42);
        for (i, event) in events.iter().enumerate() {
            encode_feed_item(40 + i as u64, 9_000, event, &mut out);
        }
        finish_feed_frame(&mut out, start, events.len() as u32, 41);
        let frame = split_frame(&out).unwrap().unwrap();
        assert_eq!(frame.kind, frame_kind::FEED);
        assert_eq!(frame.len, out.len());
        let decoded = decode_feed_frame(frame.body).unwrap();
        assert_eq!((decoded.head, decoded.through), (42, 41));
        let decoded: Vec<_> = decoded.items.into_iter().map(|i| i.event).collect();
        assert_eq!(decoded, events);
    }

    #[test]
    fn subscribe_refuses_unknown_flags_and_odd_lengths() {
        let mut out = Vec::new();
        Subscribe {
            version: 1,
            after: 9,
            follow: true,
        }
        .encode(&mut out);
        let frame = split_frame(&out).unwrap().unwrap();
        assert_eq!(frame.kind, frame_kind::SUBSCRIBE);
        let sub = Subscribe::decode(frame.body).unwrap();
        assert!(sub.follow && sub.after == 9);
        let mut flagged = frame.body.to_vec();
        flagged[2] = 2;
        assert_eq!(Subscribe::decode(&flagged), Err(Code::MalformedFrame));
        assert_eq!(Subscribe::decode(&flagged[..8]), Err(Code::FrameTooShort));
    }
}
