//! surge's load side: the Rust client for the protocol (`client`); seeded, reproducible
//! workloads, both for the in-process simulation (`workloads`, `simulation`) and as live
//! request streams (`traffic`); and the open-loop load generator behind `surge loadgen`
//! (`open_loop`), which drives surge or, for comparison, the `peers` (Redis, PostgreSQL), and
//! reports what it measured (`report`, `plot`).

pub mod client;
pub mod client_conn;
pub mod failover;
pub mod measured;
pub mod open_loop;
pub mod peers;
pub mod plot;
pub mod protocol;
pub mod report;
pub mod rng;
pub mod schedule;
pub mod simulation;
pub mod traffic;
pub mod windows;
pub mod workloads;
pub mod zipf;

pub use simulation::{Fate, Recording, Report, Scenario, Simulation};
pub use workloads::{Behaviour, FlashSale, Mixed};

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Engine, EngineConfig};

    fn run(seed: u64) -> Report {
        let sale = FlashSale {
            buyers: 800,
            stock: 100,
            ..FlashSale::default()
        };
        let mut engine = Engine::new(EngineConfig {
            payment_window_ns: 1_000_000_000,
            ..EngineConfig::default()
        });
        let (report, _) = Simulation::new(&sale, &mut engine, seed).run();
        engine.check_invariants().unwrap();
        report
    }

    #[test]
    fn a_flash_sale_exercises_every_path_and_is_reproducible() {
        let report = run(42);
        assert!(report.orders_placed > 0 && report.paid > 0);
        assert!(report.waitlist_joined > 0 && report.waitlist_served > 0);
        assert!(report.expired > 0 && report.cancelled > 0 && report.payment_failed > 0);
        assert!(report.rejected.contains_key(&engine::Code::OutOfStock));
        assert_eq!(run(42).hash, report.hash);
        assert_ne!(run(43).hash, report.hash);
    }

    #[test]
    fn replaying_a_recording_gives_the_same_hash() {
        let mixed = Mixed::new(500, 2_000);
        let mut engine = Engine::new(EngineConfig::default());
        let (report, recording) = Simulation::new(&mixed, &mut engine, 9).record().run();
        let recording = recording.unwrap();
        let mut replayed = Engine::new(EngineConfig::default());
        let mut out = engine::Output::default();
        for (now, request) in recording.setup.iter().chain(&recording.stream) {
            replayed.apply(*now, request, &mut out);
        }
        assert_eq!(replayed.hash(), report.hash);
        assert!(report.paid > 0 && report.expired > 0);
    }
}
