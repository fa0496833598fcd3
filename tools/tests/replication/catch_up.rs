use std::time::Duration;

use engine::wire::{Operation, Reply};
use engine::{Answer, ClientId, Code, Query, SkuId};
use loadgen::client::Client;
use tools::serve_process::log_field;

use crate::harness::*;

fn stock(node: &tools::serve_process::ServeProcess, sku: u64) -> engine::outcome::StockView {
    let mut c = Client::connect(node.addr, ClientId(900)).unwrap();
    match c
        .call(Operation::Query(Query::Stock { sku: SkuId(sku) }))
        .unwrap()
        .reply
    {
        Reply::Answer(Answer::Stock(s)) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_standby_catches_up_from_an_empty_directory_and_from_behind() {
    let dir = temp_dir("catch-up");
    // A 1 MiB backlog: most of what the standby needs comes from the journal files.
    let sets = pair_sets("durable", "degrade", &["replication.backlog_mib=1"]);
    let a = primary(&dir.join("a"), &sets);
    add_sku(&a, 1, 77);
    place_orders(&a, 2, 77, 20_000);

    let mut b = standby(&dir.join("b"), &a, &sets);
    assert!(b.logged("bootstrapped"), "{:#?}", b.logs());
    wait_streaming(&a);
    assert_converged(&a, &b);
    // The standby answers queries with the primary's state, and refuses writes.
    assert_eq!(stock(&b, 77).sold + stock(&b, 77).reserved, 20_000);
    assert_eq!(write_code(b.addr, 3, 0, 77), Code::NotPrimary);

    b.terminate(Duration::from_secs(30)).unwrap();
    place_orders(&a, 4, 77, 20_000);
    let b = standby(&dir.join("b"), &a, &sets);
    wait_for(Duration::from_secs(10), "following", || {
        b.logged("following")
    });
    let following = b.log_line("following").unwrap();
    let from: u64 = log_field(&following, "from_seq").unwrap().parse().unwrap();
    assert!(from > 20_000, "resumed at {from}: {following}");
    wait_streaming(&a);
    assert_converged(&a, &b);
    assert_eq!(stock(&b, 77).reserved, 40_000);
}
