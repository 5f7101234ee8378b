//! Command-line front end (DESIGN §3). Each subcommand is a function returning an
//! exit code; `main.rs` only parses arguments and starts logging.

pub mod check_config;
pub mod connect;
pub mod serve;
pub mod token;

use std::path::PathBuf;

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
    /// Print an HS256 JWT (for development and tests).
    Token(token::TokenArgs),
    /// Outbound client: stdin lines -> frames, frames -> stdout.
    Connect(connect::ConnectArgs),
    /// Validate a configuration and print it with secrets redacted.
    CheckConfig {
        /// Configuration file (default: config/default.toml, else built in).
        #[arg(long)]
        config: Option<PathBuf>,
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
            Command::Connect(args) => connect::run(args),
            Command::CheckConfig { config } => check_config::run(config.as_deref()),
        }
    }
}

/// Prints a configuration error, one line per problem, to stderr.
pub(crate) fn report_config_error(e: &crate::settings::LoadError) {
    for line in e.to_string().lines() {
        eprintln!("{line}");
    }
}
