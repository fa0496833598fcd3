//! Start a real `surge serve` process on ephemeral ports, learn its addresses from its
//! `serving` log line, and talk to it; kill it on drop.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use engine::wire::{Operation, Reply, WireAnswer};
use engine::{ClientId, Command as Cmd, OrderLine, SkuId, SkuSpec, UserId};
use loadgen::client::Client;
use tools::serve_process::ServeProcess;

pub use crate::scratch::ScratchDir;

pub const SURGE: &str = env!("CARGO_BIN_EXE_surge");

/// A fresh, empty directory for one test, removed when it passes.
pub fn temp_dir(name: &str) -> ScratchDir {
    ScratchDir::new("serve", name)
}

/// A `tools::serve_process::ServeProcess` whose failures panic, as a test wants.
pub struct ServerProcess(ServeProcess);

impl std::ops::Deref for ServerProcess {
    type Target = ServeProcess;
    fn deref(&self) -> &ServeProcess {
        &self.0
    }
}

impl From<ServeProcess> for ServerProcess {
    fn from(process: ServeProcess) -> ServerProcess {
        ServerProcess(process)
    }
}

impl ServerProcess {
    /// Start on `dir` with `--set` overrides; wait until it serves.
    pub fn start(dir: &Path, sets: &[&str]) -> ServerProcess {
        ServerProcess(ServeProcess::start(Path::new(SURGE), dir, sets).unwrap())
    }

    pub fn client(&self, id: u64) -> Client {
        Client::connect(self.addr, ClientId(id)).expect("connect")
    }

    /// Wait for the process to exit (bounded).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match self.0.wait_exit(within) {
            Ok(status) => status,
            Err(e) => panic!("{e}: {:#?}", self.logs()),
        }
    }

    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(10));
    }

    /// `GET path` on the HTTP port: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }

    /// Resident memory of the server, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    }
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    tools::admin_client::get(&addr.to_string(), path).unwrap()
}

pub fn upsert(client: &mut Client, sku: u64, price: u64, stock: u64, per_user_limit: u32) {
    let answer = client
        .call(Operation::Command(Cmd::UpsertSku(SkuSpec {
            sku: SkuId(sku),
            price,
            stock,
            per_user_limit,
            sale_window: None,
        })))
        .unwrap();
    assert_eq!(answer.reply.code(), engine::Code::SkuUpserted, "{answer:?}");
}

pub fn place(user: u64, sku: u64, qty: u32, waitlist: bool) -> Operation {
    Operation::Command(Cmd::PlaceOrder {
        user: UserId(user),
        lines: vec![OrderLine {
            sku: SkuId(sku),
            qty,
        }],
        join_waitlist: waitlist,
    })
}

/// The order id of an ORDER_PLACED answer.
pub fn placed(answer: &WireAnswer) -> engine::OrderId {
    match answer.reply {
        Reply::Outcome(engine::Outcome::OrderPlaced { order, .. }) => order,
        ref other => panic!("expected ORDER_PLACED, got {other:?}"),
    }
}

/// Every acknowledged order `(request id, order id)` of `crash::CLIENT` is on `server`, held
/// or retired, made by the request it was acknowledged to.
pub fn assert_acknowledged_kept(server: &ServerProcess, acked: &[(u64, u64)]) {
    use engine::{Answer, OrderId, Query};
    let mut c = server.client(crate::crash::CLIENT + 1);
    for chunk in acked.chunks(1024) {
        for &(_, order) in chunk {
            let id = c.next_request_id();
            let query = Query::Order {
                order: OrderId(order),
            };
            c.send(id, &Operation::Query(query)).unwrap();
        }
        c.flush().unwrap();
        for &(request, order) in chunk {
            let made_by = match c.recv_answer().unwrap().reply {
                Reply::Answer(Answer::Order(o)) => o.request.0,
                Reply::Answer(Answer::RetiredOrder(r)) => r.request.0,
                other => panic!("order {order} lost: {other:?}"),
            };
            assert_eq!(made_by, request, "order {order}");
        }
    }
}

/// `surge replay --data-dir DIR --export OUT`, which must succeed: its report (stdout) and the
/// export's lines.
pub fn replay_export(dir: &Path, out: &Path) -> (String, String) {
    let run = std::process::Command::new(SURGE)
        .args(["replay", "--data-dir"])
        .arg(dir)
        .arg("--export")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report = String::from_utf8_lossy(&run.stdout).into_owned();
    (report, std::fs::read_to_string(out).unwrap())
}
