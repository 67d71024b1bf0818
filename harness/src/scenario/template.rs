//! `${…}` substitution in scenario strings: variables and the `${repeat:TEXT:N}` function.

use std::collections::HashMap;

/// Why a template could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `${` without a closing `}`.
    #[error("unclosed '${{' in {0:?}")]
    Unclosed(String),
    /// A variable that is not defined here.
    #[error("undefined variable '${{{0}}}'")]
    Undefined(String),
    /// `${repeat:…}` with a bad count.
    #[error("bad repeat count in '${{{0}}}' (expected ${{repeat:TEXT:N}} with N ≤ 16777216)")]
    BadRepeat(String),
}

/// Largest `${repeat}` expansion, a guard against runaway scenario files.
const MAX_REPEAT: usize = 16 * 1024 * 1024;

/// Expands `template` using `vars`.
pub fn expand(template: &str, vars: &HashMap<String, String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| TemplateError::Unclosed(template.to_string()))?;
        let name = &after[..end];
        if let Some(spec) = name.strip_prefix("repeat:") {
            let (text, count) = spec
                .rsplit_once(':')
                .ok_or_else(|| TemplateError::BadRepeat(name.to_string()))?;
            let n: usize = count
                .parse()
                .ok()
                .filter(|n: &usize| n.saturating_mul(text.len()) <= MAX_REPEAT)
                .ok_or_else(|| TemplateError::BadRepeat(name.to_string()))?;
            out.push_str(&text.repeat(n));
        } else {
            let value = vars
                .get(name)
                .ok_or_else(|| TemplateError::Undefined(name.to_string()))?;
            out.push_str(value);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Variable names a template refers to (excluding functions).
pub fn variables(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| TemplateError::Unclosed(template.to_string()))?;
        let name = &after[..end];
        if let Some(spec) = name.strip_prefix("repeat:") {
            let ok = spec
                .rsplit_once(':')
                .and_then(|(t, n)| n.parse::<usize>().ok().map(|n| n.saturating_mul(t.len())))
                .is_some_and(|len| len <= MAX_REPEAT);
            if !ok {
                return Err(TemplateError::BadRepeat(name.to_string()));
            }
        } else {
            names.push(name.to_string());
        }
        rest = &after[end + 1..];
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_repeat() {
        let vars = HashMap::from([("prefix".to_string(), "p/".to_string())]);
        assert_eq!(
            expand("${prefix}k${repeat:ab:3}", &vars).unwrap(),
            "p/kababab"
        );
        assert_eq!(expand("plain", &vars).unwrap(), "plain");
        assert_eq!(
            expand("${nope}", &vars),
            Err(TemplateError::Undefined("nope".into()))
        );
        assert!(matches!(
            expand("${prefix", &vars),
            Err(TemplateError::Unclosed(_))
        ));
        assert!(matches!(
            expand("${repeat:x:huge}", &vars),
            Err(TemplateError::BadRepeat(_))
        ));
    }

    #[test]
    fn lists_variables() {
        assert_eq!(
            variables("${prefix}${repeat:x:2}${worker}").unwrap(),
            vec!["prefix".to_string(), "worker".to_string()]
        );
    }
}
