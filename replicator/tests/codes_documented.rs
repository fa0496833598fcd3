//! docs/ERRORS.md lists every replication code with the number and name the code gives it
//! (as engine/tests/rules.rs checks the engine's codes and journal/src/error.rs the journal's).

use replicator::ReplicationCode;

#[test]
fn errors_md_lists_every_replication_code() {
    let doc = include_str!("../../docs/ERRORS.md");
    for code in ReplicationCode::ALL {
        let row = format!("| {} | `{}` |", code.number(), code.name());
        assert!(doc.contains(&row), "docs/ERRORS.md lacks {row}");
    }
}
