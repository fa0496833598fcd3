//! One chunk of one table as a checkpoint carries it: which table, which chunk, and the
//! chunk's elements as the rkyv archive of a `Vec` of the table's element type (validated
//! with bytecheck before a byte of it is used).

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::de::Pool;
use rkyv::rancor::{Error, Strategy};
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;

/// The engine's tracked tables, by the number a checkpoint file gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum TableId {
    /// The book's order slots (`order::Order`).
    Orders = 1,
    /// The book's chain links (`order::Link`).
    OrderLinks = 2,
    /// The book's free slots (`u32`), the next to use last.
    OrderFree = 3,
    /// The retired ring (`retired::RetiredOrder`).
    Retired = 4,
    /// The holdings table (`holdings::Holding`).
    Holdings = 5,
    /// Remembered outcomes (`Option<idempotency::Remembered>`).
    Remembered = 6,
    /// Who holds each idempotency table (`Option<idempotency::Tenant>`).
    Tenants = 7,
    /// Idempotency tables never handed out (`u32`).
    TenantsFree = 8,
    /// The catalog (`sku::Sku`, waitlists inside).
    Skus = 9,
}

impl TableId {
    pub const ALL: [TableId; 9] = [
        TableId::Orders,
        TableId::OrderLinks,
        TableId::OrderFree,
        TableId::Retired,
        TableId::Holdings,
        TableId::Remembered,
        TableId::Tenants,
        TableId::TenantsFree,
        TableId::Skus,
    ];

    pub fn from_u16(n: u16) -> Option<TableId> {
        TableId::ALL.into_iter().find(|t| *t as u16 == n)
    }

    /// The name `/metrics` and the tools show.
    pub fn name(self) -> &'static str {
        match self {
            TableId::Orders => "orders",
            TableId::OrderLinks => "order_links",
            TableId::OrderFree => "order_free",
            TableId::Retired => "retired",
            TableId::Holdings => "holdings",
            TableId::Remembered => "remembered",
            TableId::Tenants => "tenants",
            TableId::TenantsFree => "tenants_free",
            TableId::Skus => "skus",
        }
    }
}

/// One chunk, encoded.
#[derive(Clone, Debug)]
pub struct Frame {
    pub table: TableId,
    pub chunk: u32,
    /// Elements in the chunk (at most the table's elements per chunk).
    pub elements: u32,
    pub payload: AlignedVec<16>,
}

/// One chunk's elements as the engine copied them, not yet encoded: the engine's thread
/// only copies (a memcpy, or a clone for SKUs with waitlists), and the checkpoint writer's
/// thread encodes (`encode`), so the engine's pause per step stays a copy's.
#[derive(Clone, Debug)]
pub enum Copied {
    Orders(u32, Vec<crate::order::Order>),
    OrderLinks(u32, Vec<crate::order::Link>),
    OrderFree(u32, Vec<u32>),
    Retired(u32, Vec<crate::retired::RetiredOrder>),
    Holdings(u32, Vec<crate::holdings::Holding>),
    Remembered(u32, Vec<Option<crate::idempotency::Remembered>>),
    Tenants(u32, Vec<Option<crate::idempotency::Tenant>>),
    TenantsFree(u32, Vec<u32>),
    Skus(u32, Vec<crate::sku::Sku>),
}

impl Copied {
    /// The frame a checkpoint file carries for it.
    pub fn encode(&self) -> Frame {
        match self {
            Copied::Orders(c, e) => encode(TableId::Orders, *c, e),
            Copied::OrderLinks(c, e) => encode(TableId::OrderLinks, *c, e),
            Copied::OrderFree(c, e) => encode(TableId::OrderFree, *c, e),
            Copied::Retired(c, e) => encode(TableId::Retired, *c, e),
            Copied::Holdings(c, e) => encode(TableId::Holdings, *c, e),
            Copied::Remembered(c, e) => encode(TableId::Remembered, *c, e),
            Copied::Tenants(c, e) => encode(TableId::Tenants, *c, e),
            Copied::TenantsFree(c, e) => encode(TableId::TenantsFree, *c, e),
            Copied::Skus(c, e) => encode(TableId::Skus, *c, e),
        }
    }

    /// The bytes of elements it holds (their in-memory size).
    pub fn bytes(&self) -> usize {
        fn size<T>(e: &[T]) -> usize {
            std::mem::size_of_val(e)
        }
        match self {
            Copied::Orders(_, e) => size(e),
            Copied::OrderLinks(_, e) => size(e),
            Copied::OrderFree(_, e) | Copied::TenantsFree(_, e) => size(e),
            Copied::Retired(_, e) => size(e),
            Copied::Holdings(_, e) => size(e),
            Copied::Remembered(_, e) => size(e),
            Copied::Tenants(_, e) => size(e),
            Copied::Skus(_, e) => size(e),
        }
    }
}

/// Encode a chunk's elements.
pub(crate) fn encode<T>(table: TableId, chunk: u32, elements: &Vec<T>) -> Frame
where
    Vec<T>: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, Error>>,
{
    let payload = rkyv::to_bytes::<Error>(elements).expect("serializing to memory cannot fail");
    Frame {
        table,
        chunk,
        elements: elements.len() as u32,
        payload,
    }
}

/// Decode a chunk's elements, every byte checked first; `elements` is how many the frame
/// said it holds.
pub(crate) fn decode<T>(payload: &[u8], elements: u32) -> Result<Vec<T>, String>
where
    Vec<T>: rkyv::Archive,
    <Vec<T> as rkyv::Archive>::Archived: for<'a> CheckBytes<HighValidator<'a, Error>>
        + rkyv::Deserialize<Vec<T>, Strategy<Pool, Error>>,
{
    let decoded = crate::snapshot::with_aligned(payload, |aligned| {
        rkyv::from_bytes::<Vec<T>, Error>(aligned)
    })
    .map_err(|e| e.to_string())?;
    if decoded.len() != elements as usize {
        return Err(format!(
            "the frame says {elements} elements, its payload holds {}",
            decoded.len()
        ));
    }
    Ok(decoded)
}
