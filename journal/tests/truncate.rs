//! Cutting a journal after a sequence (failback): what is left reads back whole, and the
//! writer carries on from the cut, with records unlike the ones removed.

mod common;

use std::sync::Arc;

use common::{commit_batch, open_writer, read_all};
use journal::{truncate_after, FileStorage, IoMode, Storage};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("surge-truncate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn cut_across_segments_then_continue() {
    let dir = temp_dir("segments");
    let storage: Arc<dyn Storage> = Arc::new(FileStorage::open(&dir, IoMode::Pwritev2).unwrap());
    let mut writer = open_writer(storage.clone());
    for _ in 0..30 {
        commit_batch(&mut writer, 100).unwrap(); // 3,000 records over many 64 KiB segments
    }
    drop(writer);
    let segments_before = journal::scan::segment_names(storage.as_ref())
        .unwrap()
        .len();
    assert!(segments_before > 3);

    assert_eq!(truncate_after(storage.as_ref(), 1234).unwrap(), 3000 - 1234);
    assert_eq!(
        read_all(storage.as_ref()).unwrap(),
        (1..=1234).collect::<Vec<_>>()
    );
    assert!(
        journal::scan::segment_names(storage.as_ref())
            .unwrap()
            .len()
            < segments_before
    );

    // The writer continues at 1235; a rescan sees one unbroken journal.
    let mut writer = open_writer(storage.clone());
    assert_eq!(writer.next_seq(), 1235);
    commit_batch(&mut writer, 500).unwrap();
    drop(writer);
    assert_eq!(
        read_all(storage.as_ref()).unwrap(),
        (1..=1734).collect::<Vec<_>>()
    );

    // Nothing after the end: nothing cut.
    assert_eq!(truncate_after(storage.as_ref(), 1734).unwrap(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
