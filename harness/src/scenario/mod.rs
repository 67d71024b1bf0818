//! Scenarios: the model, the YAML parser with located errors, the printer, and value/template helpers.

pub mod code;
mod fault;
pub mod load;
pub mod model;
mod operate;
pub mod parse;
pub mod print;
pub mod template;
pub mod value;
pub(crate) mod yaml;

pub use model::{Location, Scenario, Step, StepKind};
pub use parse::{ParseError, parse_scenario};
