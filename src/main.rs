//! The `wsplus` binary: parse the command line, start logging, run.

use clap::Parser;

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    wsplus::cli::Cli::parse().run()
}
