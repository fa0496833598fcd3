//! The journal tools against a real data directory made by `surge flash-sale --data-dir`:
//! replay (from the snapshot and in full) rebuilds the very state the sale ended with; the
//! export has the documented fields; `journal verify` passes a clean journal and refuses a
//! damaged one with its code and place, and so does replay.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn surge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_surge"))
        .args(args)
        .output()
        .expect("run surge")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn hash_in(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("rolling hash"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| panic!("no rolling hash in:\n{text}"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("surge-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn sale(dir: &Path) -> String {
    let output = surge(&[
        "flash-sale",
        "--buyers",
        "3000",
        "--stock",
        "300",
        "--commit-every",
        "64",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    hash_in(&stdout(&output))
}

#[test]
fn replay_rebuilds_the_state_the_sale_ended_with() {
    let dir = temp_dir("replay");
    let sale_hash = sale(&dir);
    let data_dir = dir.to_str().unwrap();
    let export = dir.join("state.jsonl");
    let output = surge(&[
        "replay",
        "--data-dir",
        data_dir,
        "--export",
        export.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(text.contains("from snapshot  at sequence"), "{text}");
    assert_eq!(hash_in(&text), sale_hash, "snapshot + journal");

    // Without the snapshot: a full replay of the journal reaches the same hash.
    std::fs::remove_dir_all(dir.join("snapshots")).unwrap();
    let text = stdout(&surge(&["replay", "--data-dir", data_dir]));
    assert!(text.contains("none (full replay)"), "{text}");
    assert_eq!(hash_in(&text), sale_hash, "full replay");

    let exported = std::fs::read_to_string(&export).unwrap();
    let first: serde_json::Value = serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "sku");
    for key in ["sku", "stocked", "available", "reserved", "sold"] {
        assert!(first[key].is_u64(), "sku line lacks {key}");
    }
    let order: serde_json::Value = serde_json::from_str(exported.lines().nth(1).unwrap()).unwrap();
    assert_eq!(order["type"], "order");
    for key in ["order_id", "client_id", "request_id", "user", "total"] {
        assert!(order[key].is_u64(), "order line lacks {key}");
    }
    assert!(order["state"].is_string() && order["lines"][0]["sku"].is_u64());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn verify_passes_a_clean_journal_and_refuses_a_damaged_one() {
    let dir = temp_dir("verify");
    sale(&dir);
    let data_dir = dir.to_str().unwrap();
    let output = surge(&["journal", "verify", "--data-dir", data_dir]);
    assert!(output.status.success());
    assert!(stdout(&output).contains("is clean"));
    let stats = stdout(&surge(&["journal", "stats", "--data-dir", data_dir]));
    assert!(stats.contains("sequences 1..="), "{stats}");
    let dump = stdout(&surge(&[
        "journal",
        "dump",
        "--data-dir",
        data_dir,
        "--from",
        "3",
        "--limit",
        "2",
    ]));
    assert_eq!(dump.lines().count(), 2);
    assert!(dump.starts_with("seq=3 "), "{dump}");

    // Damage one byte of an early record.
    let segment = dir.join("journal").join(format!("{:020}.seg", 1));
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[4096 + 200] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();
    let output = surge(&["journal", "verify", "--data-dir", data_dir]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("JOURNAL_CORRUPT_RECORD (301)"), "{stderr}");
    assert!(
        stderr.contains("segment 00000000000000000001.seg, offset"),
        "{stderr}"
    );
    assert!(stderr.contains("standby"), "the remedy is named: {stderr}");
    let output = surge(&["replay", "--data-dir", data_dir]);
    assert_eq!(output.status.code(), Some(2), "replay must refuse too");
    std::fs::remove_dir_all(&dir).unwrap();
}
