//! `O_DIRECT` commits (`IoMode::Direct`): records of every commit size read back after
//! roll-overs and a reopen (whose first commit starts inside a block the appender never
//! wrote), and a filesystem that refuses `O_DIRECT` falls back to `pwritev2` and says so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{commit_batch, open_writer, read_all};
use journal::{FileStorage, IoMode, Storage};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("surge-direct-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Commits of 1 to 300 records, across several 64 KiB segments, then a reopen and more.
fn write_reopen_and_check(dir: &Path) -> String {
    let storage = Arc::new(FileStorage::open(dir, IoMode::Direct).unwrap());
    let described = storage.describe();
    let mut writer = open_writer(storage.clone());
    let mut durable = 0;
    for count in (1..=300).step_by(37).chain([1, 1, 2, 511]) {
        durable = commit_batch(&mut writer, count).unwrap();
    }
    drop(writer);
    assert_eq!(
        read_all(storage.as_ref()).unwrap(),
        (1..=durable).collect::<Vec<_>>()
    );

    let storage = Arc::new(FileStorage::open(dir, IoMode::Direct).unwrap());
    let mut writer = open_writer(storage.clone());
    assert_eq!(
        writer.next_seq(),
        durable + 1,
        "a reopened journal continues"
    );
    for count in [3, 1, 250, 7] {
        durable = commit_batch(&mut writer, count).unwrap();
    }
    drop(writer);
    assert_eq!(
        read_all(storage.as_ref()).unwrap(),
        (1..=durable).collect::<Vec<_>>()
    );
    assert!(
        journal::scan::segment_names(storage.as_ref())
            .unwrap()
            .len()
            > 2,
        "the test should roll over"
    );
    described
}

#[test]
fn direct_commits_read_back_across_roll_overs_and_a_reopen() {
    let dir = temp_dir("commits");
    let described = write_reopen_and_check(&dir);
    assert!(described.starts_with("O_DIRECT"), "{described}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Recovery zeroes up to four commits' worth past a torn tail in one write (16 MiB with
/// 64 MiB segments): more than a direct commit holds. It is written the buffered way instead,
/// and the next direct commit lands after it.
#[test]
fn a_write_larger_than_a_commit_goes_the_buffered_way() {
    let dir = temp_dir("large");
    let storage = FileStorage::open(&dir, IoMode::Direct).unwrap();
    storage.create_zeroed("big", 32 << 20).unwrap();
    let ones = vec![1u8; 16 << 20];
    storage.write_all_and_sync("big", 4096, &ones).unwrap();
    storage
        .write_all_and_sync("big", (16 << 20) + 4096, b"after")
        .unwrap();
    let bytes = storage.read("big").unwrap();
    assert!(bytes[4096..(16 << 20) + 4096].iter().all(|&b| b == 1));
    assert_eq!(&bytes[(16 << 20) + 4096..(16 << 20) + 4101], b"after");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// ramfs has no direct I/O at all (tmpfs has had it since Linux 6.6). Mounting it needs
/// root: without root the test says so and passes, unless `SURGE_REQUIRE_MOUNT=1`.
#[test]
fn a_filesystem_that_refuses_o_direct_falls_back_to_pwritev2_and_says_so() {
    let dir = temp_dir("ramfs");
    let mounted = Command::new("mount")
        .args(["-t", "ramfs", "ramfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var("SURGE_REQUIRE_MOUNT").as_deref() != Ok("1"),
            "mounting ramfs needs root (SURGE_REQUIRE_MOUNT=1 is set)"
        );
        eprintln!("skipped: mounting ramfs needs root");
        return;
    }
    let result = std::panic::catch_unwind(|| write_reopen_and_check(&dir));
    let unmounted = Command::new("umount").arg(&dir).status().unwrap();
    let described = result.unwrap();
    assert!(unmounted.success());
    assert!(
        described.contains("pwritev2 + fdatasync (O_DIRECT refused by the filesystem"),
        "{described}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
