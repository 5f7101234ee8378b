//! Shared integration-test harness: a real server on port 0 in its own actix
//! system thread, a token minter, and a WebSocket client with timeouts; the
//! modules below hold what one family of tests needs.
//!
//! A library crate (`wsplus-test-common`, a dev-dependency named `common`):
//! a test file writes `use common::*;` and `use common::auth::*;` (no `mod`
//! line), uses any subset without dead-code allowances, and the harness is
//! compiled once for all test binaries.

pub mod admin;
pub mod auth;
pub mod bridge;
pub mod browser;
pub mod channels;
pub mod client;
pub mod cluster;
pub mod hooks;
pub mod limits;
pub mod metrics;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsplus::auth::mint;
use wsplus::env::Env;
use wsplus::error::Rejections;
use wsplus::server::{self, ShutdownHandle, Sockets};
use wsplus::settings::{AuthMode, ListenerSettings, Settings, Source, TenantFrom};
use wsplus_actors::broker::{GetSnapshot, Snapshot};
use wsplus_actors::{Broker, Counters};

/// The HS256 secret every test app uses.
pub const SECRET: &str = "test-secret-please-change-0123456789";
/// The admin token every test app uses.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A loopback port for a server a test starts in a child process (or one that
/// nothing listens on). Binding port 0 would hand out a port from the kernel's
/// ephemeral range (32768 and up), where client sockets and other tests'
/// port-0 servers land too, so a port released here could be taken before the
/// child binds it. Instead: a random start below that range per process, then
/// consecutive ports, skipping any that is busy.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::OnceLock;
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static START: OnceLock<u16> = OnceLock::new();
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = *START.get_or_init(|| rand::random_range(0..SPAN));
    loop {
        let port = LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Settings with both servers on port 0, one worker, and one HS256 listener at
/// `/ws/events` reading the secret from `TEST_JWT_SECRET`.
pub fn base_settings() -> Settings {
    let mut s = Settings::default();
    s.server.bind = "127.0.0.1:0".into();
    s.server.workers = 1;
    s.server.shutdown_grace_s = 5;
    s.admin.bind = "127.0.0.1:0".into();
    s.admin.token_env = "TEST_ADMIN_TOKEN".into();
    s.listeners = vec![listener("/ws/events")];
    // Tenant changes through the admin API land in a file of this test only.
    s.tenants.path = temp_dir("tenants")
        .join(format!("{}.db", rand::random::<u64>()))
        .to_string_lossy()
        .into_owned();
    s
}

/// An HS256 listener at `path` (payload mode, tenant scope).
pub fn listener(path: &str) -> ListenerSettings {
    let mut l = ListenerSettings {
        path: path.into(),
        ..Default::default()
    };
    l.auth.secret_env = Some("TEST_JWT_SECRET".into());
    l
}

/// A `none`-auth listener with a static tenant.
pub fn open_listener(path: &str, tenant: &str) -> ListenerSettings {
    let mut l = listener(path);
    l.auth.mode = AuthMode::None;
    l.auth.secret_env = None;
    l.tenant.from = TenantFrom::Static;
    l.tenant.static_id = Some(tenant.into());
    l
}

/// A running server.
pub struct TestApp {
    /// Client traffic address.
    pub http: SocketAddr,
    /// Admin API address.
    pub admin: SocketAddr,
    /// The Broker actor (for leak checks).
    pub broker: Addr<Broker>,
    /// The server's counters (messages, drops by reason, close codes sent).
    pub counters: Arc<Counters>,
    /// Handshake rejection counters by reason.
    pub rejections: Arc<Rejections>,
    shutdown: ShutdownHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestApp {
    /// Starts a server with the test secret and admin token in its environment.
    pub fn spawn(settings: Settings) -> Self {
        Self::spawn_with_env(settings, HashMap::new())
    }

    /// Starts a server with extra environment variables visible to it.
    pub fn spawn_with_env(settings: Settings, vars: HashMap<String, String>) -> Self {
        let sockets = Sockets::bind(&settings).expect("bind");
        Self::spawn_bound(settings, sockets, vars)
    }

    /// Starts a server on sockets the test bound itself (to know its address
    /// before writing settings that name it, e.g. `allowed_origins`).
    pub fn spawn_bound(
        settings: Settings,
        sockets: Sockets,
        mut vars: HashMap<String, String>,
    ) -> Self {
        vars.entry("TEST_JWT_SECRET".into())
            .or_insert_with(|| SECRET.into());
        vars.entry("TEST_ADMIN_TOKEN".into())
            .or_insert_with(|| ADMIN_TOKEN.into());
        let problems = wsplus::settings::validate(&settings);
        assert!(problems.is_empty(), "test settings invalid: {problems:?}");
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let running = server::start(
                    settings,
                    Source::File("test".into()),
                    sockets,
                    Env::from_map(vars),
                )
                .await
                .expect("server starts");
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                tx.send((
                    running.http_addr,
                    running.admin_addr,
                    running.broker.clone(),
                    running.counters.clone(),
                    running.rejections.clone(),
                    running.shutdown_handle(),
                    stop_tx,
                ))
                .unwrap();
                let _ = stop_rx.await;
                running.shutdown_handle().shutdown().await;
            });
        });
        let (http, admin, broker, counters, rejections, shutdown, stop_tx) =
            rx.recv_timeout(WAIT).expect("server started");
        Self {
            http,
            admin,
            broker,
            counters,
            rejections,
            shutdown,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `ws://addr/path?token=...`
    pub fn ws_url(&self, path: &str, token: Option<&str>) -> String {
        match token {
            Some(t) => format!("ws://{}{}?token={}", self.http, path, t),
            None => format!("ws://{}{}", self.http, path),
        }
    }

    /// How many handshakes were refused for `reason` (e.g. `origin`).
    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejections
            .snapshot()
            .into_iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| n)
    }

    /// `http://admin/path`
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Connects to `path` with a fresh token for `tenant`.
    pub async fn connect(&self, path: &str, tenant: &str) -> Ws {
        Ws::connect(&self.ws_url(path, Some(&token(tenant, Some("user"), 3600)))).await
    }

    /// The Broker's registry sizes.
    pub async fn snapshot(&self) -> Snapshot {
        self.broker.send(GetSnapshot).await.expect("broker alive")
    }

    /// Waits until the Broker reports `want` (registry cleanup is asynchronous
    /// after a socket closes), failing after [`WAIT`].
    pub async fn wait_snapshot(&self, want: Snapshot) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.snapshot().await;
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "broker snapshot {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs the graceful shutdown (sessions get 1001) and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    /// A handle running the shutdown sequence from the test's side.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The server thread runs its graceful shutdown and exits.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An HS256 token for `tenant` signed with [`SECRET`].
pub fn token(tenant: &str, sub: Option<&str>, ttl_s: u64) -> String {
    mint::hs256(SECRET, &mint::Claims::new(tenant, sub, ttl_s, "tenant_id")).unwrap()
}

/// A WebSocket client with bounded waits.
pub struct Ws {
    inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// A refused handshake: HTTP status and body.
#[derive(Debug)]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub body: String,
}

impl Ws {
    /// Connects or panics.
    pub async fn connect(url: &str) -> Ws {
        match Self::try_connect(url).await {
            Ok(ws) => ws,
            Err(r) => panic!("handshake refused: {r:?}"),
        }
    }

    /// Connects, returning the refusal's status and body on failure.
    pub async fn try_connect(url: &str) -> Result<Ws, Refused> {
        Self::try_connect_request(url.into_client_request_compat()).await
    }

    /// Connects with a prepared request (extra headers).
    pub async fn try_connect_request(
        req: tungstenite::handshake::client::Request,
    ) -> Result<Ws, Refused> {
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("handshake timed out")
        {
            Ok((inner, _)) => Ok(Ws { inner }),
            Err(tungstenite::Error::Http(resp)) => Err(Refused {
                status: resp.status().as_u16(),
                body: String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default())
                    .into_owned(),
            }),
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, s: &str) {
        self.inner.send(Message::text(s)).await.expect("send");
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, b: &[u8]) {
        self.inner
            .send(Message::binary(b.to_vec()))
            .await
            .expect("send");
    }

    /// Sends any message (raw frames included).
    pub async fn send(&mut self, m: Message) {
        self.inner.send(m).await.expect("send");
    }

    /// The next data message (pings are answered by the library and skipped).
    pub async fn next_message(&mut self) -> Message {
        loop {
            let m = tokio::time::timeout(WAIT, self.inner.next())
                .await
                .expect("timed out waiting for a message")
                .expect("stream ended")
                .expect("read error");
            match m {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => return other,
            }
        }
    }

    /// The next text message.
    pub async fn recv_text(&mut self) -> String {
        match self.next_message().await {
            Message::Text(t) => t.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// The next message parsed as JSON.
    pub async fn recv_json(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.recv_text().await).expect("json")
    }

    /// Waits for the server's close frame; returns (code, reason).
    pub async fn recv_close(&mut self) -> (u16, String) {
        loop {
            match tokio::time::timeout(WAIT, self.inner.next())
                .await
                .expect("timed out waiting for close")
            {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("read error before close: {e}"),
                None => panic!("stream ended without a close frame"),
            }
        }
    }

    /// Reads until the stream ends (or errors); panics on timeout.
    pub async fn wait_end(&mut self) {
        loop {
            match tokio::time::timeout(WAIT, self.inner.next())
                .await
                .expect("timed out waiting for end")
            {
                Some(Ok(_)) => continue,
                _ => return,
            }
        }
    }

    /// Closes normally.
    pub async fn close(mut self) {
        let _ = self
            .inner
            .close(Some(tungstenite::protocol::CloseFrame {
                code: WsCloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }

    /// Drops the TCP connection without a close frame.
    pub fn abort(self) {
        drop(self.inner);
    }
}

trait IntoRequestCompat {
    fn into_client_request_compat(self) -> tungstenite::handshake::client::Request;
}

impl IntoRequestCompat for &str {
    fn into_client_request_compat(self) -> tungstenite::handshake::client::Request {
        use tungstenite::client::IntoClientRequest;
        self.into_client_request().expect("valid url")
    }
}

/// Calls `probe` until `done` holds for its answer (for state that has no
/// event to await) and returns that answer; fails after `limit`, showing the
/// last answer.
pub async fn poll_within<T: std::fmt::Debug>(
    limit: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let got = probe().await;
        if done(&got) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not {what} within {limit:?}: last {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`poll_within`] [`WAIT`].
pub async fn poll_until<T: std::fmt::Debug>(
    what: &str,
    probe: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    poll_within(WAIT, what, probe, done).await
}

/// Polls `check` until it returns true, failing after `limit`.
pub async fn eventually_within(limit: Duration, what: &str, check: impl AsyncFnMut() -> bool) {
    poll_within(limit, what, check, |ok| *ok).await;
}

/// Polls `check` until it returns true, failing after [`WAIT`].
pub async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    eventually_within(WAIT, what, check).await;
}

/// `GET path` on `addr` over a plain HTTP/1.1 connection; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("response timed out")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The `wsplus` binary cargo builds for the integration tests. This crate is
/// a library, where `env!("CARGO_BIN_EXE_wsplus")` is not set: take it from
/// the runtime environment (nextest sets it), else beside the running test
/// binary (`target/<profile>/deps/<test>` -> `target/<profile>/wsplus`).
pub fn wsplus_exe() -> std::path::PathBuf {
    ["CARGO_BIN_EXE_wsplus", "NEXTEST_BIN_EXE_wsplus"]
        .into_iter()
        .find_map(std::env::var_os)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let test = std::env::current_exe().expect("test binary path");
            let profile = test.parent().and_then(|deps| deps.parent());
            profile.expect("target/<profile>/deps").join("wsplus")
        })
}

/// The real binary with a clean environment: no `WSPLUS*` variable (secrets,
/// `WSPLUS__` overrides) leaks in from the test's environment; info logs.
pub fn wsplus_bin() -> std::process::Command {
    let mut c = std::process::Command::new(wsplus_exe());
    for (k, _) in std::env::vars() {
        if k.starts_with("WSPLUS") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "info");
    c
}

/// A directory of this test process named for `name`, created if missing.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wsplus-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `config.toml` in [`temp_dir`]`(name)` and returns its path.
pub fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = temp_dir(name).join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}
