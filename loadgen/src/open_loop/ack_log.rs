//! `--ack-log`: one JSON line per accepted answer (and per waitlist hand-off pushed), so a
//! later check can prove that nothing the server acknowledged was lost. Connections append
//! whole lines in chunks under one lock; the file is synced when the run ends.

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::Context;
use std::path::Path;
use std::sync::Mutex;

pub struct AckLog {
    out: Mutex<Option<BufWriter<File>>>,
    failed: Mutex<Option<std::io::Error>>,
    /// Log the answers of one order in this many (by order id: all of a sampled order's
    /// answers, so its expected state is known); 1 logs every answer.
    every: u64,
}

impl AckLog {
    /// A log of the answers about one order in `every` (orders whose id is a multiple of
    /// it); answers about no order are left out unless `every` is 1.
    pub fn sampled(path: &Path, every: u64) -> std::io::Result<AckLog> {
        assert!(every >= 1);
        Ok(AckLog {
            out: Mutex::new(Some(BufWriter::with_capacity(1 << 20, File::create(path)?))),
            failed: Mutex::new(None),
            every,
        })
    }

    /// Whether an answer about `order` goes in the log.
    pub fn wants(&self, order: Option<u64>) -> bool {
        self.every == 1 || order.is_some_and(|o| o.is_multiple_of(self.every))
    }

    /// Append whole lines. A write error is kept and reported by `finish`. A sampled log goes
    /// straight to the file (its lines come seldom, in chunks at least a second apart), so a
    /// checker can read it while the run goes on.
    pub fn append(&self, lines: &[u8]) {
        let mut out = self.out.lock().expect("ack log lock");
        if let Some(w) = out.as_mut() {
            let written = w.write_all(lines);
            let written = match written {
                Ok(()) if self.every > 1 => w.flush(),
                other => other,
            };
            if let Err(e) = written {
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

/// One line of an ack log, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub client_id: u64,
    pub request_id: u64,
    /// The order the answer was about, if any (a waitlist join has none yet).
    pub order_id: Option<u64>,
    /// The request kind (`place_order`, `confirm_payment`, …) or `waitlist_order` for a
    /// hand-off pushed by the server.
    pub kind: String,
    pub seq: u64,
}

/// Read an ack log back, every line checked.
pub fn read(path: &Path) -> anyhow::Result<Vec<Ack>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let n = |k: &str| v[k].as_u64().with_context(|| format!("{k} in {line}"));
            let order_id = match &v["order_id"] {
                serde_json::Value::Null => None,
                o => Some(o.as_u64().with_context(|| format!("order_id in {line}"))?),
            };
            Ok(Ack {
                client_id: n("client_id")?,
                request_id: n("request_id")?,
                order_id,
                kind: v["kind"]
                    .as_str()
                    .with_context(|| format!("kind in {line}"))?
                    .to_string(),
                seq: n("seq")?,
            })
        })
        .collect()
}
