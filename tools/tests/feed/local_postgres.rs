//! A real PostgreSQL server for one test: `initdb` into the test's directory, `postgres` on
//! a free loopback port with trust authentication, killed with SIGKILL (a crash: it recovers
//! from its WAL at the next start) or stopped at the end. Debian's `postgresql-15` package;
//! a machine without it skips the tests unless `SURGE_REQUIRE_POSTGRES` is set (CI sets it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalPostgres {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

/// The server binaries, if installed.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Whether the tests can run here; panics where CI requires PostgreSQL and it is missing.
pub fn installed_or_required() -> bool {
    if bin_dir().is_some() {
        return true;
    }
    assert!(
        std::env::var_os("SURGE_REQUIRE_POSTGRES").is_none(),
        "SURGE_REQUIRE_POSTGRES is set but PostgreSQL is not installed (apt-get install postgresql-15)"
    );
    eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql-15)");
    false
}

/// Run as the `postgres` user when we are root: PostgreSQL refuses to run as root.
fn as_postgres(program: &Path) -> Command {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl LocalPostgres {
    pub fn start(dir: &Path) -> LocalPostgres {
        let bin = bin_dir().expect("PostgreSQL installed");
        let data = dir.join("pg");
        std::fs::create_dir_all(&data).unwrap();
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let out = as_postgres(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {out:?}");
        let port = free_port();
        let mut pg = LocalPostgres {
            bin,
            data,
            port,
            child: None,
        };
        pg.restart();
        pg
    }

    /// Start the server (again) and wait until it takes connections.
    pub fn restart(&mut self) {
        let child = as_postgres(&self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"])
            .stdout(Stdio::null())
            .stderr(self.log())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = postgres::Client::connect(&self.dsn(), postgres::NoTls) {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start ({e:?}):\n{}",
                std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL the postmaster and its backends: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The postmaster's PID is the lock file's first line.
            let pid_file = self.data.join("postmaster.pid");
            match std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
            {
                // SAFETY: kill(2) on the postmaster this test started.
                Some(pid) => unsafe {
                    libc::kill(pid, libc::SIGKILL);
                },
                None => {
                    let _ = child.kill();
                }
            }
            // runuser reaps the postmaster and exits (killing runuser first would leave the
            // postmaster a zombie whose PID still holds the lock file).
            let _ = child.wait();
            // Its backends exit once the postmaster is gone; wait for the port to free.
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                assert!(Instant::now() < deadline, "PostgreSQL did not die");
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Its log, beside the data directory (appended to across restarts).
    fn log(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.with_extension("log"))
            .map_or_else(|_| Stdio::null(), Stdio::from)
    }

    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.dsn(), postgres::NoTls).unwrap()
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
