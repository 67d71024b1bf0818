//! The result model: what a run found, serialised as `results.json` (schema below is stable; fields
//! are only ever added). Every reporter renders from this model.

use serde::{Deserialize, Serialize};

/// Version of the `results.json` schema.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema: u32,
    /// prism-conform's version.
    pub tool_version: String,
    /// Start time, milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// Counts over every suite.
    pub totals: Totals,
    /// One suite per pattern × backend.
    pub suites: Vec<SuiteReport>,
    /// Backends that were asked for (or tried with `--all-backends`) but could not be provisioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<UnavailableReport>,
}

/// A backend that could not be provisioned.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnavailableReport {
    /// Backend name.
    pub backend: String,
    /// Why, per provisioner.
    pub reason: String,
}

/// Passed / failed / skipped counts.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    /// Scenarios that passed.
    pub passed: usize,
    /// Scenarios that failed.
    pub failed: usize,
    /// Scenarios skipped (with a reason).
    pub skipped: usize,
}

impl Totals {
    /// Scenarios counted.
    pub fn total(&self) -> usize {
        self.passed + self.failed + self.skipped
    }

    /// Adds one case.
    pub fn add(&mut self, status: CaseStatus) {
        match status {
            CaseStatus::Passed => self.passed += 1,
            CaseStatus::Failed => self.failed += 1,
            CaseStatus::Skipped => self.skipped += 1,
        }
    }
}

/// One pattern on one backend.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SuiteReport {
    /// Pattern, e.g. `keyvalue`.
    pub pattern: String,
    /// Backend name as selected (`memstore`, `sqlite`, or the target's label).
    pub backend: String,
    /// Backend kind as the proxy reports it.
    pub backend_kind: String,
    /// Capabilities the namespace declared.
    pub capabilities: Vec<String>,
    /// How the backend was provisioned (e.g. `process: redis-server … on redis://127.0.0.1:40123`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<String>,
    /// How long provisioning took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_ms: Option<u64>,
    /// Counts.
    pub totals: Totals,
    /// Wall time of the suite's cases, summed.
    pub duration_ms: u64,
    /// Cases in scenario-file order.
    pub cases: Vec<CaseReport>,
}

/// Outcome of one scenario on one backend.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CaseStatus {
    /// Passed.
    Passed,
    /// Failed.
    Failed,
    /// Skipped, with a reason.
    Skipped,
}

/// One scenario's result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CaseReport {
    /// Scenario name.
    pub scenario: String,
    /// Scenario file.
    pub file: String,
    /// Scenario tags.
    pub tags: Vec<String>,
    /// Outcome.
    pub status: CaseStatus,
    /// Wall time.
    pub duration_ms: u64,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureReport>,
}

/// Where and how a scenario failed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailureReport {
    /// Scenario file.
    pub file: String,
    /// Line of the failing step (0 when not tied to a step).
    pub line: u64,
    /// Column of the failing step.
    pub column: u64,
    /// The failing step, rendered (e.g. `get "conform/…/a"`).
    pub step: String,
    /// What went wrong.
    pub message: String,
    /// What the step expected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What came back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// The W3C trace id the case's calls carried (find them in a traced proxy's traces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl FailureReport {
    /// `file:line:column`.
    pub fn location(&self) -> String {
        format!("{}:{}:{}", self.file, self.line, self.column)
    }
}
