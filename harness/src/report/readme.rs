//! Keeping the README's compatibility matrix generated: the block between the markers is replaced
//! with the matrix of a run's `results.json`.

use super::markdown::matrix;
use super::model::RunReport;

/// Line that opens the generated block.
pub const BEGIN: &str = "<!-- matrix:begin -->";
/// Line that closes the generated block.
pub const END: &str = "<!-- matrix:end -->";

/// The generated block: the matrix plus the run it came from.
pub fn block(report: &RunReport) -> String {
    let t = report.totals;
    format!(
        "{}\n_From a run of prism-conform {}: {} scenario runs, {} passed, {} failed, {} skipped._\n",
        matrix(report),
        report.tool_version,
        t.total(),
        t.passed,
        t.failed,
        t.skipped
    )
}

/// Replaces the text between [`BEGIN`] and [`END`] with `block`; `None` when the markers are missing.
pub fn splice(text: &str, block: &str) -> Option<String> {
    let start = text.find(BEGIN)? + BEGIN.len();
    let end = start + text[start..].find(END)?;
    Some(format!("{}\n{}{}", &text[..start], block, &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_block_and_is_idempotent() {
        let doc = format!("intro\n{BEGIN}\nold\n{END}\noutro\n");
        let once = splice(&doc, "new\n").unwrap();
        assert_eq!(once, format!("intro\n{BEGIN}\nnew\n{END}\noutro\n"));
        assert_eq!(splice(&once, "new\n").unwrap(), once);
        assert_eq!(splice("no markers", "x"), None);
    }
}
