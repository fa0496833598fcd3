//! `--ack-log`: one JSON line per accepted answer (and per waitlist hand-off pushed), so a
//! later check can prove that nothing the server acknowledged was lost. Connections append
//! whole lines in chunks under one lock; the file is synced when the run ends.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

pub struct AckLog {
    out: Mutex<Option<BufWriter<File>>>,
    failed: Mutex<Option<std::io::Error>>,
}

impl AckLog {
    pub fn create(path: &Path) -> std::io::Result<AckLog> {
        Ok(AckLog {
            out: Mutex::new(Some(BufWriter::with_capacity(1 << 20, File::create(path)?))),
            failed: Mutex::new(None),
        })
    }

    /// Append whole lines. A write error is kept and reported by `finish`.
    pub fn append(&self, lines: &[u8]) {
        let mut out = self.out.lock().expect("ack log lock");
        if let Some(w) = out.as_mut() {
            if let Err(e) = w.write_all(lines) {
                *self.failed.lock().expect("ack log lock") = Some(e);
                *out = None;
            }
        }
    }

    /// Flush and sync; the first error any append met, if one did.
    pub fn finish(&self) -> std::io::Result<()> {
        if let Some(e) = self.failed.lock().expect("ack log lock").take() {
            return Err(e);
        }
        if let Some(mut w) = self.out.lock().expect("ack log lock").take() {
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        Ok(())
    }
}
