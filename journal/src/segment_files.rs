//! The names and life cycle of the files in a journal directory besides the live segments
//! (whose names, `<first sequence>.seg`, are part of the format: `format::segment_name`).
//! A segment is born as the prepared segment — zero-filled, or a recycled one renamed — and
//! becomes live when the writer gives it a header and its name; when a snapshot covers it,
//! retention may rename it `<first sequence>.recycle` for the writer to take again.
//! Recovery, the writer and retention all read these names; they live here so that none of
//! those three has to import another for them.

use crate::storage::Storage;

/// The file the writer leaves while preparing the next segment; never a segment (scan does
/// not read it, recovery removes one a crash left).
pub const PREPARED_SEGMENT_NAME: &str = "next-segment.prep";
/// What a recycled segment's name ends with: `<first sequence, 20 digits>.recycle`.
pub const RECYCLED_SUFFIX: &str = ".recycle";

/// The name a live segment takes when retention recycles it.
pub fn recycled_name(segment_name: &str) -> String {
    let stem = segment_name.strip_suffix(".seg").unwrap_or(segment_name);
    format!("{stem}{RECYCLED_SUFFIX}")
}

/// The recycled segments in the directory, oldest first.
pub fn recycled_names(storage: &dyn Storage) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = storage
        .list()?
        .into_iter()
        .filter(|n| n.ends_with(RECYCLED_SUFFIX))
        .collect();
    names.sort();
    Ok(names)
}

/// Make a recycled segment of `segment_len` bytes the next prepared segment, if there is
/// one (others of a different size are deleted). Its old header stays until the writer
/// writes the new one; scan never reads a file under this name.
pub fn take_recycled(storage: &dyn Storage, segment_len: u64) -> std::io::Result<bool> {
    for name in recycled_names(storage)? {
        if storage.read(&name)?.len() as u64 == segment_len {
            storage.rename(&name, PREPARED_SEGMENT_NAME)?;
            return Ok(true);
        }
        storage.remove(&name)?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_name_keeps_the_first_sequence() {
        assert_eq!(
            recycled_name("00000000000000000042.seg"),
            "00000000000000000042.recycle"
        );
        assert!(recycled_name("00000000000000000042.seg").ends_with(RECYCLED_SUFFIX));
    }
}
