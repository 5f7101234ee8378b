//! The outbound WebSocket client (awc) shared by `wsplus connect` and
//! `[[bridges]]` (docs/client.md).
//!
//! [`ClientOptions`] says what to connect to; [`Dialer::new`] checks everything
//! that can be checked before dialling (URL, token source, `${VAR}` headers,
//! CA file, proxy) and fails with a [`SetupError`] naming what is wrong;
//! [`Dialer::connect`] dials — directly or through an HTTP CONNECT tunnel
//! ([`proxy`]), with TLS for `wss://` ([`tls`]) — and returns a [`Link`] whose
//! event loop runs the connection. The token is only ever in the request line.

pub mod link;
pub mod proxy;
mod refusal;
pub mod target;
pub mod template;
pub mod tls;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use awc::error::WsClientError;
use awc::http::header::{HeaderName, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use awc::http::StatusCode;

pub use link::{Closed, Link, Outgoing};
pub use proxy::{ProxyError, ProxyRules};
pub use target::Target;

use crate::env::Env;

/// Time allowed for TCP connect (and CONNECT) and for the TLS handshake each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the whole upgrade request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest message accepted from the upstream by default (bridges'
/// `max_message_bytes`, `connect --max-message-bytes`): 1 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Where the token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// No token (`auth = "none"`).
    None,
    /// An environment variable.
    Env(String),
    /// A file (trailing newline ignored); re-read on every connect.
    File(PathBuf),
}

/// What to connect to and how.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// Token appended as `?token=`.
    pub token: TokenSource,
    /// Extra upgrade headers: name and value template (`${VAR}` expanded).
    pub headers: Vec<(String, String)>,
    /// Sec-WebSocket-Protocol to request.
    pub subprotocol: Option<String>,
    /// Ping interval; no answer for two intervals ends the connection.
    pub heartbeat: Option<Duration>,
    /// Extra CA (PEM) for wss://.
    pub tls_ca_file: Option<PathBuf>,
    /// Largest message accepted from the upstream.
    pub max_message_bytes: usize,
}

impl ClientOptions {
    /// Options for `url` with everything else off.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: TokenSource::None,
            headers: Vec::new(),
            subprotocol: None,
            heartbeat: None,
            tls_ca_file: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// A problem found before dialling. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The URL is unusable.
    #[error("url: {0}")]
    Url(#[from] target::UrlError),
    /// The token variable is unset or empty.
    #[error("token: environment variable {0} is unset or empty")]
    TokenEnv(String),
    /// The token file is unreadable or empty.
    #[error("token: file {0} is unreadable or empty")]
    TokenFile(String),
    /// A header is malformed or names an unset variable.
    #[error("header {name}: {reason}")]
    Header {
        /// The header name as given.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The subprotocol is not a valid token.
    #[error("subprotocol {0:?} is not a valid Sec-WebSocket-Protocol token")]
    Subprotocol(String),
    /// The CA file or TLS setup.
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
}

/// Why a connection attempt or a running connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered the upgrade with another status.
    #[error("handshake refused: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// The answer's body (bounded).
        body: String,
    },
    /// A subprotocol was requested and the server did not agree to it.
    #[error("server did not agree to subprotocol {requested:?} (answered {})", answered.as_deref().map_or("none".to_owned(), |a| format!("{a:?}")))]
    Subprotocol {
        /// What was asked for.
        requested: String,
        /// What the server answered.
        answered: Option<String>,
    },
    /// The proxy refused or could not be reached.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// Reading the token at connect time.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// TCP, TLS or HTTP failure before the upgrade completed.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL, redacted.
        url: String,
        /// What failed.
        reason: String,
    },
    /// No frame from the server for two heartbeat intervals.
    #[error("no answer to pings for two heartbeat intervals ({}s each)", .0.as_secs())]
    HeartbeatTimeout(Duration),
    /// A WebSocket protocol error.
    #[error("websocket protocol error: {0}")]
    Protocol(String),
    /// The connection dropped without a close frame.
    #[error("connection lost (no close frame)")]
    ConnectionLost,
    /// Our close frame was not answered in time.
    #[error("no close frame from the server in time")]
    CloseTimeout,
}

/// Everything needed to dial, checked up front. Cheap to clone.
#[derive(Clone)]
pub struct Dialer {
    target: Target,
    token: TokenSource,
    headers: Vec<(HeaderName, HeaderValue)>,
    subprotocol: Option<String>,
    heartbeat: Option<Duration>,
    tls: Option<Arc<rustls::ClientConfig>>,
    proxy: Option<proxy::ProxyUrl>,
    max_message_bytes: usize,
    env: Env,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("url", &self.target.redacted())
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl Dialer {
    /// Checks the options; variables come from `env`, the proxy from `proxy`.
    pub fn new(opts: &ClientOptions, proxy: &ProxyRules, env: &Env) -> Result<Self, SetupError> {
        let token = read_token(&opts.token, env)?;
        let target = Target::parse(&opts.url, token)?;
        let mut headers = Vec::with_capacity(opts.headers.len());
        for (name, template) in &opts.headers {
            let bad = |reason: String| SetupError::Header {
                name: name.clone(),
                reason,
            };
            let value = template::expand(template, env).map_err(|e| bad(e.to_string()))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| bad("not a valid header name".into()))?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| bad("value is not a valid header value".into()))?;
            headers.push((name, value));
        }
        let subprotocol = opts.subprotocol.clone().filter(|s| !s.is_empty());
        if let Some(p) = &subprotocol {
            if !is_token(p) {
                return Err(SetupError::Subprotocol(p.clone()));
            }
        }
        let tls = if target.secure() {
            Some(tls::client_config(opts.tls_ca_file.as_deref())?)
        } else {
            if let Some(path) = &opts.tls_ca_file {
                tls::read_certs(path)?;
            }
            None
        };
        let proxy = proxy.for_target(&target.host(), target.port()).cloned();
        Ok(Self {
            target,
            token: opts.token.clone(),
            headers,
            subprotocol,
            heartbeat: opts.heartbeat.filter(|d| !d.is_zero()),
            tls,
            proxy,
            max_message_bytes: opts.max_message_bytes,
            env: env.clone(),
        })
    }

    /// The URL, safe to show.
    pub fn shown_url(&self) -> String {
        self.target.redacted()
    }

    /// The proxy this dialer goes through, if any (safe to show).
    pub fn proxy(&self) -> Option<String> {
        self.proxy.as_ref().map(ToString::to_string)
    }

    /// Dials and upgrades. Must run on an actix (tokio local) runtime.
    pub async fn connect(&self) -> Result<Link, ClientError> {
        // A token file is re-read so a rotated token is picked up on reconnect.
        let token = read_token(&self.token, &self.env)?;
        let mut target = self.target.clone();
        if let TokenSource::File(_) = self.token {
            target = Target::parse(&target.request_url(), token).map_err(SetupError::from)?;
        }
        let failure: proxy::ProxyFailure = Rc::new(RefCell::new(None));
        let refusal: refusal::RefusalBody = Rc::new(RefCell::new(None));
        let mut connector = awc::Connector::new()
            .connector(proxy::TunnelConnector::new(
                self.proxy.clone(),
                failure.clone(),
            ))
            .timeout(CONNECT_TIMEOUT)
            .handshake_timeout(CONNECT_TIMEOUT);
        if let Some(tls) = &self.tls {
            connector = connector.rustls_0_23(tls.clone());
        }
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(HANDSHAKE_TIMEOUT)
            .max_redirects(0)
            .wrap(refusal::CaptureRefusal(refusal.clone()))
            .finish();
        let mut request = client
            .ws(target.request_url())
            .max_frame_size(self.max_message_bytes);
        for (name, value) in &self.headers {
            request = request.set_header(name.clone(), value.clone());
        }
        if let Some(p) = &self.subprotocol {
            request = request.protocols([p.as_str()]);
        }
        let shown = target.redacted();
        let (response, framed) = match request.connect().await {
            Ok(ok) => ok,
            Err(e) => {
                if let Some(p) = failure.borrow_mut().take() {
                    return Err(ClientError::Proxy(p));
                }
                return Err(match e {
                    WsClientError::InvalidResponseStatus(status) => ClientError::Refused {
                        status,
                        body: refusal.borrow_mut().take().unwrap_or_default(),
                    },
                    other => ClientError::Connect {
                        url: shown,
                        reason: describe(&other),
                    },
                });
            }
        };
        let answered = response
            .headers()
            .get(SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(requested) = &self.subprotocol {
            if answered.as_deref() != Some(requested.as_str()) {
                return Err(ClientError::Subprotocol {
                    requested: requested.clone(),
                    answered,
                });
            }
        }
        log::info!(
            "connected url={shown} via={}",
            self.proxy().unwrap_or_else(|| "direct".into())
        );
        Ok(Link::new(
            framed,
            self.heartbeat,
            self.max_message_bytes,
            answered,
        ))
    }
}

/// awc's error text, without anything that could carry the URL's token.
fn describe(e: &WsClientError) -> String {
    match e {
        WsClientError::SendRequest(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

fn read_token(source: &TokenSource, env: &Env) -> Result<Option<String>, SetupError> {
    match source {
        TokenSource::None => Ok(None),
        TokenSource::Env(var) => env
            .var(var)
            .filter(|t| !t.is_empty())
            .map(Some)
            .ok_or_else(|| SetupError::TokenEnv(var.clone())),
        TokenSource::File(path) => std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|t| !t.is_empty())
            .map(Some)
            .ok_or_else(|| SetupError::TokenFile(path.display().to_string())),
    }
}

/// RFC 7230 token characters (what a Sec-WebSocket-Protocol value must be).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
