use std::path::Path;
use std::time::Duration;

use engine::Code;

use crate::harness::*;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A primary that missed its replacement: a standby of the new epoch is refused by it and
/// fences it (and does not follow it), a client that saw the new epoch fences it on hello,
/// and once fenced it refuses writes, across restarts too.
#[test]
fn a_stale_primary_is_fenced_and_its_stream_ignored() {
    let dir = temp_dir("epochs");
    let sets = pair_sets("durable", "degrade", &[]);
    let mut a = primary(&dir.join("a"), &sets);
    add_sku(&a, 1, 5);
    let b = standby(&dir.join("b"), &a, &sets);
    wait_streaming(&a);
    place_orders(&a, 2, 5, 100);
    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(10)).unwrap();
    drop(a);
    copy_dir(&dir.join("a"), &dir.join("a-copy"));
    assert_eq!(promote(&b)["epoch"], 2);

    // Back as a primary: its epoch file says 1, it does not know it was replaced.
    let sets_a = pair_sets("async", "degrade", &[]);
    let mut a = primary(&dir.join("a"), &sets_a);
    // A standby that followed the new primary (epoch 2) is pointed at the stale one.
    let c = standby(&dir.join("c"), &b, &sets);
    wait_streaming(&b);
    drop(c);
    let c = tools::serve_process::ServeProcess::start_standby(
        exe(),
        &dir.join("c"),
        a.replication.unwrap(),
        &refs(&sets),
    )
    .unwrap();
    wait_for(
        Duration::from_secs(10),
        "the stale primary to be fenced",
        || a.logged("fenced"),
    );
    wait_for(Duration::from_secs(10), "the standby to be refused", || {
        c.logged("primary_refused")
    });
    assert!(
        !c.logged("following"),
        "followed a stale primary: {:#?}",
        c.logs()
    );
    assert_eq!(write_code(a.addr, 11, 0, 5), Code::Fenced);
    assert_eq!(metric(&a, "surge_fenced"), 1);
    // It stays fenced after a restart.
    a.terminate(Duration::from_secs(30)).unwrap();
    let a = primary(&dir.join("a"), &sets_a);
    assert!(a.logged("starting_fenced"), "{:#?}", a.logs());
    assert_eq!(write_code(a.addr, 12, 0, 5), Code::Fenced);

    // Another copy of the stale primary, met by a client that was welcomed at epoch 2.
    let stale = primary(&dir.join("a-copy"), &sets_a);
    assert_eq!(health(&stale)["epoch"], 1);
    assert_eq!(write_code(stale.addr, 13, 2, 5), Code::Fenced);
    wait_for(Duration::from_secs(10), "fenced", || stale.logged("fenced"));
    // The new primary takes writes.
    assert_eq!(write_code(b.addr, 14, 2, 5), Code::OrderPlaced);
    // A client given both addresses, stale one first: FENCED, so it moves and resends.
    let mut client = loadgen::failover::FailoverClient::connect(
        vec![stale.addr.to_string(), b.addr.to_string()],
        engine::ClientId(15),
        Duration::from_secs(10),
    )
    .unwrap();
    let answer = client
        .call_with_id(engine::RequestId(1), &place(2, 5))
        .unwrap();
    assert_eq!(answer.reply.code(), Code::OrderPlaced, "{answer:?}");
    assert_eq!(client.nodes.epoch, 2);
    assert!(client.nodes.moves >= 1);
}
