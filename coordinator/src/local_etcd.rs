//! A throwaway single-member etcd on loopback, for tests and drills: `etcd` from the PATH
//! (Debian's `etcd-server`), its data in a directory of the caller's, free ports picked by
//! the kernel, stopped (SIGKILL) on drop. `pause` and `resume` (SIGSTOP, SIGCONT) make it
//! unreachable without losing its state, as an outage would.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Etcd;

pub struct LocalEtcd {
    child: Child,
    pub endpoint: String,
}

/// Whether an `etcd` binary is on the PATH.
pub fn installed() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalEtcd {
    /// Start one in `dir` and wait until it answers (up to 20 s).
    pub fn start(dir: &Path) -> std::io::Result<LocalEtcd> {
        let (client, peer) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("etcd.log"))?;
        let child = Command::new("etcd")
            .args(["--name", "surge-test"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("surge-test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let etcd = LocalEtcd {
            child,
            endpoint: format!("127.0.0.1:{client}"),
        };
        let client = etcd.client();
        let started = Instant::now();
        while client.get("/surge-probe").is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                return Err(std::io::Error::other(format!(
                    "etcd did not answer on {} (log: {})",
                    etcd.endpoint,
                    dir.join("etcd.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(etcd)
    }

    pub fn client(&self) -> Etcd {
        Etcd::new(vec![self.endpoint.clone()], Duration::from_millis(500))
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Stop answering (SIGSTOP): as unreachable as a dead cluster, its leases frozen.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
