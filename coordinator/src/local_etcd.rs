//! A throwaway single-member etcd on loopback, for tests and drills: `etcd` from the PATH
//! (Debian's `etcd-server`), its data in a directory of the caller's, free ports picked by
//! the kernel, stopped (SIGKILL) on drop. `kill` and `restart` take it down and bring it
//! back on the same ports and data, as an outage would: a member that becomes the leader
//! again gives every lease a fresh TTL, so leases outlive the outage. (SIGSTOP is no outage:
//! the same leader resumes with its leases' expiry times long past, and revokes them.)

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::json;

use crate::{Credentials, Etcd, EtcdAccess, EtcdError};

pub struct LocalEtcd {
    child: Option<Child>,
    dir: PathBuf,
    ip: String,
    ports: (u16, u16),
    secured: Option<Secured>,
    /// What `client()` authenticates with, once auth is on.
    credentials: Option<Credentials>,
    pub endpoint: String,
}

/// An etcd that serves TLS only on its client port.
#[derive(Clone)]
pub struct Secured {
    /// PEM files: the CA etcd trusts for client certificates, its own certificate and key.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse clients without a certificate `ca` signed (`--client-cert-auth`).
    pub client_certs: bool,
    /// `--auth-token-ttl`: how long a token lives, in seconds.
    pub token_ttl_secs: u64,
    /// How `client()` reaches it.
    pub client_tls: Arc<rustls::ClientConfig>,
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

/// For tests: whether etcd is on the PATH. Without it, says so on stderr and returns false, or
/// panics where `SURGE_REQUIRE_ETCD=1` (CI), so that a missing install fails there.
pub fn installed_or_required() -> bool {
    if installed() {
        return true;
    }
    assert!(
        std::env::var("SURGE_REQUIRE_ETCD").as_deref() != Ok("1"),
        "etcd is not installed (apt-get install etcd-server) and SURGE_REQUIRE_ETCD=1"
    );
    eprintln!("skipped: no etcd on the PATH (apt-get install etcd-server)");
    false
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalEtcd {
    /// Start one in `dir` and wait until it answers (up to 20 s).
    pub fn start(dir: &Path) -> std::io::Result<LocalEtcd> {
        LocalEtcd::start_at(dir, "127.0.0.1")
    }

    /// The same, its client port on `ip` (an address of this host; network-namespace tests
    /// give it one their namespaces route to).
    pub fn start_at(dir: &Path, ip: &str) -> std::io::Result<LocalEtcd> {
        LocalEtcd::launch(dir, ip, None)
    }

    /// One on loopback that speaks TLS only on its client port.
    pub fn start_secured(dir: &Path, secured: Secured) -> std::io::Result<LocalEtcd> {
        LocalEtcd::launch(dir, "127.0.0.1", Some(secured))
    }

    fn launch(dir: &Path, ip: &str, secured: Option<Secured>) -> std::io::Result<LocalEtcd> {
        std::fs::create_dir_all(dir)?;
        let ports = (free_port()?, free_port()?);
        let mut etcd = LocalEtcd {
            child: None,
            dir: dir.to_path_buf(),
            ip: ip.to_string(),
            ports,
            secured,
            credentials: None,
            endpoint: format!("{ip}:{}", ports.0),
        };
        etcd.restart()?;
        Ok(etcd)
    }

    /// Start it (again, after `kill`) on the same ports and data; wait until it answers.
    pub fn restart(&mut self) -> std::io::Result<()> {
        let scheme = if self.secured.is_some() {
            "https"
        } else {
            "http"
        };
        let client_url = format!("{scheme}://{}:{}", self.ip, self.ports.0);
        let peer_url = format!("http://127.0.0.1:{}", self.ports.1);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))?;
        let mut command = Command::new("etcd");
        if let Some(s) = &self.secured {
            command
                .arg("--trusted-ca-file")
                .arg(&s.ca)
                .arg("--cert-file")
                .arg(&s.cert)
                .arg("--key-file")
                .arg(&s.key)
                .arg(format!("--client-cert-auth={}", s.client_certs))
                .arg(format!("--auth-token-ttl={}", s.token_ttl_secs));
        }
        self.child = Some(
            command
                .args(["--name", "surge-test"])
                .arg("--data-dir")
                .arg(self.dir.join("data"))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("surge-test={peer_url}")])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
        let client = self.client();
        let started = Instant::now();
        // Any answer will do: with auth on, the probe may be refused.
        while let Err(EtcdError::Unreachable(_)) = client.get("/surge-probe") {
            if started.elapsed() > Duration::from_secs(20) {
                return Err(std::io::Error::other(format!(
                    "etcd did not answer on {} (log: {})",
                    self.endpoint,
                    self.dir.join("etcd.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Take it down (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send `signal` to the etcd process (SIGSTOP and SIGCONT stall it: the same leader
    /// resumes, and revokes the leases whose expiry passed meanwhile).
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    pub fn client(&self) -> Etcd {
        Etcd::with_access(
            vec![self.endpoint.clone()],
            Duration::from_millis(500),
            EtcdAccess {
                tls: self.secured.as_ref().map(|s| s.client_tls.clone()),
                credentials: self.credentials.clone(),
            },
        )
    }

    /// Turn on etcd's authentication: `root` (every right; etcd needs it before auth can be
    /// enabled) and `user` (read and write under `prefix` only), both with `password`.
    /// `client()` authenticates as `user` from now on.
    pub fn enable_auth(
        &mut self,
        prefix: &str,
        user: &str,
        password: &str,
    ) -> Result<(), EtcdError> {
        let etcd = self.client();
        let role = format!("{user}-role");
        etcd.call(
            "/v3/auth/user/add",
            json!({ "name": "root", "password": password }),
        )?;
        etcd.call(
            "/v3/auth/user/grant",
            json!({ "user": "root", "role": "root" }),
        )?;
        etcd.call("/v3/auth/role/add", json!({ "name": role }))?;
        etcd.call(
            "/v3/auth/role/grant",
            json!({ "name": role, "perm": { "permType": "READWRITE", "key": B64.encode(prefix),
                     "range_end": B64.encode(crate::etcd::prefix_end(prefix)) } }),
        )?;
        etcd.call(
            "/v3/auth/user/add",
            json!({ "name": user, "password": password }),
        )?;
        etcd.call("/v3/auth/user/grant", json!({ "user": user, "role": role }))?;
        etcd.call("/v3/auth/enable", json!({}))?;
        self.credentials = Some(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        });
        Ok(())
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        self.kill();
    }
}
