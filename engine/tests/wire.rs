//! The wire codec: every operation, outcome, answer and event survives encode → decode
//! unchanged, and no byte string makes a decoder panic.

use engine::outcome::{OrderView, StockView, WaitlistView};
use engine::wire::{self, frame_kind, Operation, Reply};
use engine::*;
use proptest::prelude::*;

fn id() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..5, any::<u64>()]
}

fn line() -> impl Strategy<Value = OrderLine> {
    (id(), any::<u32>()).prop_map(|(s, qty)| OrderLine { sku: SkuId(s), qty })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (
            id(),
            id(),
            id(),
            any::<u32>(),
            proptest::option::of((id(), id()))
        )
            .prop_map(
                |(sku, price, stock, per_user_limit, window)| Command::UpsertSku(SkuSpec {
                    sku: SkuId(sku),
                    price,
                    stock,
                    per_user_limit,
                    sale_window: window.map(|(start_ns, end_ns)| SaleWindow { start_ns, end_ns }),
                })
            ),
        (id(), id()).prop_map(|(s, units)| Command::Restock {
            sku: SkuId(s),
            units
        }),
        id().prop_map(|s| Command::Delist { sku: SkuId(s) }),
        (
            id(),
            proptest::collection::vec(line(), 0..=16),
            any::<bool>()
        )
            .prop_map(|(u, lines, join_waitlist)| Command::PlaceOrder {
                user: UserId(u),
                lines,
                join_waitlist
            }),
        (id(), id(), id()).prop_map(|(o, amount, payment_ref)| Command::ConfirmPayment {
            order: OrderId(o),
            amount,
            payment_ref
        }),
        id().prop_map(|o| Command::FailPayment { order: OrderId(o) }),
        id().prop_map(|o| Command::CancelOrder { order: OrderId(o) }),
        (
            proptest::collection::vec((id(), id(), id(), any::<bool>()), 0..40),
            proptest::option::of(id())
        )
            .prop_map(|(entries, closes_through_ns)| Command::StatementBatch {
                entries: entries
                    .into_iter()
                    .map(|(payment_ref, o, amount, captured)| StatementEntry {
                        payment_ref,
                        order: OrderId(o),
                        amount,
                        status: if captured {
                            StatementStatus::Captured
                        } else {
                            StatementStatus::Declined
                        },
                    })
                    .collect(),
                closes_through_ns
            }),
    ]
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        command().prop_map(Operation::Command),
        id().prop_map(|o| Operation::Query(Query::Order { order: OrderId(o) })),
        id().prop_map(|s| Operation::Query(Query::Stock { sku: SkuId(s) })),
        (id(), id()).prop_map(|(s, u)| Operation::Query(Query::WaitlistPosition {
            sku: SkuId(s),
            user: UserId(u)
        })),
    ]
}

fn order_state() -> impl Strategy<Value = OrderState> {
    prop_oneof![
        Just(OrderState::PendingPayment),
        Just(OrderState::Paid),
        Just(OrderState::Cancelled),
        Just(OrderState::PaymentFailed),
        Just(OrderState::Expired),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    let refusal = (
        proptest::sample::select(
            Code::ALL
                .iter()
                .copied()
                .filter(|c| c.is_rejection() || c.is_gateway_error())
                .collect::<Vec<_>>(),
        ),
        id(),
    )
        .prop_map(|(code, subject)| Reply::Rejected { code, subject });
    prop_oneof![
        (id(), id(), id()).prop_map(|(o, total, deadline_ns)| Reply::Outcome(
            Outcome::OrderPlaced {
                order: OrderId(o),
                total,
                deadline_ns
            }
        )),
        (id(), any::<u32>(), id()).prop_map(|(s, position, units_ahead)| Reply::Outcome(
            Outcome::WaitlistJoined {
                sku: SkuId(s),
                position,
                units_ahead
            }
        )),
        id().prop_map(|o| Reply::Outcome(Outcome::PaymentConfirmed { order: OrderId(o) })),
        id().prop_map(|o| Reply::Outcome(Outcome::OrderCancelled { order: OrderId(o) })),
        (id(), any::<u32>()).prop_map(|(s, w)| Reply::Outcome(Outcome::SkuDelisted {
            sku: SkuId(s),
            waitlist_dropped: w
        })),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(e, m, d)| Reply::Outcome(
            Outcome::StatementApplied {
                entries: e,
                matched: m,
                discrepancies: d
            }
        )),
        (
            (id(), id(), id(), id()),
            order_state(),
            (id(), id(), id(), id()),
            proptest::collection::vec(line(), 0..=16)
        )
            .prop_map(
                |((o, c, r, u), state, (total, created_ns, deadline_ns, payment_ref), lines)| {
                    Reply::Answer(Answer::Order(OrderView {
                        order: OrderId(o),
                        client: ClientId(c),
                        request: RequestId(r),
                        user: UserId(u),
                        state,
                        total,
                        created_ns,
                        deadline_ns,
                        payment_ref,
                        lines,
                    }))
                }
            ),
        (
            (id(), id(), id(), id()),
            (id(), id(), any::<u32>(), any::<bool>(), any::<u32>())
        )
            .prop_map(
                |((s, price, stocked, available), (reserved, sold, l, listed, w))| {
                    Reply::Answer(Answer::Stock(StockView {
                        sku: SkuId(s),
                        price,
                        stocked,
                        available,
                        reserved,
                        sold,
                        per_user_limit: l,
                        listed,
                        waitlist_len: w,
                    }))
                }
            ),
        (
            id(),
            id(),
            any::<u32>(),
            any::<u32>(),
            id(),
            proptest::option::of(0u64..u64::MAX)
        )
            .prop_map(|(s, u, qty, position, units_ahead, eta_ns)| {
                Reply::Answer(Answer::WaitlistPosition(WaitlistView {
                    sku: SkuId(s),
                    user: UserId(u),
                    qty,
                    position,
                    units_ahead,
                    eta_ns,
                }))
            }),
        refusal,
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (id(), id(), id()).prop_map(|(o, c, u)| Event::OrderExpired {
            order: OrderId(o),
            client: ClientId(c),
            user: UserId(u)
        }),
        ((id(), id(), id(), id()), any::<u32>(), (id(), id(), id())).prop_map(
            |((c, r, u, s), qty, (o, total, deadline_ns))| Event::WaitlistOrderCreated {
                client: ClientId(c),
                request: RequestId(r),
                user: UserId(u),
                sku: SkuId(s),
                qty,
                order: OrderId(o),
                total,
                deadline_ns
            }
        ),
        (id(), id(), id(), id()).prop_map(|(c, r, u, s)| Event::WaitlistDropped {
            client: ClientId(c),
            request: RequestId(r),
            user: UserId(u),
            sku: SkuId(s)
        }),
        (0..4usize, id(), id(), id(), id()).prop_map(|(k, o, p, e, c)| Event::Discrepancy(
            Discrepancy {
                kind: [
                    DiscrepancyKind::RefundDue,
                    DiscrepancyKind::AmountMismatch,
                    DiscrepancyKind::MissingFromStatement,
                    DiscrepancyKind::SettledFromStatement
                ][k],
                order: OrderId(o),
                payment_ref: p,
                expected: e,
                captured: c
            }
        )),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(ops in proptest::collection::vec((any::<u64>(), operation()), 1..20)) {
        let mut out = Vec::new();
        let mut frame = wire::RequestsFrameBuilder::begin(&mut out);
        for (r, op) in &ops {
            frame.push(RequestId(*r), op, &mut out);
        }
        frame.finish(&mut out);
        let f = wire::split_frame(&out).unwrap().unwrap();
        prop_assert_eq!(f.kind, frame_kind::REQUESTS);
        prop_assert_eq!(f.len, out.len());
        let back: Vec<_> = wire::decode_requests(f.body).unwrap().collect();
        prop_assert_eq!(back.len(), ops.len());
        for (got, (r, op)) in back.iter().zip(&ops) {
            prop_assert_eq!(got.request, RequestId(*r));
            prop_assert_eq!(got.op, op.op());
            prop_assert_eq!(got.operation.as_ref(), Ok(op));
        }
    }

    #[test]
    fn answers_round_trip(replies in proptest::collection::vec((any::<u64>(), any::<u64>(), reply()), 1..20)) {
        let mut out = Vec::new();
        let mut frame = wire::CountedFrame::begin(&mut out, frame_kind::ANSWERS);
        for (r, seq, reply) in &replies {
            let seq = if matches!(reply, Reply::Answer(_)) { 0 } else { *seq };
            wire::encode_reply(RequestId(*r), seq, reply, &mut out);
            frame.added();
        }
        frame.finish(&mut out);
        let f = wire::split_frame(&out).unwrap().unwrap();
        prop_assert_eq!(f.kind, frame_kind::ANSWERS);
        let back = wire::decode_answers(f.body).unwrap();
        for (got, (r, _, reply)) in back.iter().zip(&replies) {
            prop_assert_eq!(got.request, RequestId(*r));
            prop_assert_eq!(&got.reply, reply);
        }
        prop_assert_eq!(back.len(), replies.len());
    }

    #[test]
    fn pushes_round_trip(events in proptest::collection::vec((any::<u64>(), event()), 1..20)) {
        let mut out = Vec::new();
        let mut frame = wire::CountedFrame::begin(&mut out, frame_kind::PUSH);
        for (seq, e) in &events {
            wire::encode_push(*seq, e, &mut out);
            frame.added();
        }
        frame.finish(&mut out);
        let f = wire::split_frame(&out).unwrap().unwrap();
        let back = wire::decode_pushes(f.body).unwrap();
        let expected: Vec<_> = events.iter().map(|(seq, event)| wire::WirePush { seq: *seq, event: *event }).collect();
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = wire::split_frame(&bytes);
        if let Ok(requests) = wire::decode_requests(&bytes) {
            for r in requests {
                let _ = r.operation;
            }
        }
        let _ = wire::decode_answers(&bytes);
        let _ = wire::decode_pushes(&bytes);
        let _ = wire::Hello::decode(&bytes);
        let _ = wire::Welcome::decode(&bytes);
        let _ = wire::ErrorFrame::decode(&bytes);
    }
}

#[test]
fn a_bad_request_is_refused_alone() {
    let mut out = Vec::new();
    let mut frame = wire::RequestsFrameBuilder::begin(&mut out);
    let good = Operation::Command(Command::CancelOrder { order: OrderId(4) });
    frame.push(RequestId(1), &good, &mut out);
    let bad_at = out.len();
    frame.push(RequestId(2), &good, &mut out);
    frame.push(RequestId(3), &good, &mut out);
    frame.finish(&mut out);
    out[bad_at + 8] = 9; // op 7 → 9 (Tick: not for clients)
    let f = wire::split_frame(&out).unwrap().unwrap();
    let got: Vec<_> = wire::decode_requests(f.body).unwrap().collect();
    assert_eq!(got[0].operation, Ok(good.clone()));
    assert_eq!(got[1].operation, Err((Code::UnknownOp, 9)));
    assert_eq!(got[2].operation, Ok(good));
    // A header that claims more body than the frame has is a framing error.
    let mut body = f.body.to_vec();
    body[4 + 12] = 200;
    assert!(wire::decode_requests(&body).is_err());
}

#[test]
fn too_many_lines_is_refused_with_the_engines_code() {
    let lines = vec![
        OrderLine {
            sku: SkuId(1),
            qty: 1
        };
        17
    ];
    let mut out = Vec::new();
    let mut frame = wire::RequestsFrameBuilder::begin(&mut out);
    frame.push(
        RequestId(1),
        &Operation::Command(Command::PlaceOrder {
            user: UserId(1),
            lines,
            join_waitlist: false,
        }),
        &mut out,
    );
    frame.finish(&mut out);
    let f = wire::split_frame(&out).unwrap().unwrap();
    let got: Vec<_> = wire::decode_requests(f.body).unwrap().collect();
    assert_eq!(got[0].operation, Err((Code::BadLineCount, 17)));
}

/// The hex examples in docs/PROTOCOL.md are exactly what the encoders write.
#[test]
fn protocol_md_examples_are_what_the_encoders_write() {
    let doc = include_str!("../../docs/PROTOCOL.md");
    let examples: Vec<Vec<u8>> = doc
        .split("\n\n")
        .map(str::trim)
        .filter(|p| p.starts_with('`') && !p.starts_with("```") && p.ends_with('`'))
        .map(|p| {
            let hex: String = p.chars().filter(char::is_ascii_hexdigit).collect();
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect();
    assert_eq!(examples.len(), 4, "HELLO, WELCOME, REQUESTS, ANSWERS");
    let mut hello = Vec::new();
    wire::Hello {
        version: 1,
        client: ClientId(7),
        epoch: 0,
    }
    .encode(&mut hello);
    assert_eq!(examples[0], hello);
    // A new primary with the default limits, at its first epoch.
    let mut welcome = Vec::new();
    wire::Welcome {
        version: 1,
        role: wire::Role::Primary,
        in_flight_max: 4096,
        frame_len_max: wire::FRAME_LEN_MAX as u32,
        requests_per_frame_max: wire::REQUESTS_PER_FRAME_MAX,
        epoch: 1,
    }
    .encode(&mut welcome);
    assert_eq!(examples[1], welcome);
    let mut requests = Vec::new();
    let mut frame = wire::RequestsFrameBuilder::begin(&mut requests);
    let order = Command::PlaceOrder {
        user: UserId(42),
        lines: vec![OrderLine {
            sku: SkuId(1000),
            qty: 2,
        }],
        join_waitlist: false,
    };
    frame.push(RequestId(1), &Operation::Command(order), &mut requests);
    frame.finish(&mut requests);
    assert_eq!(examples[2], requests);
    let mut answers = Vec::new();
    let mut frame = wire::CountedFrame::begin(&mut answers, frame_kind::ANSWERS);
    let placed = Outcome::OrderPlaced {
        order: OrderId(1),
        total: 3998,
        deadline_ns: 600_000_000_000,
    };
    // Record 1 is the configuration, 2 the UpsertSku of SKU 1000: the order is 3.
    wire::encode_outcome(RequestId(1), 3, &placed, &mut answers);
    frame.added();
    frame.finish(&mut answers);
    assert_eq!(examples[3], answers);
}

/// The checks docs/PROTOCOL.md orders: a zero length before anything else (200, even before a
/// HELLO), a HELLO's length (under 16: 200; other than 16 and 24: 209), and a REQUESTS frame's
/// count before its tiling (a count of 4097 is 208 even when the headers do not tile).
#[test]
fn framing_checks_come_in_the_documented_order() {
    assert_eq!(
        wire::split_frame(&[0, 0, 0, 0, 1]),
        Err(Code::FrameTooShort)
    );
    let hello_body = |len: usize| {
        let mut body = vec![0u8; len];
        body[..4].copy_from_slice(&wire::HELLO_MAGIC.to_le_bytes());
        body
    };
    assert_eq!(
        wire::Hello::decode(&hello_body(10)),
        Err(Code::FrameTooShort)
    );
    assert_eq!(
        wire::Hello::decode(&hello_body(20)),
        Err(Code::MalformedFrame)
    );
    assert!(wire::Hello::decode(&hello_body(24)).is_ok());
    let mut body = 4097u32.to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 7]); // tiles nothing
    assert_eq!(
        wire::decode_requests(&body).err(),
        Some(Code::BadRequestCount)
    );
    let mut body = 1u32.to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 7]);
    assert_eq!(
        wire::decode_requests(&body).err(),
        Some(Code::MalformedFrame)
    );
}
