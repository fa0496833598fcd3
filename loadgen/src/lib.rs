//! surge's load side: the Rust client for the protocol (`client`), seeded, reproducible
//! workloads (a flash sale on one hot SKU, a broad Zipf mix) and a simulation that drives an
//! in-process engine with them and records the run for replay. The open-loop load generator
//! comes next.

pub mod client;
pub mod rng;
pub mod simulation;
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
