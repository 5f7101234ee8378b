//! Loading: file (or the embedded default) + `WSPLUS__SECTION__KEY` overrides,
//! deserialized with the failing key's full path in every error.

use std::path::{Path, PathBuf};

use super::Settings;

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
pub fn from_toml_with_env(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, LoadError> {
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("WSPLUS__"))
        .collect();
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("WSPLUS")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        )
        .build()
        .map_err(|e| LoadError::Invalid(vec![format!("config: {e}")]))?;
    serde_path_to_error::deserialize::<_, Settings>(built).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // The config crate appends its own (less precise) key; the path above is exact.
        let inner = match inner.find(" for key `") {
            Some(i) => inner[..i].to_owned(),
            None => inner,
        };
        let inner = inner.replace("unknown field", "unknown key");
        let inner = match (
            inner.contains("does not have variant constructor"),
            allowed_values(&path),
        ) {
            (true, Some(allowed)) => {
                let given = inner.rsplit(' ').next().unwrap_or_default();
                format!("unknown value {given:?}, expected one of {allowed}")
            }
            _ => inner,
        };
        LoadError::Invalid(vec![if path == "." {
            format!("config: {inner}")
        } else {
            format!("{path}: {inner}")
        }])
    })
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

#[cfg(test)]
mod tests {
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
