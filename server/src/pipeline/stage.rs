//! What the ring's consumer stages (journal, engine) share: the result of one `step` (so a
//! driver can run them by hand, in tests or a simulator, instead of on their threads), how
//! often a waiting stage looks at the stop flag, and the pair assertion on the one sequence
//! the sequencer stamps into each slot.

use std::time::Duration;

use crate::telemetry::log::{self, Level};

/// A stage looks at the stop flag at least this often.
pub const STAGE_POLL: Duration = Duration::from_millis(50);

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing was published (within the wait).
    Idle,
    /// Released this many ring sequences (records and queries).
    Released(usize),
    /// The journal failed: the stage is done.
    Failed,
}

/// The pair assertion on the one sequence: the sequencer stamped `stamped` in the slot, the
/// stage arrived at `seen`. A disagreement means the pipeline can no longer vouch for what
/// it journals or answers: stop at once, loudly, in release builds too.
pub fn check_sequence(stage: &str, stamped: u64, seen: u64) {
    if stamped != seen {
        log::line(
            Level::Error,
            "sequence_mismatch",
            Some(log::engine_code(engine::Code::SequenceMismatch)),
            &[("stage", &stage), ("stamped", &stamped), ("seen", &seen)],
        );
        panic!("{stage} stage: the slot says sequence {stamped}, the stage is at {seen}");
    }
}

#[cfg(test)]
mod tests {
    use super::check_sequence;

    #[test]
    fn agreeing_sequences_pass() {
        check_sequence("journal", 7, 7);
    }

    #[test]
    #[should_panic(expected = "the slot says sequence 7, the stage is at 8")]
    fn a_disagreement_stops_loudly() {
        check_sequence("engine", 7, 8);
    }
}
