//! Loading a corpus: find `*.yaml` files under a directory, parse each, and check names are unique.

use super::model::{Location, Scenario};
use super::parse::{ParseError, parse_scenario};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Every `.yaml`/`.yml` scenario file under `root` (or `root` itself if it is a file), sorted;
/// `load/` directories (load profiles) are left out.
pub fn find_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    if root.is_file() {
        return Ok(vec![root.to_owned()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                // `load/` holds load profiles, a different format (see crate::load::profile).
                if path.file_name().is_some_and(|n| n == "load") {
                    continue;
                }
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Parses every file; returns the scenarios, or every error of every file.
pub fn load_corpus(files: &[PathBuf]) -> Result<Vec<Scenario>, Vec<ParseError>> {
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(file) {
            Ok(text) => match parse_scenario(&text, file) {
                Ok(s) => scenarios.push(s),
                Err(e) => errors.extend(e),
            },
            Err(e) => errors.push(ParseError {
                file: file.clone(),
                loc: Location::default(),
                message: format!("cannot read: {e}"),
            }),
        }
    }
    let mut seen: HashMap<&str, &Path> = HashMap::new();
    for s in &scenarios {
        if let Some(first) = seen.insert(&s.name, &s.file) {
            errors.push(ParseError {
                file: s.file.clone(),
                loc: Location { line: 1, column: 1 },
                message: format!(
                    "scenario name {:?} is already used by {}",
                    s.name,
                    first.display()
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(scenarios)
    } else {
        Err(errors)
    }
}
