//! `results.json`: the full result model, pretty-printed.

use super::model::RunReport;

/// Renders the report as JSON.
pub fn render(report: &RunReport) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("the report model always serialises");
    s.push('\n');
    s
}
