//! A `surge serve` child process on ephemeral ports: start it, learn its addresses from its
//! `serving` log line, signal it, wait for it. `surge demo` runs its primary this way (so a
//! restart is a real new process recovering from the journal), and the tests do too.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// How long a server may take to recover and bind.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ServeProcess {
    child: Child,
    pub addr: SocketAddr,
    pub http: SocketAddr,
    /// Where a standby connects, if replication is on.
    pub replication: Option<SocketAddr>,
    /// Where feed consumers subscribe, if the feed is on.
    pub feed: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
}

/// `key=value` from a logfmt line; a quoted value (the log quotes values with spaces) is
/// unquoted.
pub fn log_field(line: &str, key: &str) -> Option<String> {
    let at = line
        .match_indices(&format!("{key}="))
        .find(|(i, _)| *i == 0 || line.as_bytes()[i - 1] == b' ')?
        .0;
    let value = &line[at + key.len() + 1..];
    let Some(quoted) = value.strip_prefix('"') else {
        return Some(value.split(' ').next().unwrap_or_default().to_string());
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// Engine limits for the short-lived servers the demo, the drill and the tests start: a few
/// tens of megabytes instead of the production defaults' gigabytes (several such servers
/// run at once on a small machine). Given first, so a caller's `--set` overrides them.
pub const SMALL_ENGINE: &[&str] = &[
    "engine.orders_max=131072",
    "engine.orders_retired_max=131072",
    "engine.holdings_max=131072",
    "engine.clients_max=64",
];

impl ServeProcess {
    /// Run `exe serve` on `dir` with `--set` overrides, on loopback ephemeral ports, and wait
    /// until it serves.
    pub fn start(exe: &Path, dir: &Path, sets: &[&str]) -> anyhow::Result<ServeProcess> {
        let mut command = Command::new(exe);
        command.arg("serve");
        ServeProcess::launch(command, dir, "127.0.0.1:0", "127.0.0.1:0", sets)
    }

    /// Run `exe standby --primary <primary>` (a replication address) likewise.
    pub fn start_standby(
        exe: &Path,
        dir: &Path,
        primary: SocketAddr,
        sets: &[&str],
    ) -> anyhow::Result<ServeProcess> {
        let mut command = Command::new(exe);
        command.args(["standby", "--primary", &primary.to_string()]);
        ServeProcess::launch(command, dir, "127.0.0.1:0", "127.0.0.1:0", sets)
    }

    /// Run `command` (a program and its subcommand, e.g. `ip netns exec ns surge serve`) on
    /// `dir` with the given client and HTTP addresses and `--set` overrides, and wait until
    /// it serves.
    pub fn launch(
        mut command: Command,
        dir: &Path,
        listen: &str,
        http: &str,
        sets: &[&str],
    ) -> anyhow::Result<ServeProcess> {
        command
            .args(["--listen", listen, "--http", http])
            .arg("--data-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for set in SMALL_ENGINE.iter().chain(sets) {
            command.args(["--set", set]);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {:?}", command.get_program()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    // Kept before it is announced: a caller told the node serves finds the
                    // `serving` line in `logs()`.
                    logs.lock().expect("log lock").push(line.clone());
                    if line.contains("event=serving") {
                        let _ = tx.send(line);
                    }
                }
            });
        }
        let Ok(line) = rx.recv_timeout(START_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the server did not start:\n{}",
                logs.lock().expect("log lock").join("\n")
            );
        };
        let field = |key: &str| -> anyhow::Result<SocketAddr> {
            log_field(&line, key)
                .ok_or_else(|| anyhow!("no {key}= in {line:?}"))?
                .parse()
                .with_context(|| format!("{key}= in {line:?}"))
        };
        Ok(ServeProcess {
            addr: field("listen")?,
            http: field("http")?,
            replication: field("replication").ok(),
            feed: field("feed").ok(),
            child,
            logs,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    /// Whether any log line is for `event`.
    pub fn logged(&self, event: &str) -> bool {
        self.log_line(event).is_some()
    }

    /// The first log line for `event`.
    pub fn log_line(&self, event: &str) -> Option<String> {
        let tag = format!("event={event}");
        self.logs()
            .into_iter()
            .find(|l| l.split_whitespace().any(|kv| kv == tag))
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Wait for the process to exit, up to `within`.
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("the server did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (drain and stop), then wait; an error unless it exits 0.
    pub fn terminate(&mut self, within: Duration) -> anyhow::Result<()> {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(within)?;
        if !status.success() {
            bail!(
                "the server exited with {status}:\n{}",
                self.logs().join("\n")
            );
        }
        Ok(())
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_fields_quoted_or_not() {
        let line =
            r#"ts=1 level=info event=serving listen=127.0.0.1:7 io="io_uring (sq 64)" x="a\"b""#;
        assert_eq!(
            super::log_field(line, "listen").as_deref(),
            Some("127.0.0.1:7")
        );
        assert_eq!(
            super::log_field(line, "io").as_deref(),
            Some("io_uring (sq 64)")
        );
        assert_eq!(super::log_field(line, "x").as_deref(), Some("a\"b"));
        assert_eq!(super::log_field(line, "vent"), None);
    }
}
