//! Identifiers and units. Each is a newtype over a fixed-width integer so that a user id can
//! never be passed where an order id is expected, and so that the wire and journal layouts
//! stay explicit (`u64`, never `usize`).

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord,
            rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
        )]
        #[rkyv(derive(Debug, PartialEq, Eq))]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A stock-keeping unit, chosen by the shop.
    SkuId
);
id_type!(
    /// A buyer, chosen by the shop.
    UserId
);
id_type!(
    /// An order, assigned by the engine: 1, 2, 3, … in sequence order, so every replica that
    /// applies the same commands assigns the same ids.
    OrderId
);
id_type!(
    /// A connected client (a shop backend instance). `ClientId::SYSTEM` is the sequencer itself.
    ClientId
);
id_type!(
    /// A client's own id for one request; `(client, request)` is the idempotency key.
    RequestId
);

impl ClientId {
    /// The sequencer, which issues `Tick`s; never deduplicated.
    pub const SYSTEM: ClientId = ClientId(0);
}

/// Money in integer minor units (cents). Never a float.
pub type Money = u64;

/// Nanoseconds since the Unix epoch, stamped by the sequencer on each command.
pub type TimestampNs = u64;

/// A count of stock units.
pub type Units = u64;
