//! The runner's event stream. Reporters consume it independently (console progress, result collection).

use crate::report::model::{CaseReport, RunReport};
use std::time::Duration;

/// Identifies a suite: one pattern on one backend.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SuiteKey {
    /// Pattern name.
    pub pattern: String,
    /// Backend name.
    pub backend: String,
}

/// Something that happened during a run, with the time since the run started.
#[derive(Clone, Debug)]
pub struct Event {
    /// Time since the run started.
    pub elapsed: Duration,
    /// What happened.
    pub kind: EventKind,
}

/// Kinds of events.
#[derive(Clone, Debug)]
pub enum EventKind {
    /// The plan is known: how many cases per suite.
    RunStarted {
        /// Suites and their case counts, in run order.
        suites: Vec<(SuiteKey, usize)>,
    },
    /// A case finished.
    CaseFinished {
        /// Its suite.
        suite: SuiteKey,
        /// Its result.
        case: Box<CaseReport>,
    },
    /// A long step of a running case reports how far it is.
    Progress {
        /// Its suite.
        suite: SuiteKey,
        /// The scenario.
        scenario: String,
        /// How far, e.g. `receive from c1: 4200/10000 after 5s`.
        message: String,
    },
    /// The run is over.
    RunFinished(Box<RunReport>),
}
