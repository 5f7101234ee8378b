//! `wsplus check-config`: validate, check what `serve` checks before it
//! binds (the same function, the same lines), print the effective
//! configuration.

use std::path::Path;
use std::process::ExitCode;

use crate::env::Env;
use crate::redact;
use crate::server::preflight::{self, Secrets};
use crate::settings;

/// Loads and validates the configuration, runs the checks `serve` runs
/// before binding (secrets unless `no_secrets`, files, TLS pair, bridges) and
/// prints the configuration (TOML, secrets redacted). Exit 0 when all is
/// well, 1 with one line per problem on stderr (and nothing on stdout)
/// otherwise.
pub fn run(config: Option<&Path>, no_secrets: bool) -> ExitCode {
    let (s, source) = match settings::load(config) {
        Ok(x) => x,
        Err(e) => {
            super::report_config_error(&e);
            return ExitCode::FAILURE;
        }
    };
    let secrets = if no_secrets {
        Secrets::Skip
    } else {
        Secrets::Check
    };
    let problems = preflight::check(&s, &source, &Env::process(), secrets);
    if !problems.is_empty() {
        for p in problems {
            eprintln!("{}", p.line);
        }
        return ExitCode::FAILURE;
    }
    let text = toml::to_string_pretty(&redact::settings(s)).unwrap_or_default();
    println!("# effective configuration from {source}; secrets redacted");
    print!("{text}");
    ExitCode::SUCCESS
}
