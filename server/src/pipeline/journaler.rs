//! Requests as journal records: the `Journaler` encodes each request (rkyv payload, the
//! command's kind) into the journal writer's pending group commit, and a new journal starts
//! with the engine configuration as record 1. The journal stage drives it from the ring;
//! `surge flash-sale` and the benches drive it directly.

use std::sync::Arc;

use engine::codec::{self, kind};
use engine::{EngineConfig, Request, TimestampNs};
use journal::{JournalWriter, RecordOut, Storage};

use crate::error::{Result, ServerError};
use crate::telemetry::log;

pub struct Journaler {
    writer: JournalWriter,
    payload: Vec<u8>,
}

impl Journaler {
    /// Open the journal on any storage (tests slow it down or make it fail). An empty
    /// journal starts at `start_seq`: 1 (and the configuration record) for a new node, or
    /// the record after a snapshot it starts from (the snapshot holds the configuration).
    pub fn open_on(
        storage: Arc<dyn Storage>,
        config: &EngineConfig,
        segment_len: u64,
        start_seq: u64,
    ) -> Result<(Journaler, String)> {
        let described = storage.describe();
        let recovered = journal::recover(storage.as_ref())
            .map_err(|e| ServerError::journal("recovering the journal", e))?;
        if let Some(notice) = recovered.cut_notice() {
            log::line(
                log::Level::Warn,
                "journal_tail_cut",
                Some(log::journal_code(journal::ErrorCode::TailTruncated)),
                &[("detail", &notice)],
            );
        }
        let opened = |e| ServerError::journal("opening the journal writer", e);
        let mut writer =
            JournalWriter::open(storage, &recovered, segment_len, start_seq).map_err(opened)?;
        if writer.next_seq() == 1 {
            let payload = codec::encode_config(config);
            writer
                .append(RecordOut {
                    seq: 1,
                    timestamp_ns: 0,
                    kind: kind::ENGINE_CONFIG,
                    payload: &payload,
                })
                .and_then(|()| writer.commit().map(|_| ()))
                .map_err(|e| ServerError::journal("writing the configuration record", e))?;
        }
        let journaler = Journaler {
            writer,
            payload: Vec::new(),
        };
        Ok((journaler, described))
    }

    pub fn next_seq(&self) -> u64 {
        self.writer.next_seq()
    }

    /// See each commit's records before they are written (the replicator's backlog).
    pub fn set_tap(&mut self, tap: journal::writer::Tap) {
        self.writer.set_tap(tap);
    }

    /// Encode `request` as the next record; returns the sequence it was given.
    pub fn append(
        &mut self,
        now_ns: TimestampNs,
        request: &Request,
    ) -> std::result::Result<u64, journal::JournalError> {
        self.payload.clear();
        codec::encode_request(request, &mut self.payload);
        let seq = self.writer.next_seq();
        self.writer.append(RecordOut {
            seq,
            timestamp_ns: now_ns,
            kind: request.command.kind(),
            payload: &self.payload,
        })?;
        Ok(seq)
    }

    /// Group commit, waiting until it is durable; returns the durable sequence.
    pub fn commit(&mut self) -> std::result::Result<u64, journal::JournalError> {
        self.writer.commit()
    }

    /// How many commits may be written and not yet durable, and who hears when they are.
    pub fn set_pipeline(&mut self, commits_in_flight: usize, hook: Option<journal::DurableHook>) {
        self.writer.set_pipeline(commits_in_flight, hook);
    }

    /// How commits go to disk (the `io` of the `serving` log line).
    pub fn describe(&self) -> String {
        self.writer.describe()
    }

    /// Write what was appended as one commit and start its sync (see `JournalWriter::submit`).
    pub fn submit(&mut self) -> std::result::Result<u64, journal::JournalError> {
        self.writer.submit()
    }

    /// Wait until another commit can be submitted at once.
    pub fn wait_for_room(&mut self) -> std::result::Result<(), journal::JournalError> {
        self.writer.wait_for_room()
    }
}
