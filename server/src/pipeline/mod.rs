//! The LMAX pipeline: the gateway thread (`gateway.rs`: intake of client frames, the
//! sequencer, the release of answers to connections), the ring's slots, the journal and
//! engine stages, and the release gate. `shared.rs` is what its threads share.

pub mod checkpoints;
pub mod connection;
pub mod connections;
pub mod cores;
pub mod engine_stage;
pub mod gate;
pub mod gateway;
pub mod intake;
pub mod journal_io;
pub mod journal_stage;
pub mod journaler;
pub mod layout;
pub mod net;
pub mod net_tls;
pub mod promote;
pub mod release;
pub mod sequencer;
pub mod shared;
pub mod slot;
pub mod stage;
