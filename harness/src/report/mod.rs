//! Reporters. The runner emits [`crate::events::Event`]s; the console follows them live, and the file
//! reporters (JUnit XML, JSON, Markdown) render the final [`model::RunReport`].

pub mod console;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod model;
pub mod readme;

use model::RunReport;
use std::path::{Path, PathBuf};

/// File names the run writes into the report directory.
pub const JUNIT_FILE: &str = "junit.xml";
/// See [`JUNIT_FILE`].
pub const JSON_FILE: &str = "results.json";
/// See [`JUNIT_FILE`].
pub const SUMMARY_FILE: &str = "summary.md";

/// Writes `junit.xml`, `results.json` and `summary.md` into `dir` (created if missing).
pub fn write_all(report: &RunReport, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let files = [
        (JUNIT_FILE, junit::render(report)?),
        (JSON_FILE, json::render(report)),
        (SUMMARY_FILE, markdown::render(report)),
    ];
    let mut written = Vec::new();
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content)?;
        written.push(path);
    }
    Ok(written)
}
