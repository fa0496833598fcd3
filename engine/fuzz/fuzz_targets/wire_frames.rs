//! The client protocol's decoders over arbitrary bytes, read as a stream of frames the way
//! the gateway and the client read them. Nothing may panic; every request, answer and push
//! that decodes must re-encode to exactly the bytes it came from (one encoding per value,
//! so two peers can never read one frame two ways).

#![no_main]

use engine::wire::{self, frame_kind, ErrorFrame, Hello, Welcome};
use engine::RequestId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        let frame = match wire::split_frame(&data[at..]) {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => break,
        };
        at += frame.len;
        match frame.kind {
            frame_kind::HELLO => {
                if let Ok(hello) = Hello::decode(frame.body) {
                    let mut out = Vec::new();
                    hello.encode(&mut out);
                    assert_eq!(&out[5..], frame.body);
                }
            }
            frame_kind::WELCOME => {
                if let Ok(welcome) = Welcome::decode(frame.body) {
                    let mut out = Vec::new();
                    welcome.encode(&mut out);
                    assert_eq!(&out[5..], frame.body);
                }
            }
            frame_kind::REQUESTS => check_requests(frame.body),
            frame_kind::ANSWERS => {
                if let Ok(answers) = wire::decode_answers(frame.body) {
                    let mut out = (answers.len() as u32).to_le_bytes().to_vec();
                    for a in &answers {
                        wire::encode_reply(a.request, a.seq, &a.reply, &mut out);
                    }
                    assert_eq!(out, frame.body);
                }
            }
            frame_kind::PUSH => {
                if let Ok(pushes) = wire::decode_pushes(frame.body) {
                    let mut out = (pushes.len() as u32).to_le_bytes().to_vec();
                    for p in &pushes {
                        wire::encode_push(p.seq, &p.event, &mut out);
                    }
                    assert_eq!(out, frame.body);
                }
            }
            frame_kind::ERROR => {
                let _ = ErrorFrame::decode(frame.body);
            }
            _ => {}
        }
    }
});

/// Every request that decodes re-encodes to its own bytes; a refused one is refused alone.
fn check_requests(body: &[u8]) {
    let Ok(requests) = wire::decode_requests(body) else {
        return;
    };
    let mut offset = 4;
    for request in requests {
        let body_len =
            u32::from_le_bytes(body[offset + 12..offset + 16].try_into().unwrap()) as usize;
        let original = &body[offset..offset + 16 + body_len];
        offset += 16 + body_len;
        assert_eq!(request.request, RequestId(u64::from_le_bytes(original[..8].try_into().unwrap())));
        if let Ok(operation) = &request.operation {
            let mut out = Vec::new();
            wire::encode_operation(request.request, operation, &mut out);
            assert_eq!(out, original);
        }
    }
    assert_eq!(offset, body.len());
}
