//! What the commands that read a data directory without a server share (`surge journal`,
//! `surge replay`, `surge snapshot`): the `--data-dir` argument, and how a corrupt journal
//! is reported to an operator (the code, the remedy, exit 2).

use std::path::PathBuf;

use journal::JournalError;

/// Exit status for a corrupt journal (distinct from 1, any other failure).
pub const EXIT_CORRUPT: i32 = 2;

#[derive(clap::Args)]
pub struct DirArgs {
    /// The data directory (holding journal/ and snapshots/).
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// Print a corruption error the way an operator needs it, and exit.
pub fn refuse(error: &JournalError) -> ! {
    eprintln!("error {error}");
    eprintln!("what to do: {}", error.remedy());
    std::process::exit(EXIT_CORRUPT);
}
