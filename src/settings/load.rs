//! Loading: file (or the embedded default) + `WSPLUS__SECTION__KEY` overrides,
//! deserialized with the failing key's full path in every error.

use std::path::{Path, PathBuf};

use super::{env_overrides, Settings};

/// The embedded default configuration (`config/default.toml`).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

/// The conventional location of the default configuration.
pub const DEFAULT_PATH: &str = "config/default.toml";

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The default configuration, built in or at `config/default.toml` unchanged.
    /// Only this source gets the development conveniences (generated secrets).
    Default,
    /// A user's file.
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("the default configuration"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Why the configuration could not be used. Each entry of `Invalid` is one line
/// naming the key by its full path.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One or more problems, one line each.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// Loads and validates the configuration from `path`, or from the default.
pub fn load(path: Option<&Path>) -> Result<(Settings, Source), LoadError> {
    let (text, source) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| LoadError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            let source = if text == EMBEDDED_DEFAULT {
                Source::Default
            } else {
                Source::File(p.to_path_buf())
            };
            (text, source)
        }
        None => match std::fs::read_to_string(DEFAULT_PATH) {
            Ok(text) if text == EMBEDDED_DEFAULT => (text, Source::Default),
            Ok(text) => (text, Source::File(PathBuf::from(DEFAULT_PATH))),
            Err(_) => (EMBEDDED_DEFAULT.to_owned(), Source::Default),
        },
    };
    let settings = from_toml_with_env(&text, std::env::vars())?;
    let problems = super::validate(&settings);
    if problems.is_empty() {
        Ok((settings, source))
    } else {
        Err(LoadError::Invalid(problems))
    }
}

/// Parses TOML text and applies `WSPLUS__SECTION__KEY` overrides taken from
/// `env` (passed in so tests need not touch the process environment).
///
/// Every problem is reported, one line each: a key that cannot be read is
/// reported and left at its default so that the rest of the file is still
/// read, and what could be read is then validated too (without the lines a
/// defaulted key would cause).
pub fn from_toml_with_env(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, LoadError> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml));
    let overrides = env_overrides::parse(env).map_err(LoadError::Invalid)?;
    for o in &overrides {
        builder = builder
            .set_override(&o.path, o.value.clone())
            .map_err(|e| LoadError::Invalid(vec![format!("{}: {e}", o.var)]))?;
    }
    let mut root: config::Value = builder
        .build()
        .and_then(config::Config::try_deserialize)
        .map_err(|e| LoadError::Invalid(vec![format!("config: {e}")]))?;
    super::outbound::infer_bridge_auth(&mut root);
    deserialize_all(root).map_err(|lines| LoadError::Invalid(name_variables(lines, &overrides)))
}

/// An unknown key that came from an environment variable is reported under
/// the variable's name (`WSPLUS__SERVER__BINDD: unknown key server.bindd`):
/// searching the file for it would find nothing.
fn name_variables(lines: Vec<String>, overrides: &[env_overrides::Override]) -> Vec<String> {
    lines
        .into_iter()
        .map(|line| {
            let Some((key, _)) = line.split_once(": unknown key") else {
                return line;
            };
            let set_by = overrides.iter().find(|o| {
                o.path == key
                    || o.path.starts_with(&format!("{key}."))
                    || o.path.starts_with(&format!("{key}["))
            });
            match set_by {
                Some(o) => format!("{}: unknown key {key}", o.var),
                None => line,
            }
        })
        .collect()
}

/// Deserializes `root`, collecting every key that cannot be read (see
/// [`from_toml_with_env`]).
fn deserialize_all(mut root: config::Value) -> Result<Settings, Vec<String>> {
    let mut problems = Vec::new();
    let mut defaulted: Vec<String> = Vec::new();
    loop {
        match serde_path_to_error::deserialize::<_, Settings>(root.clone()) {
            Ok(settings) if problems.is_empty() => return Ok(settings),
            Ok(settings) => {
                sort_by_key_path(&mut problems);
                problems.extend(
                    super::validate(&settings)
                        .into_iter()
                        .filter(|line| !defaulted.iter().any(|key| line.contains(key.as_str()))),
                );
                return Err(problems);
            }
            Err(e) => {
                let key = e.path().to_string();
                if defaulted.contains(&key) {
                    sort_by_key_path(&mut problems);
                    return Err(problems);
                }
                let removed = remove(&mut root, e.path());
                problems.push(describe(&key, &e.into_inner().to_string()));
                if !removed {
                    sort_by_key_path(&mut problems);
                    return Err(problems);
                }
                defaulted.push(key);
            }
        }
    }
}

/// One problem line for the key at `path` from the deserializer's message.
fn describe(path: &str, inner: &str) -> String {
    // The config crate appends its own (less precise) key; the path is exact.
    let inner = match inner.find(" for key `") {
        Some(i) => &inner[..i],
        None => inner,
    };
    let inner = inner.replace("unknown field", "unknown key");
    let inner = match (
        inner.contains("does not have variant constructor"),
        allowed_values(path),
    ) {
        (true, Some(allowed)) => {
            let given = inner.rsplit(' ').next().unwrap_or_default();
            format!("unknown value {given:?}, expected one of {allowed}")
        }
        _ => inner,
    };
    if path == "." {
        format!("config: {inner}")
    } else {
        format!("{path}: {inner}")
    }
}

/// Takes the value at `path` out of `root` so that its default applies: a key
/// is removed from its table, an array element becomes an empty table.
/// `false` when there is nothing (more) to take out.
fn remove(root: &mut config::Value, path: &serde_path_to_error::Path) -> bool {
    use config::ValueKind;
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = root;
    for segment in parents {
        let child = match (segment, &mut node.kind) {
            (Segment::Map { key }, ValueKind::Table(map)) => map.get_mut(key),
            (Segment::Seq { index }, ValueKind::Array(items)) => items.get_mut(*index),
            _ => None,
        };
        match child {
            Some(child) => node = child,
            None => return false,
        }
    }
    match (last, &mut node.kind) {
        (Segment::Map { key }, ValueKind::Table(map)) => map.remove(key).is_some(),
        (Segment::Seq { index }, ValueKind::Array(items)) => match items.get_mut(*index) {
            Some(item) if !matches!(&item.kind, ValueKind::Table(t) if t.is_empty()) => {
                *item = config::Map::<String, config::Value>::new().into();
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// The accepted values of an enum-valued key, for error messages.
fn allowed_values(path: &str) -> Option<&'static str> {
    let last = path.rsplit('.').next().unwrap_or(path);
    Some(match last {
        "mode" if path.ends_with("auth.mode") => "none, hs256, jwks",
        "mode" => "payload, message",
        "scope" => "session, tenant, global",
        "from" => "claim, static",
        "on_token_expiry" => "disconnect, allow-stale",
        "on_rate_limit" => "drop, close",
        "backend" => "local, redis",
        "auth" if path.starts_with("bridges[") => "jwt, none",
        _ => return None,
    })
}

/// Sorts problem lines by key, array indexes by number (`listeners[2]`
/// before `listeners[10]`).
fn sort_by_key_path(lines: &mut [String]) {
    /// The line cut into runs of digits (compared as numbers) and of other text.
    fn chunks(line: &str) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        let mut rest = line;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits > 0 {
                out.push((String::new(), rest[..digits].parse().unwrap_or(u64::MAX)));
                rest = &rest[digits..];
            } else {
                let text = rest
                    .find(|c: char| c.is_ascii_digit())
                    .unwrap_or(rest.len());
                out.push((rest[..text].to_owned(), 0));
                rest = &rest[text..];
            }
        }
        out
    }
    lines.sort_by_cached_key(|l| chunks(l));
}

#[cfg(test)]
mod tests {
    #[test]
    fn problems_sort_by_key_with_indexes_as_numbers() {
        let mut lines: Vec<String> = [
            "listeners[10].path: x",
            "listeners[2].mode: y",
            "admin.bind: z",
            "listeners[2].auth.mode: w",
        ]
        .map(String::from)
        .to_vec();
        super::sort_by_key_path(&mut lines);
        assert_eq!(
            lines,
            [
                "admin.bind: z",
                "listeners[2].auth.mode: w",
                "listeners[2].mode: y",
                "listeners[10].path: x",
            ]
        );
    }

    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn embedded_default_equals_built_in_defaults() {
        let s = from_toml_with_env(EMBEDDED_DEFAULT, no_env()).unwrap();
        assert_eq!(s, Settings::default());
        assert!(super::super::validate(&s).is_empty());
    }

    #[test]
    fn an_unknown_key_from_the_environment_names_the_variable() {
        let env = vec![
            ("WSPLUS__SERVER__BINDD".to_owned(), "x".to_owned()),
            ("WSPLUS__BOGUS__KEY".to_owned(), "1".to_owned()),
        ];
        let e = from_toml_with_env("[admin]\nbindd = 1\n", env)
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert!(
            lines.contains(&"WSPLUS__SERVER__BINDD: unknown key server.bindd"),
            "{e}"
        );
        assert!(
            lines.contains(&"WSPLUS__BOGUS__KEY: unknown key bogus"),
            "{e}"
        );
        // The file's own unknown key keeps its file-style line.
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("admin.bindd: unknown key `bindd`")),
            "{e}"
        );
    }

    #[test]
    fn env_overrides_with_double_underscore() {
        let env = vec![
            ("WSPLUS__SERVER__BIND".to_owned(), "0.0.0.0:1234".to_owned()),
            ("WSPLUS__SERVER__WORKERS".to_owned(), "3".to_owned()),
            ("WSPLUS_JWT_SECRET".to_owned(), "ignored".to_owned()),
        ];
        let s = from_toml_with_env(EMBEDDED_DEFAULT, env).unwrap();
        assert_eq!(s.server.bind, "0.0.0.0:1234");
        assert_eq!(s.server.workers, 3);
    }

    #[test]
    fn errors_name_the_full_key() {
        let bad = "[[listeners]]\npath = \"/a\"\nmode = \"loud\"\n";
        let e = from_toml_with_env(bad, no_env()).unwrap_err().to_string();
        assert!(
            e.starts_with("listeners[0].mode: ") && e.contains("loud"),
            "{e}"
        );
        let bad = "[server]\nbindd = \"x\"\n";
        let e = from_toml_with_env(bad, no_env()).unwrap_err().to_string();
        assert!(e.starts_with("server.bindd: unknown key"), "{e}");
        let bad = "[[listeners]]\n[listeners.session]\nrate_limit_per_s = \"fast\"\n";
        let e = from_toml_with_env(bad, no_env()).unwrap_err().to_string();
        assert!(
            e.starts_with("listeners[0].session.rate_limit_per_s:"),
            "{e}"
        );
    }
}
