//! Reading the HS256 secret from an environment variable or a file. Errors name
//! the variable or file, never the value.

use rand::distr::{Alphanumeric, SampleString};

use crate::env::Env;
use crate::settings::AuthSettings;

/// Why a secret is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The variable is not set or empty.
    #[error("environment variable {0} is unset or empty")]
    EnvMissing(String),
    /// The file cannot be read or is empty.
    #[error("secret file {0} is unreadable or empty")]
    FileMissing(String),
    /// The secret cannot be used as an HMAC key.
    #[error("the secret cannot be used as an HS256 key")]
    Unusable,
    /// Neither source is configured.
    #[error("no secret_env or secret_file configured")]
    NotConfigured,
}

/// The configured HS256 secret. `secret_file`, when set, wins over
/// `secret_env` (whose default name is filled in when not configured; validation
/// refuses two explicit sources). A file's trailing newline is trimmed.
pub fn hs256_secret(auth: &AuthSettings, env: &Env) -> Result<String, SecretError> {
    read(auth.secret_env.as_deref(), auth.secret_file.as_deref(), env)
}

/// A secret from `file` (trailing newline trimmed) or else the variable `var`;
/// empty counts as missing. Errors name the source, never the value.
pub fn read(var: Option<&str>, file: Option<&str>, env: &Env) -> Result<String, SecretError> {
    if let Some(path) = file {
        return std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SecretError::FileMissing(path.to_owned()));
    }
    if let Some(var) = var {
        return env
            .var(var)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SecretError::EnvMissing(var.to_owned()));
    }
    Err(SecretError::NotConfigured)
}

/// A random 256-bit secret for a development run.
pub fn generate() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 43)
}
