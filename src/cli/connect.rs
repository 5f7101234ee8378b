//! `wsplus connect`: an outbound WebSocket client on stdin/stdout.

use std::process::ExitCode;

/// Arguments of `wsplus connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// ws:// or wss:// URL.
    pub url: String,
    /// Environment variable holding a JWT, appended as ?token=.
    #[arg(long)]
    pub token_env: Option<String>,
    /// Extra upgrade header, 'Name: value' (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Sec-WebSocket-Protocol to request.
    #[arg(long)]
    pub subprotocol: Option<String>,
    /// Send a ping every N seconds (0 = off).
    #[arg(long, default_value_t = 0)]
    pub heartbeat: u64,
}

/// Runs the client until the connection closes.
pub fn run(_args: ConnectArgs) -> ExitCode {
    eprintln!("wsplus connect: not available yet");
    ExitCode::FAILURE
}
