//! Bytes of engine memory per open order: place `--orders` single-line orders (default 10M),
//! none paid, and count what the allocator holds before and after. A counting global
//! allocator measures it; nothing is estimated.
//!
//! `cargo run --release -p bench --bin order-memory [-- ORDERS]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use engine::Engine;

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SKUS: u64 = 1_000;

fn main() {
    let orders: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ORDERS is a number"))
        .unwrap_or(10_000_000);
    let config = bench::config_for_open_orders(orders);
    let mut engine = Engine::new(config);
    bench::load_catalog(&mut engine, SKUS, orders);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    bench::place_open_orders(&mut engine, orders, SKUS);
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    let total = after - before;
    println!(
        "{orders} open orders over {SKUS} SKUs: {:.1} MiB held, {:.1} bytes per open order \
         (orders, deadlines, per-user holdings, one client's idempotency window of {} requests)",
        total as f64 / (1 << 20) as f64,
        total as f64 / orders as f64,
        config.idempotency_window
    );
    println!(
        "resident: {:.1} bytes per open order (whole process, VmRSS; capacity not yet touched \
         is not resident)",
        resident_bytes() as f64 / orders as f64
    );
    println!(
        "the order record itself: {} bytes",
        std::mem::size_of::<engine::order::Order>()
    );
}

/// The process's resident set, from /proc (0 where there is none).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
