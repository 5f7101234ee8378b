//! `wsplus connect`: an outbound WebSocket client on stdin/stdout.
//!
//! Each stdin line is sent as a text frame; each received message is printed
//! on its own stdout line (text as is, binary as `binary:<base64>`). End of
//! stdin closes the connection with 1000. Exit status: 0 after a close
//! handshake with code 1000, 1001 or none; 1 otherwise (refused handshake —
//! status and body on stderr —, heartbeat timeout, lost connection, other
//! close codes, bad arguments).
//!
//! The proxy: `[proxy]` of the configuration (`--config`, else the default one)
//! first, then the environment (docs/client.md#proxies-http-connect).

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use wsplus_actors::protocol::Frame;
use wsplus_actors::Delivery;

use crate::client::{ClientOptions, Dialer, Outgoing, ProxyRules, TokenSource};
use crate::env::Env;
use crate::settings::{self, ProxySettings};

/// Longest stdin line sent as one frame.
const MAX_LINE_BYTES: u64 = 16 << 20;
/// Lines read ahead of the socket.
const LINE_QUEUE: usize = 64;

/// Arguments of `wsplus connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// ws:// or wss:// URL.
    pub url: String,
    /// Environment variable holding a JWT, appended as ?token=.
    #[arg(long)]
    pub token_env: Option<String>,
    /// File holding a JWT (instead of --token-env).
    #[arg(long, conflicts_with = "token_env")]
    pub token_file: Option<PathBuf>,
    /// Extra upgrade header, 'Name: value' (repeatable; ${VAR} is expanded).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Sec-WebSocket-Protocol to request (the server must agree).
    #[arg(long)]
    pub subprotocol: Option<String>,
    /// Send a ping every N seconds (0 = off); no answer for 2 intervals exits 1.
    #[arg(long, default_value_t = 0)]
    pub heartbeat: u64,
    /// Extra CA certificate (PEM) trusted for wss://, besides the system roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Largest message accepted from the server, in bytes (1 to 16777216); a
    /// frame declaring more, or a larger reassembled message, closes with 1009.
    #[arg(long, default_value_t = crate::client::DEFAULT_MAX_MESSAGE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1..=16 << 20))]
    pub max_message_bytes: u64,
    /// Configuration whose `[proxy]` is used before the proxy environment
    /// variables (default: config/default.toml, else built in).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs the client until the connection closes.
pub fn run(args: ConnectArgs) -> ExitCode {
    let env = Env::process();
    let proxy = match settings::load(args.config.as_deref()) {
        Ok((s, _)) => s.proxy,
        Err(e) => {
            super::report_config_error(&e);
            return ExitCode::FAILURE;
        }
    };
    let dialer = match dialer(&args, &proxy, &env) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("wsplus connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let system = actix_rt::System::new();
    system.block_on(session(dialer))
}

fn dialer(args: &ConnectArgs, proxy: &ProxySettings, env: &Env) -> Result<Dialer, String> {
    let mut headers = Vec::with_capacity(args.headers.len());
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: expected 'Name: value'"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let token = match (&args.token_env, &args.token_file) {
        (Some(var), _) => TokenSource::Env(var.clone()),
        (None, Some(path)) => TokenSource::File(path.clone()),
        (None, None) => TokenSource::None,
    };
    let opts = ClientOptions {
        token,
        headers,
        subprotocol: args.subprotocol.clone(),
        heartbeat: (args.heartbeat > 0).then(|| Duration::from_secs(args.heartbeat)),
        tls_ca_file: args.ca_file.clone(),
        max_message_bytes: args.max_message_bytes as usize,
        ..ClientOptions::new(args.url.clone())
    };
    let proxy = ProxyRules::resolve(proxy, env).map_err(|e| e.to_string())?;
    Dialer::new(&opts, &proxy, env).map_err(|e| e.to_string())
}

async fn session(dialer: Dialer) -> ExitCode {
    let link = match dialer.connect().await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wsplus connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Outgoing>(LINE_QUEUE);
    std::thread::spawn(move || read_stdin(tx));
    let lines = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut out = std::io::stdout();
    let result = link
        .run(lines, |frame| {
            let line = match frame {
                Frame::Text(s) => s.to_string(),
                Frame::Binary(b) => format!(
                    "binary:{}",
                    base64::engine::general_purpose::STANDARD.encode(&b)
                ),
            };
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        })
        .await;
    match result {
        Ok(closed) if closed.is_normal() => ExitCode::SUCCESS,
        Ok(closed) => {
            eprintln!(
                "wsplus connect: closed by the server with code {} {}",
                closed.code.unwrap_or(1005),
                closed.reason
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("wsplus connect: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends stdin lines (without their line ending) until end of input. A plain
/// thread, not a runtime task: a read blocked on stdin must not keep the
/// process alive once the connection has ended.
fn read_stdin(tx: tokio::sync::mpsc::Sender<Outgoing>) {
    let mut reader = std::io::stdin().lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.len() as u64 > MAX_LINE_BYTES {
            eprintln!("wsplus connect: stdin line longer than {MAX_LINE_BYTES} bytes, stopping");
            return;
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let item = Outgoing::Frame(Delivery::Text(text.into()));
        if tx.blocking_send(item).is_err() {
            return;
        }
    }
}
