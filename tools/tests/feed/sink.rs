//! `surge sink postgres` against a real PostgreSQL: killed at random points while a sale
//! runs, PostgreSQL crashed and surge restarted under it, it still applies every event
//! exactly once, and the history it keeps matches `surge replay --export` order for order.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{self, primary, temp_dir};
use crate::local_postgres::{free_port, installed_or_required, LocalPostgres};
use crate::*;

fn sink(feed: std::net::SocketAddr, dsn: &str, until_caught_up: bool) -> Child {
    let mut c = Command::new(harness::exe());
    c.args([
        "sink",
        "postgres",
        "--server",
        &feed.to_string(),
        "--dsn",
        dsn,
    ])
    .args(["--batch-ms", "50"])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if until_caught_up {
        c.arg("--until-caught-up");
    }
    c.spawn().unwrap()
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_sink_survives_crashes_of_itself_postgres_and_surge_and_matches_the_export() {
    if !installed_or_required() {
        return;
    }
    let dir = temp_dir("feed-sink");
    let mut pg = LocalPostgres::start(&dir);
    // A fixed feed port, so the sink finds surge again after its restart.
    let port = free_port();
    let listen = format!("feed.listen=\"127.0.0.1:{port}\"");
    let sets = feed_sets(&[&listen]);
    let data = dir.join("surge");
    let mut node = primary(&data, &sets);
    let feed = feed_addr(&node);

    // Killed at a pseudo-random point of each stretch of the sale.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut pause = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Duration::from_millis(200 + rng % 800)
    };
    for round in 0..3u32 {
        let running = sink(feed, &pg.dsn(), false);
        std::thread::scope(|s| {
            s.spawn(|| load(&node, 6_000, 2, 10 + round));
            std::thread::sleep(pause());
            kill(running);
            if round == 1 {
                pg.kill();
                pg.restart();
            }
        });
        let running = sink(feed, &pg.dsn(), false);
        std::thread::sleep(pause());
        kill(running);
        if round == 0 {
            // surge crashes and comes back on the same ports; the sink keeps trying meanwhile.
            let running = sink(feed, &pg.dsn(), false);
            node.signal(libc::SIGKILL);
            node.wait_exit(Duration::from_secs(10)).unwrap();
            node = primary(&data, &sets);
            std::thread::sleep(pause());
            kill(running);
        }
    }

    // Every order closed and retired: nothing more will happen to any of them.
    wait_settled(&node);
    let (all, head) = read_all(feed_addr(&node), 0);
    let out = sink(feed, &pg.dsn(), true).wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");

    let mut db = pg.client();
    let row = db
        .query_one("SELECT through_seq, events FROM surge_sink_position", &[])
        .unwrap();
    let (through, events): (i64, i64) = (row.get(0), row.get(1));
    assert!(through as u64 >= head);
    assert_eq!(
        events as usize,
        all.len(),
        "events applied across all the crashes, against the feed's count: none twice, none skipped"
    );

    node.terminate(Duration::from_secs(30)).unwrap();
    let exported = exported_states(&data);
    let rows = db
        .query("SELECT order_id, state, retired FROM surge_orders", &[])
        .unwrap();
    assert_eq!(
        rows.len(),
        exported.len(),
        "orders in PostgreSQL and in the export"
    );
    for row in rows {
        let (id, state, retired): (i64, String, bool) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(exported.get(&(id as u64)), Some(&state), "order {id}");
        assert!(retired, "order {id} settled, so retired");
    }
    let lines: i64 = db
        .query_one("SELECT count(*) FROM surge_order_lines", &[])
        .unwrap()
        .get(0);
    assert!(
        lines as usize >= exported.len(),
        "every order has its lines"
    );
}
