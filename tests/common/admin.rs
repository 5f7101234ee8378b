//! Admin API test client: raw HTTP/1.1 over a fresh TCP connection per request
//! (`Connection: close`), so tests control every header and byte of the body,
//! wrong content types and oversized bodies included.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsplus::settings::{Mode, Scope, Settings};

use crate::{base_settings, listener, TestApp, ADMIN_TOKEN, SECRET, WAIT};

/// Payload mode, tenant scope (the base listener).
pub const EVENTS: &str = "/ws/events";
/// Message mode, tenant scope.
pub const MSG: &str = "/ws/msg";
/// Message mode, global scope.
pub const GLOBAL: &str = "/ws/global";

/// Every authenticated admin route with the methods it serves (the
/// OpenAPI drift test and the auth test both walk it).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/v1/stats"),
    ("GET", "/admin/v1/listeners"),
    ("GET", "/admin/v1/tenants"),
    ("GET", "/admin/v1/tenants/acme/sessions"),
    ("DELETE", "/admin/v1/tenants/acme/sessions"),
    ("GET", "/admin/v1/sessions/nope"),
    ("DELETE", "/admin/v1/sessions/nope"),
    ("POST", "/admin/v1/publish"),
    ("GET", "/metrics"),
    ("GET", "/admin/v1/bridges"),
    ("GET", "/admin/v1/tenant-settings"),
    ("GET", "/admin/v1/tenants/acme/settings"),
    ("PUT", "/admin/v1/tenants/acme/settings"),
    ("PATCH", "/admin/v1/tenants/acme/settings"),
    ("DELETE", "/admin/v1/tenants/acme/settings"),
    ("GET", "/admin/v1/channels?listener=/ws/events"),
    ("GET", "/admin/v1/channels/news?listener=/ws/events"),
    ("GET", "/admin/v1/channels/news/history?listener=/ws/events"),
    ("POST", "/admin/v1/sessions/nope/subscriptions"),
    ("DELETE", "/admin/v1/sessions/nope/subscriptions/news"),
];

/// Base settings plus a message-mode tenant listener ([`MSG`]) and a
/// message-mode global listener ([`GLOBAL`]).
pub fn admin_settings() -> Settings {
    let mut s = base_settings();
    for (path, scope) in [(MSG, Scope::Tenant), (GLOBAL, Scope::Global)] {
        let mut l = listener(path);
        l.mode = Mode::Message;
        l.scope = scope;
        s.listeners.push(l);
    }
    s
}

/// The ids of `tenant`'s sessions, oldest first.
pub async fn session_ids(app: &TestApp, tenant: &str) -> Vec<String> {
    let res = get(app, &format!("/admin/v1/tenants/{tenant}/sessions")).await;
    res.expect_ok()
        .as_array()
        .expect("an array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect()
}

/// A request to the admin API; built with [`Req::new`] and its setters.
#[derive(Debug, Clone)]
pub struct Req {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    accept: Option<String>,
    body: Vec<u8>,
    chunked: bool,
}

impl Req {
    /// `method path` with the right bearer token and no body.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            authorization: Some(format!("Bearer {ADMIN_TOKEN}")),
            content_type: None,
            accept: None,
            body: Vec::new(),
            chunked: false,
        }
    }

    /// Replaces the `Authorization` header (`None`: no header at all).
    pub fn authorization(mut self, value: Option<&str>) -> Self {
        self.authorization = value.map(str::to_owned);
        self
    }

    /// Sets the `Accept` header (`None`: no header, the default).
    pub fn accept(mut self, value: Option<&str>) -> Self {
        self.accept = value.map(str::to_owned);
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, body: &Value) -> Self {
        self.raw_body(Some("application/json"), body.to_string().into_bytes())
    }

    /// Any body with any content type (`None`: no `Content-Type` header).
    pub fn raw_body(mut self, content_type: Option<&str>, body: Vec<u8>) -> Self {
        self.content_type = content_type.map(str::to_owned);
        self.body = body;
        self
    }

    /// Sends the body with `Transfer-Encoding: chunked` (no length known
    /// in advance) instead of `Content-Length`.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    fn head(&self, addr: SocketAddr) -> String {
        let framing = if self.chunked {
            "Transfer-Encoding: chunked".to_owned()
        } else {
            format!("Content-Length: {}", self.body.len())
        };
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{framing}\r\n",
            self.method, self.path
        );
        for (name, value) in [
            ("Authorization", &self.authorization),
            ("Content-Type", &self.content_type),
            ("Accept", &self.accept),
        ] {
            if let Some(v) = value {
                head.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        head.push_str("\r\n");
        head
    }

    /// Sends the request to `addr` and reads the whole response.
    pub async fn send_to(&self, addr: SocketAddr) -> Response {
        let mut s = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let mut bytes = self.head(addr).into_bytes();
        if self.chunked {
            bytes.extend_from_slice(format!("{:x}\r\n", self.body.len()).as_bytes());
            bytes.extend_from_slice(&self.body);
            bytes.extend_from_slice(b"\r\n0\r\n\r\n");
        } else {
            bytes.extend_from_slice(&self.body);
        }
        // The server may answer (413) and close before reading the whole body:
        // a failed write is fine as long as the response arrives.
        let _ = s.write_all(&bytes).await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
            .await
            .expect("response timed out");
        let res = Response::parse(&buf);
        res.assert_no_secrets();
        res
    }

    /// Sends the request to `app`'s admin port.
    pub async fn send(&self, app: &TestApp) -> Response {
        self.send_to(app.admin).await
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header (lower-cased name, value) pairs.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: String,
}

impl Response {
    fn parse(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Self {
            status,
            headers,
            body,
        }
    }

    /// Neither the JWT secret nor the admin token appears anywhere in the
    /// response (checked on every response these tests receive).
    pub fn assert_no_secrets(&self) {
        for secret in [SECRET, ADMIN_TOKEN] {
            assert!(!self.body.contains(secret), "secret in body: {}", self.body);
            assert!(
                !self.headers.iter().any(|(_, v)| v.contains(secret)),
                "secret in headers: {:?}",
                self.headers
            );
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// Asserts the status and that the body is `{"error": "<non-empty>"}`
    /// served as JSON; returns the message.
    pub fn expect_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.header("content-type"), Some("application/json"));
        let v = self.json();
        let obj = v.as_object().expect("error body is an object");
        assert_eq!(obj.len(), 1, "only an error key: {v}");
        let msg = obj["error"].as_str().expect("error is a string");
        assert!(!msg.is_empty());
        msg.to_owned()
    }

    /// Asserts a 200 and returns the JSON body.
    pub fn expect_ok(&self) -> Value {
        assert_eq!(self.status, 200, "body: {}", self.body);
        self.json()
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

/// `GET path` with the right token.
pub async fn get(app: &TestApp, path: &str) -> Response {
    Req::new("GET", path).send(app).await
}

/// `DELETE path` with the right token.
pub async fn delete(app: &TestApp, path: &str) -> Response {
    Req::new("DELETE", path).send(app).await
}

/// `POST path` with a JSON body and the right token.
pub async fn post_json(app: &TestApp, path: &str, body: &Value) -> Response {
    Req::new("POST", path).json(body).send(app).await
}
