//! `prism-conform`: Prism's conformance framework. Scenarios (YAML) are parsed into a model, planned
//! into a pattern × backend matrix, run through a real proxy by the runner, and reported.
#![forbid(unsafe_code)]

pub mod cli;
pub mod events;
pub mod load;
pub mod ops;
pub mod provision;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod tokens;
