//! The engine's limits and its one tunable (the payment window). Every limit is a named
//! constant or a field here; the engine refuses, with a code, rather than grow past one.

use crate::ids::TimestampNs;

/// Lines in one order.
pub const ORDER_LINES_MAX: usize = 16;
/// Entries in one statement batch.
pub const STATEMENT_ENTRIES_MAX: usize = 4096;
/// Releases remembered per SKU to estimate a waitlist ETA.
pub const RELEASE_HISTORY_LEN: usize = 16;

/// Part of the replicated state: every replica must run with the same config, so it travels
/// in snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct EngineConfig {
    /// Time from placing an order to its payment deadline.
    pub payment_window_ns: TimestampNs,
    /// Buyers queued per SKU.
    pub waitlist_len_max: u32,
    /// Requests remembered per client for idempotent retries (rounded up to a power of two).
    pub idempotency_window: u32,
    /// Clients whose requests are remembered (the least recently active is forgotten).
    pub clients_max: u32,
    /// Orders held in memory.
    pub orders_max: u64,
    /// SKUs in the catalog.
    pub skus_max: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            payment_window_ns: 10 * 60 * 1_000_000_000,
            waitlist_len_max: 100_000,
            idempotency_window: 1 << 16,
            clients_max: 1024,
            orders_max: 1 << 27,
            skus_max: 1 << 21,
        }
    }
}
