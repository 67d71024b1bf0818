//! Scenario values as a step sends them, shared by every family of steps: a template with the
//! run's variables substituted, and the bytes a value spec stands for; a bad one is the step's
//! failure.

use super::Failure;
use crate::scenario::model::ValueSpec;
use crate::scenario::template;
use crate::scenario::value::blob;
use std::collections::HashMap;

/// Expands a template, turning errors into a step failure.
pub fn expand(t: &str, vars: &HashMap<String, String>) -> Result<String, Failure> {
    template::expand(t, vars).map_err(|e| Failure::message(e.to_string()))
}

/// The bytes a value spec stands for.
pub fn resolve_value(v: &ValueSpec, vars: &HashMap<String, String>) -> Result<Vec<u8>, Failure> {
    match v {
        ValueSpec::Text(t) => Ok(expand(t, vars)?.into_bytes()),
        ValueSpec::Bytes(b) => Ok(b.clone()),
        ValueSpec::Blob { bytes, seed } => {
            let seed_text = expand(seed, vars)?;
            let seed: u64 = seed_text.parse().map_err(|_| {
                Failure::message(format!("blob seed {seed_text:?} is not a number"))
            })?;
            let len = usize::try_from(*bytes).map_err(|_| Failure::message("blob too large"))?;
            Ok(blob(len, seed))
        }
    }
}
