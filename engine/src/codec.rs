//! Commands as bytes, for the journal: each request is archived with rkyv and read back with
//! validation (bytecheck), so a damaged or foreign payload is an error, never undefined
//! behaviour. Each command also has a stable kind number, stored beside it in the record
//! header, so tools can tell what a record is without decoding it.

use crate::command::{Command, Request};
use crate::config::EngineConfig;

/// The record kind of each command (the journal's `kind` field). Never renumbered.
pub mod kind {
    pub const UPSERT_SKU: u16 = 1;
    pub const RESTOCK: u16 = 2;
    pub const DELIST: u16 = 3;
    pub const PLACE_ORDER: u16 = 4;
    pub const CONFIRM_PAYMENT: u16 = 5;
    pub const FAIL_PAYMENT: u16 = 6;
    pub const CANCEL_ORDER: u16 = 7;
    pub const STATEMENT_BATCH: u16 = 8;
    pub const TICK: u16 = 9;
    /// Not a command: the engine configuration a journal starts with.
    pub const ENGINE_CONFIG: u16 = 100;
}

impl Command {
    pub fn kind(&self) -> u16 {
        match self {
            Command::UpsertSku(_) => kind::UPSERT_SKU,
            Command::Restock { .. } => kind::RESTOCK,
            Command::Delist { .. } => kind::DELIST,
            Command::PlaceOrder { .. } => kind::PLACE_ORDER,
            Command::ConfirmPayment { .. } => kind::CONFIRM_PAYMENT,
            Command::FailPayment { .. } => kind::FAIL_PAYMENT,
            Command::CancelOrder { .. } => kind::CANCEL_ORDER,
            Command::StatementBatch { .. } => kind::STATEMENT_BATCH,
            Command::Tick => kind::TICK,
        }
    }
}

/// The name of a record kind, for dumps.
pub fn kind_name(kind: u16) -> &'static str {
    match kind {
        kind::UPSERT_SKU => "UpsertSku",
        kind::RESTOCK => "Restock",
        kind::DELIST => "Delist",
        kind::PLACE_ORDER => "PlaceOrder",
        kind::CONFIRM_PAYMENT => "ConfirmPayment",
        kind::FAIL_PAYMENT => "FailPayment",
        kind::CANCEL_ORDER => "CancelOrder",
        kind::STATEMENT_BATCH => "StatementBatch",
        kind::TICK => "Tick",
        kind::ENGINE_CONFIG => "EngineConfig",
        _ => "unknown",
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "undecodable payload: {}", self.0)
    }
}

impl std::error::Error for CodecError {}

/// Archive `request` into `out` (cleared first). `out` is reused and rkyv's scratch arena
/// is per thread, so once warm this allocates nothing: it runs once per journaled request.
pub fn encode_request(request: &Request, out: &mut Vec<u8>) {
    out.clear();
    let taken = std::mem::take(out);
    *out = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(request, taken)
        .expect("archiving to memory");
}

pub fn decode_request(bytes: &[u8]) -> Result<Request, CodecError> {
    decode(bytes)
}

pub fn encode_config(config: &EngineConfig) -> Vec<u8> {
    rkyv::to_bytes::<rkyv::rancor::Error>(config)
        .expect("archiving to memory")
        .into_vec()
}

/// The configuration record, of this layout or of the first one (a journal written before
/// retirement; its new limits take today's defaults). The current layout is larger, so a V1
/// record never reads as one.
pub fn decode_config(bytes: &[u8]) -> Result<EngineConfig, CodecError> {
    decode::<EngineConfig>(bytes).or_else(|e| {
        decode::<crate::config::EngineConfigV1>(bytes)
            .map(EngineConfig::from)
            .map_err(|_| e)
    })
}

/// The alignment journal payloads have, and the archives here need.
const PAYLOAD_ALIGN: usize = 8;

thread_local! {
    /// Where a misaligned payload is copied to be read (kept: decoding allocates nothing).
    static ALIGNED: std::cell::RefCell<rkyv::util::AlignedVec<16>> =
        std::cell::RefCell::new(rkyv::util::AlignedVec::new());
}

fn decode<T>(bytes: &[u8]) -> Result<T, CodecError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    // Journal payloads sit at 8-byte aligned offsets, which is all these archives need
    // (checked: a wrong alignment is refused by validation, not read); anything else is
    // copied to this thread's aligned buffer first.
    if (bytes.as_ptr() as usize).is_multiple_of(PAYLOAD_ALIGN) {
        return rkyv::from_bytes::<T, rkyv::rancor::Error>(bytes)
            .map_err(|e| CodecError(e.to_string()));
    }
    ALIGNED.with_borrow_mut(|aligned| {
        aligned.clear();
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<T, rkyv::rancor::Error>(aligned).map_err(|e| CodecError(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::OrderLine;
    use crate::ids::{ClientId, RequestId, SkuId, UserId};

    #[test]
    fn requests_round_trip_and_garbage_is_refused() {
        let request = Request {
            client: ClientId(3),
            request: RequestId(9),
            command: Command::PlaceOrder {
                user: UserId(5),
                lines: vec![OrderLine {
                    sku: SkuId(1),
                    qty: 2,
                }],
                join_waitlist: true,
            },
        };
        let mut bytes = Vec::new();
        encode_request(&request, &mut bytes);
        assert_eq!(decode_request(&bytes), Ok(request.clone()));
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        assert_eq!(decode_request(&shifted[1..]), Ok(request.clone()));
        // At every offset a payload can sit at: read in place or copied, never misread.
        for at in 0..16 {
            let mut buffer = rkyv::util::AlignedVec::<16>::new();
            buffer.extend_from_slice(&vec![0; at]);
            buffer.extend_from_slice(&bytes);
            assert_eq!(decode_request(&buffer[at..]), Ok(request.clone()));
        }
        // The same buffer, reused: an encoding does not keep what the last one left.
        encode_request(&request, &mut bytes);
        assert_eq!(decode_request(&bytes), Ok(request));
        assert!(decode_request(&bytes[..bytes.len() - 3]).is_err());
        assert!(decode_request(&[0xff; 40]).is_err());
        let config = EngineConfig::default();
        assert_eq!(decode_config(&encode_config(&config)), Ok(config));
    }
}
