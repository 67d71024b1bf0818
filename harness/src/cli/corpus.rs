//! Loading and selecting scenarios for the commands, with errors printed for the user.

use super::{EXIT_BAD_INPUT, Selection};
use crate::scenario::load::{find_files, load_corpus};
use crate::scenario::{ParseError, Scenario};
use globset::{Glob, GlobSetBuilder};
use std::path::PathBuf;

fn report_parse_errors(errors: &[ParseError]) -> u8 {
    for e in errors {
        eprintln!("{e}");
    }
    let files: std::collections::BTreeSet<_> = errors.iter().map(|e| &e.file).collect();
    eprintln!(
        "prism-conform: {} error(s) in {} file(s)",
        errors.len(),
        files.len()
    );
    EXIT_BAD_INPUT
}

/// Parses every scenario file under `paths`, printing located errors (exit code 2 on any).
pub fn load(paths: &[PathBuf]) -> Result<Vec<Scenario>, u8> {
    let mut files = Vec::new();
    for p in paths {
        match find_files(p) {
            Ok(f) => files.extend(f),
            Err(e) => {
                eprintln!("prism-conform: cannot read {}: {e}", p.display());
                return Err(EXIT_BAD_INPUT);
            }
        }
    }
    if files.is_empty() {
        eprintln!(
            "prism-conform: no scenario files (*.yaml) under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Err(EXIT_BAD_INPUT);
    }
    load_corpus(&files).map_err(|e| report_parse_errors(&e))
}

/// The scenarios a selection picks (exit code 2 when none).
pub fn select(sel: &Selection) -> Result<Vec<Scenario>, u8> {
    let known = crate::scenario::parse::patterns();
    if let Some(bad) = sel.patterns.iter().find(|p| !known.contains(&p.as_str())) {
        eprintln!(
            "prism-conform: --pattern {bad:?}: unknown pattern (expected one of: {})",
            known.join(", ")
        );
        return Err(EXIT_BAD_INPUT);
    }
    let all = load(std::slice::from_ref(&sel.scenarios))?;
    let mut builder = GlobSetBuilder::new();
    for g in &sel.scenario_globs {
        match Glob::new(g) {
            Ok(glob) => {
                builder.add(glob);
            }
            Err(e) => {
                eprintln!("prism-conform: --scenario {g:?}: {e}");
                return Err(EXIT_BAD_INPUT);
            }
        }
    }
    let globs = builder.build().map_err(|e| {
        eprintln!("prism-conform: {e}");
        EXIT_BAD_INPUT
    })?;
    let matches_glob = |s: &Scenario| {
        let stem = s
            .file
            .file_stem()
            .map(|x| x.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Relative to the corpus, so `faults/*` picks scenarios/faults/.
        let in_corpus = s.file.strip_prefix(&sel.scenarios).unwrap_or(&s.file);
        sel.scenario_globs.is_empty()
            || globs.is_match(&s.name)
            || globs.is_match(&stem)
            || globs.is_match(&s.file)
            || globs.is_match(in_corpus)
    };
    let picked: Vec<Scenario> = all
        .into_iter()
        .filter(|s| sel.patterns.is_empty() || sel.patterns.iter().any(|p| p == s.pattern.name()))
        .filter(|s| sel.tags.is_empty() || s.tags.iter().any(|t| sel.tags.contains(t)))
        .filter(matches_glob)
        .collect();
    if picked.is_empty() {
        eprintln!(
            "prism-conform: no scenario matches the selection (--pattern / --scenario / --tag)"
        );
        return Err(EXIT_BAD_INPUT);
    }
    Ok(picked)
}
