//! How the busy stages map to threads. `Threads`: the gateway, the journal stage and the
//! engine stage each have a thread (a core each on a big box). `Shared`: one thread steps the
//! journal stage and then the engine stage over the same published requests, in turn, with
//! no hand-off between them — on a machine with fewer cores than busy stages, two threads
//! trading one core cost more than one thread doing both (the stepping the simulator does).
//! `Single`: the gateway's thread steps both as well, so a request is read, journaled,
//! applied and answered in one turn of one thread (the run-to-completion of a quiet node).
//! The journal's sync runs on its sync workers either way; the one call that blocks the
//! shared thread is the journal waiting for room when its commits in flight are full.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ServerConfig;
use crate::pipeline::cores::PIPELINE_THREADS;
use crate::pipeline::engine_stage::EngineStage;
use crate::pipeline::journal_stage::JournalStage;
use crate::pipeline::shared::Shared;
use crate::pipeline::stage::{Step, STAGE_POLL};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Threads,
    Shared,
    /// The gateway's thread steps the journal and engine stages too (`pipeline::gateway`).
    Single,
}

impl Layout {
    /// `cores.layout`. "auto" is `Threads` on every machine for now: on the 2-vCPU VM the
    /// shared thread lowered latency at 2,000/s (p50 0.68–0.87 ms against 1.05–1.08) but
    /// cost 5–17% at saturation, and at 120k/s neither was better (bench/README.md,
    /// *One engine per node*).
    pub fn for_config(config: &ServerConfig) -> Layout {
        match config.cores.layout.as_str() {
            "shared" => Layout::Shared,
            "single" => Layout::Single,
            _ => Layout::Threads,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Layout::Threads => "threads",
            Layout::Shared => "shared",
            Layout::Single => "single",
        }
    }

    /// Threads that busy-wait or block on the ring.
    pub fn busy_threads(self) -> usize {
        match self {
            Layout::Threads => PIPELINE_THREADS,
            Layout::Shared => PIPELINE_THREADS - 1,
            Layout::Single => PIPELINE_THREADS - 2,
        }
    }
}

/// The shared layout's thread: the journal stage, then the engine stage, until the server
/// stops. A failed journal leaves the engine stage running alone (as its own thread would).
pub fn run_shared(mut journal: JournalStage, mut engine: EngineStage, shared: Arc<Shared>) {
    loop {
        let journaled = journal.step(Some(Duration::ZERO));
        if journaled == Step::Failed {
            return engine.run();
        }
        let applied = engine.step(Some(Duration::ZERO));
        if journaled != Step::Idle || applied != Step::Idle {
            continue;
        }
        if shared.stop.load(SeqCst) {
            return;
        }
        engine.while_idle();
        // Both stages read the same published requests: waiting on one is waiting on both.
        match journal.step(Some(STAGE_POLL)) {
            Step::Failed => return engine.run(),
            Step::Released(_) | Step::Idle => {}
        }
    }
}
