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
/// in snapshots and as the journal's first record. Every table the engine has is sized from
/// these at start-up and never grows.
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
    /// Orders held in full: open ones, and closed ones until they retire.
    pub orders_max: u64,
    /// SKUs in the catalog.
    pub skus_max: u32,
    /// Retired orders remembered (final state and key fields); the oldest is forgotten.
    pub orders_retired_max: u64,
    /// How long a closed order stays in full before it retires.
    pub retire_after_ns: TimestampNs,
    /// (user, SKU) holdings kept for per-user limits.
    pub holdings_max: u32,
    /// Buyers queued on all waitlists together.
    pub waitlist_entries_max: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            payment_window_ns: 10 * 60 * 1_000_000_000,
            waitlist_len_max: 100_000,
            idempotency_window: 1 << 13,
            clients_max: 1024,
            orders_max: 1 << 22,
            skus_max: 1 << 16,
            orders_retired_max: 1 << 20,
            retire_after_ns: 1_000_000_000,
            holdings_max: 1 << 22,
            waitlist_entries_max: 1 << 20,
        }
    }
}

/// The first configuration layout, as journals written before retirement start with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct EngineConfigV1 {
    pub payment_window_ns: TimestampNs,
    pub waitlist_len_max: u32,
    pub idempotency_window: u32,
    pub clients_max: u32,
    pub orders_max: u64,
    pub skus_max: u32,
}

impl From<EngineConfigV1> for EngineConfig {
    /// The V1 limits, with today's defaults for what V1 did not have.
    fn from(v1: EngineConfigV1) -> EngineConfig {
        EngineConfig {
            payment_window_ns: v1.payment_window_ns,
            waitlist_len_max: v1.waitlist_len_max,
            idempotency_window: v1.idempotency_window,
            clients_max: v1.clients_max,
            orders_max: v1.orders_max,
            skus_max: v1.skus_max,
            ..EngineConfig::default()
        }
    }
}
