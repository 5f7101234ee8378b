//! docs/protocol.md#handshake row by row, in its order: a request that fails
//! several checks is refused by the first one, with that row's status and a
//! JSON body of exactly `{"error", "reason"}`.

use common::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ORIGIN: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.com";

/// `/ws/events` with an origin list and a cap of one session per tenant.
fn app() -> TestApp {
    let mut s = base_settings();
    s.listeners[0].allowed_origins = vec![ORIGIN.into()];
    s.listeners[0].session.max_connections_per_tenant = 1;
    TestApp::spawn(s)
}

/// An HS256 token with exactly `claims`, signed with `secret`.
fn signed(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Opens `path_query` with `origin`; the refusal's status and parsed body.
async fn refusal(app: &TestApp, path_query: &str, origin: &str) -> (u16, Value) {
    let mut req = format!("ws://{}{path_query}", app.http)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", origin.parse().expect("header value"));
    let r = Ws::try_connect_request(req)
        .await
        .err()
        .unwrap_or_else(|| panic!("{path_query} with Origin {origin} was accepted"));
    let body: Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", r.body));
    (r.status, body)
}

#[tokio::test]
async fn each_row_refuses_in_the_design_order_with_its_status_and_reason() {
    let app = app();
    let held = {
        let mut req = format!(
            "ws://{}/ws/events?token={}",
            app.http,
            token("acme", None, 600)
        )
        .into_client_request()
        .unwrap();
        req.headers_mut().insert("Origin", ORIGIN.parse().unwrap());
        Ws::try_connect_request(req)
            .await
            .expect("first session of acme")
    };
    // Every token below also fails the rows after its own.
    let forged = signed(&json!({"exp": now() - 60}), "not-the-secret");
    let expired = signed(&json!({"exp": now() - 60}), SECRET);
    let tenantless = signed(&json!({"exp": now() + 600}), SECRET);
    let at_cap = token("acme", None, 600);
    let rows: [(&str, String, &str, u16, &str); 7] = [
        ("no listener", "/ws/nowhere".into(), EVIL, 404, "not_found"),
        ("origin", "/ws/events".into(), EVIL, 403, "origin"),
        (
            "no token",
            "/ws/events".into(),
            ORIGIN,
            401,
            "missing_token",
        ),
        (
            "signature",
            format!("/ws/events?token={forged}"),
            ORIGIN,
            401,
            "invalid_signature",
        ),
        (
            "exp",
            format!("/ws/events?token={expired}"),
            ORIGIN,
            401,
            "expired",
        ),
        (
            "tenant",
            format!("/ws/events?token={tenantless}"),
            ORIGIN,
            401,
            "invalid_tenant",
        ),
        (
            "cap",
            format!("/ws/events?token={at_cap}"),
            ORIGIN,
            429,
            "tenant_limit",
        ),
    ];
    for (row, path_query, origin, status, reason) in rows {
        let (got, body) = refusal(&app, &path_query, origin).await;
        assert_eq!(got, status, "{row}: {body}");
        assert_eq!(body["reason"], reason, "{row}: {body}");
        assert!(body["error"].is_string(), "{row}: {body}");
        assert_eq!(
            body.as_object().map(|o| o.len()),
            Some(2),
            "{row}: exactly error and reason: {body}"
        );
        assert_eq!(app.rejected(reason), 1, "{row}: counted once as {reason}");
    }
    held.close().await;
}

/// An `invalid_tenant` body names the claim the listener reads the tenant
/// from, and nothing of the token.
#[tokio::test]
async fn invalid_tenant_names_the_expected_claim() {
    let mut s = base_settings();
    s.listeners[0].tenant.claim = "org_id".into();
    let app = TestApp::spawn(s);
    let wrong_claim = signed(&json!({"exp": now() + 600, "tenant_id": "acme"}), SECRET);
    let (status, body) = refusal(&app, &format!("/ws/events?token={wrong_claim}"), ORIGIN).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({
            "error": "invalid tenant: the token needs claim \"org_id\" (a non-empty string)",
            "reason": "invalid_tenant",
        })
    );
}

/// Sends an upgrade request for tenant `acme` (`GET <path> <http_version>`
/// with `headers`) on a new connection. Reads a 101's head, or the whole of
/// any other answer (the server closes after it).
async fn raw_exchange(app: &TestApp, http_version: &str, headers: &[(&str, &str)]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let path = format!("/ws/events?token={}", token("acme", Some("u"), 3600));
    let mut req = format!("GET {path} {http_version}\r\nHost: {}\r\n", app.http);
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = tokio::net::TcpStream::connect(app.http).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("the server kept the connection open")
            .expect("read");
        got.extend_from_slice(&buf[..n]);
        let switched = got.starts_with(b"HTTP/1.1 101") && got.windows(4).any(|w| w == b"\r\n\r\n");
        if n == 0 || switched {
            return String::from_utf8_lossy(&got).into_owned();
        }
    }
}

/// RFC 6455 §4.2: version 13 only (426 naming it), a key that is the base64
/// of 16 bytes, HTTP/1.1 or later; a valid token does not make up for them.
#[tokio::test]
async fn the_upgrade_request_follows_rfc_6455() {
    let app = TestApp::spawn(base_settings());
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    let upgrade = |version: &'static str, key: &'static str| {
        vec![
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", version),
            ("Sec-WebSocket-Key", key),
        ]
    };
    let ok = raw_exchange(&app, "HTTP/1.1", &upgrade("13", KEY)).await;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    for version in ["7", "8", "12", "14", "13, 8"] {
        let got = raw_exchange(&app, "HTTP/1.1", &upgrade(version, KEY)).await;
        assert!(got.starts_with("HTTP/1.1 426"), "{version}: {got}");
        assert!(
            got.to_ascii_lowercase()
                .contains("sec-websocket-version: 13\r\n"),
            "{got}"
        );
        assert!(got.contains("\"reason\":\"unsupported_version\""), "{got}");
    }
    for key in [
        "",
        "abc",
        "dGhlIHNhbXBsZSBub25j",
        "not base64 at all!!!!!!=",
    ] {
        let got = raw_exchange(&app, "HTTP/1.1", &upgrade("13", key)).await;
        assert!(got.starts_with("HTTP/1.1 400"), "{key:?}: {got}");
        assert!(got.contains("\"reason\":\"not_websocket\""), "{got}");
    }
    let got = raw_exchange(&app, "HTTP/1.0", &upgrade("13", KEY)).await;
    assert!(got.contains(" 400 "), "{got}");
    assert!(!got.contains(" 101 "), "{got}");
    assert_eq!(app.rejected("unsupported_version"), 5);
    assert_eq!(app.rejected("not_websocket"), 5);
}
