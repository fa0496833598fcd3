//! The folders of `server/src` are layers: a file may use its own folder and the folders
//! below it in `lib.rs`'s list, never one above (decisions never reach for the threads that
//! drive them; the pipeline never reaches for the HTTP port). This reads every file's
//! `crate::…` paths and checks.

use std::path::{Path, PathBuf};

/// Lowest first. `Clock` and the other root re-exports, and `error`, are at the bottom.
const LAYERS: &[&[&str]] = &[
    &["error", "telemetry", "Clock", "ManualClock", "SystemClock"],
    &["config"],
    &["group"],
    &["pipeline"],
    &["feed"],
    &["checkpoint"],
    &["drivers"],
    &["ops"],
    &[
        "start",
        "Server",
        "Start",
        "ServerConfig",
        "ServerError",
        "PromoteError",
    ],
];

fn rank(name: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&name))
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first-level names after `crate::` in `text`, with `use crate::{a, b}` groups opened.
fn crate_paths(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    names.push(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        names.push(name);
    }
    names
}

#[test]
fn no_folder_uses_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    for path in &all {
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let folder = first.trim_end_matches(".rs");
        if folder == "lib" {
            continue;
        }
        let own = rank(folder).unwrap_or_else(|| panic!("{folder} is in no layer of LAYERS"));
        let text = std::fs::read_to_string(path).unwrap();
        for used in crate_paths(&text) {
            let Some(theirs) = rank(&used) else {
                wrong.push(format!(
                    "{}: crate::{used} is in no layer",
                    relative.display()
                ));
                continue;
            };
            if theirs > own {
                wrong.push(format!(
                    "{} ({folder}) uses crate::{used}, a layer above it",
                    relative.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
#[test]
fn no_file_is_over_600_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let long: Vec<String> = all
        .iter()
        .filter_map(|path| {
            let lines = std::fs::read_to_string(path).unwrap().lines().count();
            (lines > 600).then(|| format!("{}: {lines}", path.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these: {long:#?}");
}
