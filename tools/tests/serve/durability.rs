//! No answer leaves before its sequence is durable. The server runs in-process on a storage
//! that can hold every sync (a disk that is slow right now) or fail it (a disk that died).
//! Commits are pipelined (two buffered commits in flight), so a held sync also has the next
//! commit written behind it.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use engine::ClientId;
use journal::storage::FileBytes;
use journal::{FileStorage, IoMode, Storage};
use loadgen::client::{Client, ClientError};
use server::Server;
use server::ServerConfig;

use super::harness::*;

/// A real journal directory whose group commits can be held back or made to fail.
struct GatedStorage {
    inner: FileStorage,
    held: Mutex<bool>,
    released: Condvar,
    fail: AtomicBool,
}

impl GatedStorage {
    fn new(dir: &Path) -> Arc<GatedStorage> {
        Arc::new(GatedStorage {
            inner: FileStorage::open(dir, IoMode::Pwritev2).unwrap(),
            held: Mutex::new(false),
            released: Condvar::new(),
            fail: AtomicBool::new(false),
        })
    }

    fn hold(&self, on: bool) {
        *self.held.lock().unwrap() = on;
        self.released.notify_all();
    }
}

impl Storage for GatedStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create_zeroed(&self, name: &str, len: u64) -> io::Result<()> {
        self.inner.create_zeroed(name, len)
    }
    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> io::Result<usize> {
        self.inner.write_at(name, offset, data)
    }
    /// Every sync (commits are written first and synced after, pipelined; `write_all_and_sync`
    /// comes here too) waits while held, and fails once the disk is gone.
    fn sync(&self, name: &str) -> io::Result<()> {
        let mut held = self.held.lock().unwrap();
        while *held {
            held = self.released.wait(held).unwrap();
        }
        drop(held);
        if self.fail.load(SeqCst) {
            return Err(io::Error::other("injected: the disk is gone"));
        }
        self.inner.sync(name)
    }
    fn read(&self, name: &str) -> io::Result<FileBytes> {
        self.inner.read(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
    fn describe(&self) -> String {
        "gated (test)".into()
    }
}

/// The server, its storage, and its directory (removed when the test passes).
fn start(name: &str) -> (Server, Arc<GatedStorage>, ScratchDir) {
    let dir = temp_dir(name);
    std::fs::create_dir_all(dir.join("journal")).unwrap();
    let storage = GatedStorage::new(&dir.join("journal"));
    let mut overrides: Vec<String> = vec![
        format!("data_dir={:?}", dir.display().to_string()),
        "listen=\"127.0.0.1:0\"".into(),
        "http=\"127.0.0.1:0\"".into(),
        "gateway.tick_ms=100000".into(),
        "journal.commits_in_flight=2".into(),
    ];
    overrides.extend(
        tools::serve_process::SMALL_ENGINE
            .iter()
            .map(|s| s.to_string()),
    );
    let config = ServerConfig::load(None, &overrides).unwrap();
    let server = Server::start(&config, Some(storage.clone())).unwrap();
    (server, storage, dir)
}

#[test]
fn no_answer_leaves_before_its_sequence_is_synced() {
    let (server, storage, _dir) = start("durability-held");
    let mut c = Client::connect(server.client_addr, ClientId(1)).unwrap();
    upsert(&mut c, 1, 100, 10, 0);
    let metrics = &server.shared.metrics;
    storage.hold(true);
    c.set_timeout(Duration::from_millis(700));
    let request = c.next_request_id();
    c.send(request, &place(1, 1, 1, false)).unwrap();
    let query = c.next_request_id();
    let stock = engine::wire::Operation::Query(engine::Query::Stock {
        sku: engine::SkuId(1),
    });
    c.send(query, &stock).unwrap();
    c.flush().unwrap();
    // The engine applies ahead of the journal (speculation), but nothing is answered —
    // not the order, and not the query behind it, which would reveal its effect.
    assert!(matches!(c.recv(), Err(ClientError::Timeout)));
    let applied = metrics.applied_seq.load(SeqCst);
    let durable = server.shared.release.durable();
    assert!(applied > durable, "applied {applied}, durable {durable}");
    storage.hold(false);
    c.set_timeout(Duration::from_secs(10));
    let answer = c.recv_answer().unwrap();
    assert_eq!(answer.request, request);
    assert!(answer.seq <= server.shared.release.durable());
    assert_eq!(answer.reply.code(), engine::Code::OrderPlaced);
    let query = c.recv_answer().unwrap();
    assert_eq!(query.reply.code(), engine::Code::StockInfo);
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn a_failed_sync_answers_nothing_and_stops_the_server() {
    let (server, storage, _dir) = start("durability-failed");
    let mut c = Client::connect(server.client_addr, ClientId(2)).unwrap();
    upsert(&mut c, 1, 100, 10, 0);
    storage.fail.store(true, SeqCst);
    let result = c.call(place(1, 1, 1, false));
    match result {
        Err(ClientError::Server { code, .. }) => {
            assert_eq!(code, engine::Code::ServerFailed.number())
        }
        Err(ClientError::Closed) => {}
        other => panic!("an answer for a command that is not durable: {other:?}"),
    }
    let stopped = server.wait();
    assert!(stopped.is_err(), "the server reports the failure");
}
