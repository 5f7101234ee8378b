//! `${VAR}` expansion in header values and proxy URLs. Variables are read
//! through [`Env`]; an unset variable is an error naming it (never its value).

use crate::env::Env;

/// Why a template cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `${` without a closing `}`, or an invalid variable name.
    #[error("invalid ${{VAR}} reference in {0:?}")]
    Syntax(String),
    /// The named variable is not set.
    #[error("environment variable {0} is not set")]
    Unset(String),
}

/// The variable names a template refers to, in order; checks the syntax.
pub fn variables(template: &str) -> Result<Vec<&str>, TemplateError> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| TemplateError::Syntax(template.to_owned()))?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(TemplateError::Syntax(template.to_owned()));
        }
        names.push(name);
        rest = &after[end + 1..];
    }
    Ok(names)
}

/// Replaces every `${VAR}` with its value from `env`.
pub fn expand(template: &str, env: &Env) -> Result<String, TemplateError> {
    variables(template)?;
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').unwrap_or(after.len());
        let name = &after[..end];
        let value = env
            .var(name)
            .ok_or_else(|| TemplateError::Unset(name.to_owned()))?;
        out.push_str(&value);
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> Env {
        Env::from_map(HashMap::from([
            ("KEY".to_owned(), "s3cret".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]))
    }

    #[test]
    fn expands_known_variables_and_keeps_text() {
        assert_eq!(expand("plain", &env()).unwrap(), "plain");
        assert_eq!(
            expand("k=${KEY};${KEY}", &env()).unwrap(),
            "k=s3cret;s3cret"
        );
        assert_eq!(expand("${EMPTY}x", &env()).unwrap(), "x");
        assert_eq!(expand("$KEY {KEY}", &env()).unwrap(), "$KEY {KEY}");
    }

    #[test]
    fn unset_variable_is_named() {
        let e = expand("a ${MISSING_ONE} b", &env()).unwrap_err();
        assert_eq!(e, TemplateError::Unset("MISSING_ONE".into()));
        assert_eq!(e.to_string(), "environment variable MISSING_ONE is not set");
    }

    #[test]
    fn bad_syntax_is_refused() {
        for t in ["${", "${KEY", "${}", "${BAD NAME}", "x${a-b}"] {
            assert!(matches!(variables(t), Err(TemplateError::Syntax(_))), "{t}");
        }
        assert_eq!(variables("${A}-${B_2}").unwrap(), vec!["A", "B_2"]);
    }
}
