//! Command-line front end (README.md, docs/operations.md). Each subcommand is a
//! function returning an exit code; `main.rs` only parses arguments and starts
//! logging.

pub mod check_config;
pub mod connect;
pub mod serve;
pub mod token;
pub mod verify_token;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

/// wsplus: a tenant-isolated WebSocket pub/sub broker.
#[derive(Debug, Parser)]
#[command(
    name = "wsplus",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Configuration file for `serve` when no subcommand is given
    /// (`wsplus --config FILE` is `wsplus serve --config FILE`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker (the default command).
    Serve {
        /// Configuration file (default: config/default.toml, else built in).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print an HS256 JWT a listener accepts (for development and tests).
    Token(token::TokenArgs),
    /// Decode a JWT and say whether a listener accepts it, and if not why.
    VerifyToken(verify_token::VerifyTokenArgs),
    /// Outbound client: stdin lines -> frames, frames -> stdout.
    Connect(connect::ConnectArgs),
    /// Validate a configuration, check what `serve` checks (secrets, files,
    /// TLS pair, bridges) and print it with secrets redacted.
    CheckConfig {
        /// Configuration file (default: config/default.toml, else built in).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Skip only the checks of secrets (variables and secret files), e.g.
        /// in a CI image that has no secrets.
        #[arg(long)]
        no_secrets: bool,
    },
}

impl Cli {
    /// Runs the chosen subcommand and returns the process exit code.
    pub fn run(self) -> std::process::ExitCode {
        let command = self.command.unwrap_or(Command::Serve {
            config: self.config,
        });
        match command {
            Command::Serve { config } => serve::run(config.as_deref()),
            Command::Token(args) => token::run(args),
            Command::VerifyToken(args) => verify_token::run(args),
            Command::Connect(args) => connect::run(args),
            Command::CheckConfig { config, no_secrets } => {
                check_config::run(config.as_deref(), no_secrets)
            }
        }
    }
}

/// Prints a configuration error, one line per problem, to stderr.
pub(crate) fn report_config_error(e: &crate::settings::LoadError) {
    for line in e.to_string().lines() {
        eprintln!("{line}");
    }
}

/// The configuration at `config` (default: as for `serve`) and the index of
/// its listener `path` (default: the first), for `token` and
/// `verify-token`; else the lines to print.
pub(crate) fn listener(
    config: Option<&Path>,
    path: Option<&str>,
) -> Result<(crate::settings::Settings, usize), String> {
    let (settings, _) = crate::settings::load(config).map_err(|e| e.to_string())?;
    let found = match path {
        None => (!settings.listeners.is_empty()).then_some(0),
        Some(p) => settings.listeners.iter().position(|l| l.path == p),
    };
    match found {
        Some(i) => Ok((settings, i)),
        None => {
            let paths: Vec<&str> = settings.listeners.iter().map(|l| l.path.as_str()).collect();
            Err(format!(
                "--listener: no listener {} in the configuration (listeners: {})",
                path.unwrap_or(""),
                paths.join(", ")
            ))
        }
    }
}
