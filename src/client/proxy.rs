//! HTTP CONNECT proxies (docs/client.md#proxies-http-connect).
//!
//! Which proxy: the first set of `[proxy] https_proxy`, `[proxy] http_proxy`
//! (configuration, `${VAR}` expanded), then the environment `https_proxy`,
//! `HTTPS_PROXY`, `http_proxy`, `HTTP_PROXY`. Exclusions: `[proxy] no_proxy`,
//! else `NO_PROXY`, else `no_proxy` — exact hosts, `.domain` suffixes,
//! `host:port` and `*`. Every WebSocket connection through a proxy is a
//! CONNECT tunnel (ws:// and wss:// alike), so one proxy serves both schemes.
//!
//! awc has no proxy support: [`TunnelConnector`] is the TCP connector awc is
//! given. It dials the proxy, asks for `CONNECT host:port` (with basic
//! credentials from the proxy URL's userinfo) and hands awc the tunnelled
//! stream, on which awc then runs TLS for wss:// and the upgrade.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection};
use awc::http::Uri;
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::template;
use crate::env::Env;
use crate::settings::ProxySettings;

/// Largest CONNECT response head read from a proxy.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;
/// Time allowed for the proxy to answer CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A proxy server: where it is and how to authenticate. Its credentials never
/// appear in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    host: String,
    port: u16,
    authorization: Option<String>,
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", authority(&self.host, self.port))
    }
}

/// Why a proxy setting is unusable (the message never contains the URL, which
/// may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyConfigError {
    /// Not a URL, or an unsupported scheme.
    #[error("{0}")]
    Invalid(&'static str),
    /// A `${VAR}` in the URL.
    #[error(transparent)]
    Template(#[from] template::TemplateError),
}

impl ProxyUrl {
    /// Parses `http://[user[:password]@]host[:port]` (or `host:port`).
    pub fn parse(text: &str) -> Result<Self, ProxyConfigError> {
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let url = url::Url::parse(&with_scheme)
            .map_err(|_| ProxyConfigError::Invalid("not a valid proxy URL"))?;
        if url.scheme() != "http" {
            return Err(ProxyConfigError::Invalid(
                "only http:// proxies are supported (CONNECT over plain HTTP)",
            ));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(ProxyConfigError::Invalid("proxy URL has no host")),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let authorization = (!url.username().is_empty()).then(|| {
            let user = decode(url.username());
            let pass = url.password().map(decode).unwrap_or_default();
            let raw = format!("{user}:{pass}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        });
        Ok(Self {
            host,
            port: url.port().unwrap_or(80),
            authorization,
        })
    }

    /// True when the URL carries credentials.
    pub fn has_credentials(&self) -> bool {
        self.authorization.is_some()
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One `no_proxy` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exclusion {
    All,
    Host(String),
    Suffix(String),
    HostPort(String, u16),
}

/// Parsed `no_proxy` exclusions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy(Vec<Exclusion>);

impl NoProxy {
    /// Parses a comma- (or space-) separated list.
    pub fn parse(list: &str) -> Self {
        let entries = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(|e| e.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .map(|e| {
                if e == "*" {
                    return Exclusion::All;
                }
                if let Some(domain) = e.strip_prefix("*.").or_else(|| e.strip_prefix('.')) {
                    return Exclusion::Suffix(domain.to_owned());
                }
                if e.parse::<std::net::IpAddr>().is_ok() {
                    return Exclusion::Host(e);
                }
                let (host, port) = match e.strip_prefix('[') {
                    Some(v6) => match v6.split_once(']') {
                        Some((h, rest)) => (h.to_owned(), rest.strip_prefix(':')),
                        None => (e.clone(), None),
                    },
                    None => match e.rsplit_once(':') {
                        Some((h, p)) => (h.to_owned(), Some(p)),
                        None => (e.clone(), None),
                    },
                };
                match port.map(str::parse::<u16>) {
                    Some(Ok(p)) => Exclusion::HostPort(host, p),
                    _ => Exclusion::Host(host),
                }
            })
            .collect();
        Self(entries)
    }

    /// True when a connection to `host:port` must not use the proxy.
    pub fn excludes(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        self.0.iter().any(|e| match e {
            Exclusion::All => true,
            Exclusion::Host(h) => *h == host,
            Exclusion::Suffix(d) => host == *d || host.ends_with(&format!(".{d}")),
            Exclusion::HostPort(h, p) => *h == host && *p == port,
        })
    }
}

/// An unusable proxy setting, named by where it came from (`proxy.https_proxy`,
/// `HTTPS_PROXY`...); never shows the value, which may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {problem}")]
pub struct ProxySettingError {
    /// The configuration key or environment variable.
    pub origin: &'static str,
    /// What is wrong with it.
    pub problem: ProxyConfigError,
}

/// The proxy decision for outbound connections.
#[derive(Debug, Clone, Default)]
pub struct ProxyRules {
    proxy: Option<ProxyUrl>,
    /// Where the proxy came from (`proxy.https_proxy`, `HTTPS_PROXY`, ...).
    source: &'static str,
    no_proxy: NoProxy,
}

/// Environment variables consulted after the configuration, in order.
const ENV_PROXY_VARS: [&str; 4] = ["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"];

impl ProxyRules {
    /// No proxy at all.
    pub fn direct() -> Self {
        Self::default()
    }

    /// Resolves the configuration, then the environment. An unusable value is
    /// an error naming where it came from (never the value).
    pub fn resolve(config: &ProxySettings, env: &Env) -> Result<Self, ProxySettingError> {
        let configured = [
            ("proxy.https_proxy", config.https_proxy.as_deref()),
            ("proxy.http_proxy", config.http_proxy.as_deref()),
        ];
        let mut chosen: Option<(&'static str, String)> = None;
        for (key, value) in configured {
            if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
                let expanded = template::expand(v, env).map_err(|e| ProxySettingError {
                    origin: key,
                    problem: e.into(),
                })?;
                chosen = Some((key, expanded));
                break;
            }
        }
        if chosen.is_none() {
            chosen = ENV_PROXY_VARS.iter().find_map(|var| {
                env.var(var)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (*var, v))
            });
        }
        let proxy = match chosen {
            Some((source, text)) => Some((
                source,
                ProxyUrl::parse(text.trim()).map_err(|problem| ProxySettingError {
                    origin: source,
                    problem,
                })?,
            )),
            None => None,
        };
        // An empty variable counts as unset, as for the proxy variables.
        let env_list = |var| env.var(var).filter(|v| !v.trim().is_empty());
        let no_proxy = config
            .no_proxy
            .clone()
            .or_else(|| env_list("NO_PROXY"))
            .or_else(|| env_list("no_proxy"))
            .map(|l| NoProxy::parse(&l))
            .unwrap_or_default();
        Ok(match proxy {
            Some((source, url)) => Self {
                proxy: Some(url),
                source,
                no_proxy,
            },
            None => Self {
                proxy: None,
                source: "",
                no_proxy,
            },
        })
    }

    /// The proxy to use for `host:port`, if any.
    pub fn for_target(&self, host: &str, port: u16) -> Option<&ProxyUrl> {
        self.proxy
            .as_ref()
            .filter(|_| !self.no_proxy.excludes(host, port))
    }

    /// Where the proxy setting came from (for logs).
    pub fn source(&self) -> &'static str {
        self.source
    }
}

/// Why a tunnel through the proxy could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// TCP connection to the proxy failed.
    #[error("proxy {proxy} unreachable: {source}")]
    Unreachable {
        /// The proxy (no credentials).
        proxy: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// 407 (or 401, as tinyproxy answers wrong credentials): the proxy wants
    /// (other) credentials.
    #[error("proxy {proxy} refused CONNECT: {status} authentication required ({hint})")]
    AuthRequired {
        /// The proxy (no credentials).
        proxy: String,
        /// The status code answered.
        status: String,
        /// Whether credentials were sent.
        hint: &'static str,
    },
    /// 403: the proxy does not allow this destination.
    #[error("proxy {proxy} refused CONNECT to {target}: 403 Forbidden")]
    Forbidden {
        /// The proxy (no credentials).
        proxy: String,
        /// host:port asked for.
        target: String,
    },
    /// Any other non-2xx answer.
    #[error("proxy {proxy} refused CONNECT to {target}: {status}")]
    Refused {
        /// The proxy (no credentials).
        proxy: String,
        /// host:port asked for.
        target: String,
        /// The status line's code and reason.
        status: String,
    },
    /// The answer is not HTTP, too long, or never came.
    #[error("proxy {proxy}: {reason}")]
    BadResponse {
        /// The proxy (no credentials).
        proxy: String,
        /// What went wrong.
        reason: String,
    },
}

/// Where the connector leaves the typed reason of a failed tunnel (awc only
/// carries an `io::Error` back to the caller).
pub type ProxyFailure = Rc<RefCell<Option<ProxyError>>>;

/// awc's TCP connector: direct, or through a CONNECT tunnel.
#[derive(Clone)]
pub struct TunnelConnector {
    proxy: Option<Rc<ProxyUrl>>,
    failure: ProxyFailure,
}

impl TunnelConnector {
    /// Connects through `proxy` when given, else directly; a tunnel failure is
    /// also stored in `failure`.
    pub fn new(proxy: Option<ProxyUrl>, failure: ProxyFailure) -> Self {
        Self {
            proxy: proxy.map(Rc::new),
            failure,
        }
    }
}

impl Service<ConnectInfo<Uri>> for TunnelConnector {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let host = req
            .hostname()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = req.port();
        let uri = req.request().clone();
        let proxy = self.proxy.clone();
        let failure = self.failure.clone();
        Box::pin(async move {
            let stream = match proxy {
                None => TcpStream::connect((host.as_str(), port))
                    .await
                    .map_err(ConnectError::Io)?,
                Some(proxy) => match tunnel(&proxy, &host, port).await {
                    Ok(s) => s,
                    Err(e) => {
                        let io = std::io::Error::other(e.to_string());
                        *failure.borrow_mut() = Some(e);
                        return Err(ConnectError::Io(io));
                    }
                },
            };
            Ok(Connection::new(uri, stream))
        })
    }
}

/// Opens a CONNECT tunnel to `host:port` through `proxy`.
pub async fn tunnel(proxy: &ProxyUrl, host: &str, port: u16) -> Result<TcpStream, ProxyError> {
    let shown = proxy.to_string();
    let target = authority(host, port);
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|source| ProxyError::Unreachable {
            proxy: shown.clone(),
            source,
        })?;
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.authorization {
        request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    request.push_str("User-Agent: wsplus\r\n\r\n");
    let bad = |reason: String| ProxyError::BadResponse {
        proxy: shown.clone(),
        reason,
    };
    let head = tokio::time::timeout(CONNECT_TIMEOUT, async {
        stream.write_all(request.as_bytes()).await?;
        read_head(&mut stream).await
    })
    .await
    .map_err(|_| bad(format!("no answer to CONNECT within {CONNECT_TIMEOUT:?}")))?
    .map_err(|e| bad(e.to_string()))?;
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/") {
        return Err(bad(format!("not an HTTP answer: {status_line:?}")));
    }
    match code {
        c if c.starts_with('2') && c.len() == 3 => Ok(stream),
        "407" | "401" => Err(ProxyError::AuthRequired {
            proxy: shown,
            status: code.to_owned(),
            hint: if proxy.has_credentials() {
                "credentials from the proxy URL were refused"
            } else {
                "put user:password in the proxy URL"
            },
        }),
        "403" => Err(ProxyError::Forbidden {
            proxy: shown,
            target,
        }),
        _ => Err(ProxyError::Refused {
            proxy: shown,
            target,
            status: status_line
                .split_once(' ')
                .map_or(status_line, |(_, s)| s)
                .to_owned(),
        }),
    }
}

/// Reads the response head byte by byte (never past it: the tunnel's first
/// bytes belong to TLS or the upgrade), bounded by [`MAX_RESPONSE_HEAD`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_RESPONSE_HEAD {
            return Err(std::io::Error::other("answer head too long"));
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "proxy closed the connection during CONNECT",
            ));
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::from_map(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        )
    }

    #[test]
    fn proxy_urls() {
        let p = ProxyUrl::parse("http://us%40er:p%3Ass@proxy.local:3128/").unwrap();
        assert_eq!(p.to_string(), "http://proxy.local:3128");
        assert_eq!(
            p.authorization.as_deref(),
            Some("Basic dXNAZXI6cDpzcw==") // "us@er:p:ss"
        );
        assert!(!format!("{p:?}").contains("p:ss"));
        let p = ProxyUrl::parse("127.0.0.1:8888").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 8888));
        assert_eq!(ProxyUrl::parse("http://[::1]").unwrap().port, 80);
        assert!(ProxyUrl::parse("https://p:1").is_err());
        assert!(ProxyUrl::parse("socks5://p:1").is_err());
        assert!(ProxyUrl::parse("http://").is_err());
    }

    #[test]
    fn no_proxy_entries() {
        let n = NoProxy::parse("localhost, .corp.example ,10.0.0.1,api.test:8443 [::1]:9");
        assert!(n.excludes("localhost", 80));
        assert!(n.excludes("LOCALHOST.", 1));
        assert!(!n.excludes("notlocalhost", 80));
        assert!(n.excludes("a.corp.example", 443));
        assert!(n.excludes("corp.example", 443));
        assert!(!n.excludes("xcorp.example", 443));
        assert!(n.excludes("10.0.0.1", 5));
        assert!(n.excludes("api.test", 8443));
        assert!(!n.excludes("api.test", 443));
        assert!(n.excludes("[::1]", 9));
        assert!(!n.excludes("::1", 10));
        assert!(NoProxy::parse("*").excludes("anything", 1));
        assert!(NoProxy::parse("*.x.org").excludes("a.x.org", 1));
        assert!(!NoProxy::parse("").excludes("h", 1));
    }

    #[test]
    fn configuration_first_then_environment_in_order() {
        let cfg = ProxySettings::default();
        let e = env(&[("HTTP_PROXY", "http://d:4"), ("http_proxy", "http://c:3")]);
        let r = ProxyRules::resolve(&cfg, &e).unwrap();
        assert_eq!(r.for_target("h", 1).unwrap().to_string(), "http://c:3");
        assert_eq!(r.source(), "http_proxy");
        let e = env(&[("HTTPS_PROXY", "http://b:2"), ("http_proxy", "http://c:3")]);
        let r = ProxyRules::resolve(&cfg, &e).unwrap();
        assert_eq!(r.for_target("h", 1).unwrap().to_string(), "http://b:2");
        let e = env(&[
            ("https_proxy", "http://a:1"),
            ("HTTPS_PROXY", "http://b:2"),
            ("NO_PROXY", "h"),
            ("no_proxy", "other"),
        ]);
        let r = ProxyRules::resolve(&cfg, &e).unwrap();
        assert_eq!(r.for_target("x", 1).unwrap().to_string(), "http://a:1");
        assert!(r.for_target("h", 1).is_none(), "NO_PROXY before no_proxy");
        let e = env(&[
            ("http_proxy", "http://c:3"),
            ("NO_PROXY", ""),
            ("no_proxy", "h"),
        ]);
        let r = ProxyRules::resolve(&cfg, &e).unwrap();
        assert!(r.for_target("h", 1).is_none(), "an empty NO_PROXY is unset");
        let cfg = ProxySettings {
            http_proxy: Some("http://u:${PW}@cfg:9".into()),
            no_proxy: Some("x".into()),
            ..Default::default()
        };
        let e = env(&[
            ("https_proxy", "http://a:1"),
            ("PW", "pw"),
            ("NO_PROXY", "h"),
        ]);
        let r = ProxyRules::resolve(&cfg, &e).unwrap();
        let p = r.for_target("h", 1).unwrap();
        assert_eq!(p.to_string(), "http://cfg:9");
        assert!(p.has_credentials());
        assert!(r.for_target("x", 1).is_none());
        assert_eq!(r.source(), "proxy.http_proxy");
        // Configured https_proxy before configured http_proxy.
        let cfg = ProxySettings {
            https_proxy: Some("http://first:1".into()),
            http_proxy: Some("http://second:2".into()),
            ..Default::default()
        };
        let r = ProxyRules::resolve(&cfg, &env(&[])).unwrap();
        assert_eq!(r.for_target("h", 1).unwrap().to_string(), "http://first:1");
        assert_eq!(r.source(), "proxy.https_proxy");
    }

    #[test]
    fn unusable_settings_name_their_source_not_their_value() {
        let e = env(&[("HTTPS_PROXY", "https://user:hunter2@p:1")]);
        let err = ProxyRules::resolve(&ProxySettings::default(), &e)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("HTTPS_PROXY: "), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let cfg = ProxySettings {
            https_proxy: Some("http://u:${UNSET_PW}@p:1".into()),
            ..Default::default()
        };
        let err = ProxyRules::resolve(&cfg, &env(&[]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "proxy.https_proxy: environment variable UNSET_PW is not set"
        );
    }
}
