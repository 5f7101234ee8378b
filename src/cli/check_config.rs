//! `wsplus check-config`: validate and print the effective configuration.

use std::path::Path;
use std::process::ExitCode;

use crate::redact;
use crate::settings;

/// Loads, validates and prints the configuration (TOML, secrets redacted).
/// Exit 0 when valid, 1 with one line per problem on stderr otherwise.
pub fn run(config: Option<&Path>) -> ExitCode {
    match settings::load(config) {
        Ok((s, source)) => {
            let text = toml::to_string_pretty(&redact::settings(s)).unwrap_or_default();
            println!("# effective configuration from {source}; secrets redacted");
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            super::report_config_error(&e);
            ExitCode::FAILURE
        }
    }
}
