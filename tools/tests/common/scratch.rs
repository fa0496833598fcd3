//! A test's scratch directory: fresh when made, removed when the test passes, kept (and
//! named on stderr) when it fails, so a failure can be looked at and a passing suite leaves
//! nothing behind in the temp directory.

use std::ops::Deref;
use std::path::{Path, PathBuf};

pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `$TMPDIR/surge-{prefix}-{name}-{pid}`, empty.
    pub fn new(prefix: &str, name: &str) -> ScratchDir {
        let dir =
            std::env::temp_dir().join(format!("surge-{prefix}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }
}

impl Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for a look: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
