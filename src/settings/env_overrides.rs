//! `WSPLUS__SECTION__KEY` environment overrides
//! (docs/configuration.md#loading-rules) as config-crate paths. Segments are
//! separated by `__` and lower-cased; a numeric segment addresses an element of
//! an array, so listener keys can be overridden too:
//! `WSPLUS__LISTENERS__0__AUTH__MODE=none` sets `listeners[0].auth.mode`.
//! Values are typed as the config crate's `try_parsing` does: a boolean, else
//! an integer, else a float, else a string.

/// The prefix every override variable starts with.
const PREFIX: &str = "WSPLUS__";
/// Largest array index an override may name: the config crate fills the
/// array up to it, so `WSPLUS__LISTENERS__99999999__PATH` must not allocate
/// a hundred million elements.
const MAX_INDEX: usize = 1023;

/// One override taken from the environment.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Override {
    /// The variable it came from, for error messages.
    pub var: String,
    /// The config path it sets: `server.bind`, `listeners[0].auth.mode`.
    pub path: String,
    /// The typed value.
    pub value: config::Value,
}

/// The overrides among `env`, ordered by variable name, or one line per
/// variable that names no key.
pub(super) fn parse(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Override>, Vec<String>> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    vars.sort();
    let mut overrides = Vec::new();
    let mut problems = Vec::new();
    for (var, raw) in vars {
        match path_of(&var[PREFIX.len()..]) {
            Some(path) => overrides.push(Override {
                var,
                path,
                value: typed(&raw),
            }),
            None => problems.push(format!(
                "{var}: names no configuration key (WSPLUS__SECTION__KEY, \
                 array elements by index up to {MAX_INDEX}: WSPLUS__LISTENERS__0__PATH)"
            )),
        }
    }
    if problems.is_empty() {
        Ok(overrides)
    } else {
        Err(problems)
    }
}

/// `LISTENERS__0__AUTH__MODE` → `listeners[0].auth.mode`; `None` when a
/// segment is empty or not a plain key, or the path starts with an index.
fn path_of(rest: &str) -> Option<String> {
    let mut path = String::new();
    for segment in rest.split("__") {
        if segment.is_empty() {
            return None;
        }
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            if path.is_empty() || segment.parse::<usize>().map_or(true, |i| i > MAX_INDEX) {
                return None;
            }
            path.push('[');
            path.push_str(segment);
            path.push(']');
        } else if segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment.to_ascii_lowercase());
        } else {
            return None;
        }
    }
    Some(path)
}

/// The value as the config crate's `try_parsing` would type it.
fn typed(raw: &str) -> config::Value {
    if let Ok(b) = raw.to_lowercase().parse::<bool>() {
        b.into()
    } else if let Ok(i) = raw.parse::<i64>() {
        i.into()
    } else if let Ok(f) = raw.parse::<f64>() {
        f.into()
    } else {
        raw.to_owned().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_use_indexes_for_numeric_segments() {
        assert_eq!(path_of("SERVER__BIND").as_deref(), Some("server.bind"));
        assert_eq!(
            path_of("LISTENERS__0__AUTH__MODE").as_deref(),
            Some("listeners[0].auth.mode")
        );
        assert_eq!(
            path_of("LISTENERS__1__ALLOWED_ORIGINS__0").as_deref(),
            Some("listeners[1].allowed_origins[0]")
        );
        assert_eq!(
            path_of("LISTENERS__1023__PATH").as_deref(),
            Some("listeners[1023].path")
        );
        assert_eq!(path_of("LISTENERS__1024__PATH"), None);
        assert_eq!(path_of("LISTENERS__99999999999999999999999__PATH"), None);
        assert_eq!(path_of("SERVER____BIND"), None);
        assert_eq!(path_of("0__PATH"), None);
        assert_eq!(path_of("SERVER__BI-ND"), None);
    }

    #[test]
    fn only_prefixed_variables_count_and_bad_names_are_reported() {
        let env = [
            ("WSPLUS_JWT_SECRET".to_owned(), "s".to_owned()),
            ("WSPLUS__SERVER__WORKERS".to_owned(), "3".to_owned()),
        ];
        let o = parse(env).unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].path, "server.workers");
        let e = parse([("WSPLUS__A____B".to_owned(), "1".to_owned())]).unwrap_err();
        assert!(e[0].starts_with("WSPLUS__A____B: names no configuration key"));
    }
}
