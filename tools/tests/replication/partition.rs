//! A network partition between primary and standby: each runs in its own network namespace,
//! the two joined by a veth pair the test creates (and each joined to the test's namespace,
//! where the clients are). Cutting the pair's link mid-load: with `halt` the old primary
//! acknowledges nothing more, so promoting the standby loses nothing; with `degrade` it says
//! loudly that it carries on alone. Needs root and `ip`: without them it says so and is
//! skipped, unless `SURGE_REQUIRE_NETNS` is set (CI sets it), where it fails instead.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use engine::ClientId;
use loadgen::open_loop::{self, RunConfig, Spacing, System};
use tools::acked::Unanswered;
use tools::serve_process::ServeProcess;

use crate::harness::*;

struct Net {
    tag: String,
    subnet: u8,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    /// Namespaces `surge-<tag>-a` and `-b`; 10.<subnet>.1.0/24 test↔a, .2 test↔b, .3 a↔b.
    fn new(tag: &str, subnet: u8) -> Option<Net> {
        // SAFETY: geteuid takes no arguments and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let has_ip = Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !root || !has_ip {
            let why = "needs root and iproute2 to create network namespaces";
            assert!(
                std::env::var_os("SURGE_REQUIRE_NETNS").is_none(),
                "SURGE_REQUIRE_NETNS is set but this test cannot run: it {why}"
            );
            eprintln!("skipped: {why}");
            return None;
        }
        let net = Net {
            tag: format!("{tag}{}", std::process::id() % 10_000),
            subnet,
        };
        net.teardown();
        let (a, b) = (net.ns("a"), net.ns("b"));
        ip(&["netns", "add", &a]);
        ip(&["netns", "add", &b]);
        for (ns, i) in [(&a, 1), (&b, 2)] {
            let (outer, inner) = (net.link(&format!("{i}o")), net.link(&format!("{i}i")));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &inner, "netns", ns]);
            ip(&[
                "addr",
                "add",
                &format!("10.{subnet}.{i}.1/24"),
                "dev",
                &outer,
            ]);
            ip(&["link", "set", &outer, "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.{subnet}.{i}.2/24"),
                "dev",
                &inner,
            ]);
            ip(&["-n", ns, "link", "set", &inner, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let (la, lb) = (net.link("ab"), net.link("ba"));
        ip(&[
            "-n", &a, "link", "add", &la, "type", "veth", "peer", "name", &lb, "netns", &b,
        ]);
        ip(&[
            "-n",
            &a,
            "addr",
            "add",
            &format!("10.{subnet}.3.1/24"),
            "dev",
            &la,
        ]);
        ip(&[
            "-n",
            &b,
            "addr",
            "add",
            &format!("10.{subnet}.3.2/24"),
            "dev",
            &lb,
        ]);
        ip(&["-n", &a, "link", "set", &la, "up"]);
        ip(&["-n", &b, "link", "set", &lb, "up"]);
        Some(net)
    }

    fn ns(&self, side: &str) -> String {
        format!("surge-{}-{side}", self.tag)
    }

    fn link(&self, name: &str) -> String {
        format!("s{}{name}", self.tag) // at most 15 bytes
    }

    /// Cut the link between the primary's and the standby's namespaces.
    fn cut(&self) {
        ip(&["-n", &self.ns("a"), "link", "set", &self.link("ab"), "down"]);
    }

    fn heal(&self) {
        ip(&["-n", &self.ns("a"), "link", "set", &self.link("ab"), "up"]);
        ip(&["-n", &self.ns("b"), "link", "set", &self.link("ba"), "up"]);
    }

    /// An address for etcd in the test's namespace, 10.<subnet>.9.1 on `lo`, that both
    /// namespaces route to over their links to the test.
    fn etcd_ip(&self) -> String {
        format!("10.{}.9.1", self.subnet)
    }

    fn route_to_etcd(&self) {
        ip(&[
            "addr",
            "add",
            &format!("{}/32", self.etcd_ip()),
            "dev",
            "lo",
        ]);
        for (side, i) in [("a", 1), ("b", 2)] {
            self.etcd_route(side, &format!("10.{}.{i}.1", self.subnet));
        }
    }

    /// Namespace `side` reaches etcd through the test's end of its link at `via`.
    fn etcd_route(&self, side: &str, via: &str) {
        self.set_etcd_route(side, &["via", via]);
    }

    /// Cut namespace `side` off from etcd (the test's clients still reach it).
    fn cut_from_etcd(&self, side: &str) {
        self.set_etcd_route(side, &["blackhole"]);
    }

    fn set_etcd_route(&self, side: &str, how: &[&str]) {
        let target = format!("{}/32", self.etcd_ip());
        let ns = self.ns(side);
        let mut args = vec!["-n", &ns, "route", "replace"];
        if how == ["blackhole"] {
            args.extend(["blackhole", &target]);
        } else {
            args.push(&target);
            args.extend(how);
        }
        ip(&args);
    }

    fn teardown(&self) {
        let _ = Command::new("ip")
            .args([
                "addr",
                "del",
                &format!("{}/32", self.etcd_ip()),
                "dev",
                "lo",
            ])
            .output();
        for side in ["a", "b"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(side)])
                .output();
        }
        for i in ["1o", "2o"] {
            let _ = Command::new("ip")
                .args(["link", "del", &self.link(i)])
                .output();
        }
    }

    /// A node in namespace `side`, reachable from the test at 10.<subnet>.<i>.2.
    fn start(
        &self,
        side: &str,
        subcommand: &[String],
        dir: &std::path::Path,
        sets: &[String],
    ) -> (ServeProcess, SocketAddr, SocketAddr) {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns(side), SURGE])
            .args(subcommand);
        let node =
            ServeProcess::launch(command, dir, "0.0.0.0:0", "0.0.0.0:0", &refs(sets)).unwrap();
        let i = if side == "a" { 1 } else { 2 };
        let host = |port: u16| SocketAddr::from(([10, self.subnet, i, 2], port));
        let (client, http) = (host(node.addr.port()), host(node.http.port()));
        (node, client, http)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn get(http: SocketAddr, path: &str) -> String {
    tools::admin_client::get(&http.to_string(), path).unwrap().1
}

/// Answers that accepted a command or answered a query (codes 1–49), from /metrics.
fn accepted_answers(http: SocketAddr) -> u64 {
    get(http, "/metrics")
        .lines()
        .filter(|l| l.starts_with("surge_answers_total{code=\""))
        .filter_map(|l| {
            let code: u16 = l.split('"').nth(1)?.parse().ok()?;
            (code < 50)
                .then(|| l.rsplit(' ').next()?.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

fn pair(
    net: &Net,
    dir: &std::path::Path,
    on_loss: &str,
) -> (
    (ServeProcess, SocketAddr, SocketAddr),
    (ServeProcess, SocketAddr, SocketAddr),
) {
    let mut sets = pair_sets("durable", on_loss, &[]);
    sets[0] = format!("replication.listen=10.{}.3.1:0", net.subnet);
    sets.push("replication.allow_plaintext=true".into());
    let a = net.start("a", &["serve".into()], &dir.join("a"), &sets);
    let repl = format!("10.{}.3.1:{}", net.subnet, a.0.replication.unwrap().port());
    sets[0] = format!("replication.listen=10.{}.3.2:0", net.subnet);
    let b = net.start(
        "b",
        &["standby".into(), "--primary".into(), repl],
        &dir.join("b"),
        &sets,
    );
    wait_for(Duration::from_secs(30), "streaming", || {
        get(a.2, "/health").contains("\"standby\":\"streaming\"")
    });
    (a, b)
}

fn load(servers: Vec<String>, acks: &std::path::Path, base: u64) -> RunConfig {
    RunConfig {
        system: System::Surge,
        servers,
        workload: "flash-sale".into(),
        rate: Some(1_000.0),
        spacing: Spacing::Poisson,
        duration: Duration::from_secs(3),
        warmup: Duration::ZERO,
        connections: 2,
        pipeline: 128,
        seed: 3,
        ack_log: Some(acks.to_path_buf()),
        progress: false,
        id_base: Some(base),
        ..RunConfig::default()
    }
}

#[test]
fn partition_with_halt_the_old_primary_acknowledges_nothing_after_promotion() {
    let Some(net) = Net::new("h", 231) else {
        return;
    };
    let dir = temp_dir("partition-halt");
    let ((_a, a_client, a_http), (_b, b_client, b_http)) = pair(&net, &dir, "halt");
    let base = 7 << 30;
    let acks = dir.join("acks.jsonl");
    let config = load(
        vec![a_client.to_string(), b_client.to_string()],
        &acks,
        base,
    );
    let accepted_after_promotion = std::thread::scope(|scope| {
        let loader = scope.spawn(|| open_loop::run(&config));
        std::thread::sleep(Duration::from_secs(1));
        net.cut();
        wait_for(Duration::from_secs(10), "the primary to halt", || {
            metric_at(a_http, "surge_replication_halted") == 1
        });
        let (status, body) =
            tools::admin_client::post(&b_http.to_string(), "/admin/promote", TOKEN).unwrap();
        assert_eq!(status, 200, "{body}");
        let at_promotion = accepted_answers(a_http);
        let report = loader.join().unwrap().unwrap();
        assert!(report.measured.failovers > 0);
        accepted_answers(a_http) - at_promotion
    });
    assert_eq!(
        accepted_after_promotion, 0,
        "the old primary acknowledged writes after the promotion"
    );
    assert_acknowledged_on(b_client, base, &acks, Unanswered::LeftNothing);
}

/// Every answer in the ack log at `acks` (a load run with ids from `base`) is on the node at
/// `client`, once, with the stock adding up; how many there were.
fn assert_acknowledged_on(
    client: SocketAddr,
    base: u64,
    acks: &std::path::Path,
    unanswered: Unanswered,
) -> usize {
    let acked = open_loop::read_ack_log(acks).unwrap();
    let verdict = tools::acked::verify_with(
        client,
        ClientId(base + 9_997),
        engine::SkuId(base + 1),
        &acked,
        unanswered,
    )
    .unwrap();
    assert!(verdict.problems.is_empty(), "{:#?}", verdict.problems);
    acked.len()
}

#[test]
fn partition_with_degrade_the_primary_says_it_carries_on_alone() {
    let Some(net) = Net::new("d", 232) else {
        return;
    };
    let dir = temp_dir("partition-degrade");
    let ((a, a_client, a_http), _b) = pair(&net, &dir, "degrade");
    let acks = dir.join("acks.jsonl");
    let config = load(vec![a_client.to_string()], &acks, 8 << 30);
    std::thread::scope(|scope| {
        let loader = scope.spawn(|| open_loop::run(&config));
        std::thread::sleep(Duration::from_secs(1));
        net.cut();
        wait_for(Duration::from_secs(10), "the degraded log line", || {
            a.logged("replication_degraded")
        });
        assert_eq!(metric_at(a_http, "surge_replication_degraded"), 1);
        let before = accepted_answers(a_http);
        let report = loader.join().unwrap().unwrap();
        assert!(report.measured.lost_connections.is_empty());
        assert!(
            accepted_answers(a_http) > before,
            "degraded, it should still answer writes"
        );
    });
    let line = a.log_line("replication_degraded").unwrap();
    assert!(line.contains("code=408"), "{line}");
}

const LEASE_MS: u64 = 2000;
const MARGIN_MS: u64 = 500;

/// Failover through etcd across a partition: under load, the primary (a) is cut off from
/// etcd and from its standby (b), both on `on_standby_loss = "degrade"`, so that on its own
/// the primary would carry on alone. It acknowledges nothing after its lease deadline (at
/// most `lease − margin` after the cut). With `durable` the standby is recorded in sync and
/// takes over, only after that deadline; with `async` it is not, and nobody takes over. After
/// healing, the old primary finds its lease gone and exits 75; started again (as its service
/// manager would) it rejoins, and every acknowledged answer is on the final primary with the
/// stock adding up (no oversell).
fn etcd_partition(tag: &str, subnet: u8, ack: &str) {
    let Some(net) = Net::new(tag, subnet) else {
        return;
    };
    if !coordinator::local_etcd::installed_or_required() {
        return;
    }
    let dir = temp_dir(&format!("etcd-partition-{ack}"));
    net.route_to_etcd();
    let etcd =
        coordinator::local_etcd::LocalEtcd::start_at(&dir.join("etcd"), &net.etcd_ip()).unwrap();
    let sets = |name: &str, i: u8| {
        let mut sets = pair_sets(
            ack,
            "degrade",
            &[
                "replication.failover=\"etcd\"",
                &format!("replication.node=\"{name}\""),
                &format!("coordinator.endpoints=[\"{}\"]", etcd.endpoint),
                &format!("coordinator.lease_ms={LEASE_MS}"),
                &format!("coordinator.margin_ms={MARGIN_MS}"),
            ],
        );
        sets[0] = format!("replication.listen=10.{subnet}.3.{i}:0");
        sets.push("replication.allow_plaintext=true".into());
        sets
    };
    let (sets_a, sets_b) = (sets("a", 1), sets("b", 2));
    let serve = || vec!["serve".to_string()];
    let (mut a, a_client, a_http) = net.start("a", &serve(), &dir.join("a"), &sets_a);
    assert!(a.logged("elected"), "{:#?}", a.logs());
    let (b, b_client, b_http) = net.start("b", &serve(), &dir.join("b"), &sets_b);
    wait_for(Duration::from_secs(30), "streaming", || {
        get(a_http, "/health").contains("\"standby\":\"streaming\"")
    });
    let client = etcd.client();
    let sync = || {
        client
            .get("/surge/sync")
            .ok()
            .flatten()
            .and_then(|kv| coordinator::SyncRecord::decode(&kv.value))
            .map(|r| r.members.join(","))
    };
    if ack == "durable" {
        wait_for(Duration::from_secs(10), "b recorded in sync", || {
            sync().as_deref() == Some("b")
        });
    }

    let base = 9 << 30;
    let acks = dir.join("acks.jsonl");
    let mut config = load(
        vec![a_client.to_string(), b_client.to_string()],
        &acks,
        base,
    );
    config.duration = Duration::from_secs(6);
    let at_deadline = std::thread::scope(|scope| {
        let loader = scope.spawn(|| open_loop::run(&config));
        std::thread::sleep(Duration::from_secs(1));
        net.cut();
        net.cut_from_etcd("a");
        let cut = std::time::Instant::now();
        // a's last renewal went out before the cut: its deadline is at most lease − margin on.
        let deadline = cut + Duration::from_millis(LEASE_MS - MARGIN_MS + 100);
        std::thread::sleep(deadline - std::time::Instant::now());
        let at_deadline = accepted_answers(a_http);
        if ack == "durable" {
            wait_for(Duration::from_secs(10), "b to take over", || {
                get(b_http, "/health").contains("\"role\":\"primary\"")
            });
            let took = cut.elapsed();
            assert!(
                took >= Duration::from_millis(LEASE_MS - MARGIN_MS),
                "b took over {took:?} after the cut, before a's deadline"
            );
            eprintln!("durable: b took over {took:?} after the cut");
        } else {
            std::thread::sleep(Duration::from_millis(LEASE_MS + 1500));
            assert!(get(b_http, "/health").contains("\"role\":\"standby\""));
            assert!(b.logged("campaign_withheld"), "{:#?}", b.logs());
        }
        assert_eq!(
            accepted_answers(a_http),
            at_deadline,
            "the old primary acknowledged answers after its lease deadline"
        );
        net.heal();
        net.etcd_route("a", &format!("10.{subnet}.1.1"));
        if ack == "durable" {
            // Replaced: a learns it (its campaign is refused, or b fences it) and exits.
            let status = a.wait_exit(Duration::from_secs(10)).unwrap();
            assert_eq!(status.code(), Some(75), "{:#?}", a.logs());
        } else {
            // Only a holds every acknowledged write: back in reach of etcd, it finds its
            // lease gone, takes the key again and serves at a new epoch, by itself; b
            // follows it there.
            wait_for(Duration::from_secs(10), "a's new term", || {
                a.logged("new_term")
            });
            wait_for(Duration::from_secs(10), "b streaming from a again", || {
                get(a_http, "/health").contains("\"standby\":\"streaming\"")
            });
            assert!(!a.logged("leadership_lost"), "{:#?}", a.logs());
            assert!(!b.logged("leadership_lost"), "{:#?}", b.logs());
        }
        let _ = loader.join().unwrap();
        at_deadline
    });
    let primary_client = if ack == "durable" {
        drop(a);
        a = net.start("a", &serve(), &dir.join("a"), &sets_a).0;
        assert!(a.logged("following_leader"), "{:#?}", a.logs());
        b_client
    } else {
        a_client
    };
    // Answers held past a's deadline were never sent; what they did may still be there.
    let acknowledged =
        assert_acknowledged_on(primary_client, base, &acks, Unanswered::MayBeApplied);
    assert!(acknowledged > 500, "{acknowledged} acknowledged");
    eprintln!(
        "{ack}: {acknowledged} answers acknowledged, none lost; {at_deadline} acknowledged by a \
         before its deadline"
    );
    drop((a, b, etcd));
}

#[test]
fn etcd_partition_durable_the_standby_takes_over_only_after_the_old_primary_stopped() {
    etcd_partition("ed", 233, "durable");
}

#[test]
fn etcd_partition_async_the_old_primary_stops_at_its_deadline_and_nobody_lacking_writes_leads() {
    etcd_partition("ea", 234, "async");
}
