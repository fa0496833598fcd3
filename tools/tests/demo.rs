//! `surge demo`, as a newcomer runs it: no setup, a real primary and standby, a failover
//! halfway through the sale, snapshots while serving, a restart from one, a verification of
//! every acknowledged answer on the node that ends up primary.
//! Shortened (a second of sale at a modest rate) so the test stays quick.

use std::process::Command;

#[test]
fn the_demo_sells_restarts_and_verifies() {
    let output = Command::new(env!("CARGO_BIN_EXE_surge"))
        .args([
            "demo",
            "--duration",
            "1",
            "--rate",
            "3000",
            "--connections",
            "2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for line in [
        "primary",
        "standby",
        "sale",
        "failover",
        "achieved",
        "latency",
        "sold out",
        "longevity",
        "restart",
        "verified",
    ] {
        assert!(
            stdout.contains(&format!("  {line}")),
            "no {line} line in:\n{stdout}"
        );
    }
    assert!(stdout.contains(" 0 problem(s)"), "{stdout}");
    let failover = stdout.lines().find(|l| l.contains("  failover")).unwrap();
    assert!(failover.contains("promoted to epoch 2"), "{failover}");
    assert!(!failover.contains("moved over 0 time"), "{failover}");
    // It checkpointed its serving engine, and the restart started from a checkpoint chain.
    let longevity = stdout.lines().find(|l| l.contains("  longevity")).unwrap();
    assert!(!longevity.contains(" 0 checkpoints"), "{longevity}");
    let restart = stdout.lines().find(|l| l.contains("  restart")).unwrap();
    assert!(!restart.contains("checkpoint 0 "), "{restart}");
    assert!(!restart.contains("at seq 0 "), "{restart}");
    // It cleans up after itself.
    let dir = stdout
        .split_whitespace()
        .find(|w| w.contains("surge-demo-"))
        .unwrap();
    assert!(!std::path::Path::new(dir).exists(), "{dir} left behind");
}
