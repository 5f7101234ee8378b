//! Handshake hardening on hs256 listeners (docs/protocol.md#handshake): every
//! way a token can be wrong is refused with 401 and the exact `reason`, before
//! any WebSocket frame, and the body never echoes the token.

use std::io::{Read, Write};
use std::time::Duration;

use common::auth::*;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsplus_actors::broker::Snapshot;

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "wsplus";

/// `/ws/events` (plain hs256), `/ws/strict` (issuer and audience required),
/// `/ws/leeway` (30 s leeway).
fn app() -> TestApp {
    let mut s = base_settings();
    let mut strict = listener("/ws/strict");
    strict.auth.issuer = Some(ISSUER.into());
    strict.auth.audience = Some(AUDIENCE.into());
    let mut leeway = listener("/ws/leeway");
    leeway.auth.leeway_s = 30;
    s.listeners.push(strict);
    s.listeners.push(leeway);
    TestApp::spawn(s)
}

fn hs(claims: &Value) -> String {
    sign(
        &json!({"alg": "HS256", "typ": "JWT"}),
        claims,
        &hmac(SECRET.as_bytes()),
        Algorithm::HS256,
    )
}

fn hs_header(header: Value, claims: &Value) -> String {
    sign(&header, claims, &hmac(SECRET.as_bytes()), Algorithm::HS256)
}

/// `message.signature`: a valid HS256 MAC over any (even malformed) message.
fn mac(message: &str) -> String {
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &hmac(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{sig}")
}

fn strict_claims() -> Value {
    with(claims("acme"), json!({"iss": ISSUER, "aud": AUDIENCE}))
}

/// Percent-encodes a token for the query string (tests put odd bytes in it).
fn q(token: &str) -> String {
    form_urlencoded::byte_serialize(token.as_bytes()).collect()
}

/// One row: where to connect, the token, and `None` (accepted) or the reason.
struct Case {
    name: &'static str,
    path: &'static str,
    token: String,
    refused: Option<&'static str>,
}

fn case(name: &'static str, path: &'static str, token: String, refused: &'static str) -> Case {
    Case {
        name,
        path,
        token,
        refused: Some(refused),
    }
}

fn ok(name: &'static str, path: &'static str, token: String) -> Case {
    Case {
        name,
        path,
        token,
        refused: None,
    }
}

fn cases() -> Vec<Case> {
    let e = "/ws/events";
    let valid = claims("acme");
    let rsa = &rsa_keys()[0];
    let t = now();
    let seg = |s: &str| b64(s.as_bytes());
    let good_payload = b64(&serde_json::to_vec(&valid).unwrap());
    vec![
        ok("valid HS256", e, hs(&valid)),
        case(
            "alg none, empty signature",
            e,
            format!("{}.{}.", seg(r#"{"alg":"none","typ":"JWT"}"#), good_payload),
            "algorithm_not_allowed",
        ),
        case(
            "alg None (case)",
            e,
            format!("{}.{}.", seg(r#"{"alg":"None"}"#), good_payload),
            "algorithm_not_allowed",
        ),
        case(
            "alg HS512 signed with the secret",
            e,
            sign(
                &json!({"alg": "HS512"}),
                &valid,
                &hmac(SECRET.as_bytes()),
                Algorithm::HS512,
            ),
            "algorithm_not_allowed",
        ),
        case(
            "RS256 token on an hs256 listener",
            e,
            rsa.token("k1", &valid),
            "algorithm_not_allowed",
        ),
        case(
            "jku header",
            e,
            hs_header(
                json!({"alg": "HS256", "jku": "https://evil.example/jwks.json"}),
                &valid,
            ),
            "algorithm_not_allowed",
        ),
        case(
            "x5u header",
            e,
            hs_header(
                json!({"alg": "HS256", "x5u": "https://evil.example/cert.pem"}),
                &valid,
            ),
            "algorithm_not_allowed",
        ),
        case(
            "embedded jwk header",
            e,
            hs_header(
                json!({"alg": "HS256", "jwk": {"kty": "oct", "k": b64(SECRET.as_bytes())}}),
                &valid,
            ),
            "algorithm_not_allowed",
        ),
        case(
            "x5c header",
            e,
            hs_header(json!({"alg": "HS256", "x5c": ["MIIB"]}), &valid),
            "algorithm_not_allowed",
        ),
        case(
            "crit header naming an extension the verifier does not implement",
            e,
            hs_header(json!({"alg": "HS256", "crit": ["exp"]}), &valid),
            "malformed",
        ),
        case(
            "header is not base64",
            e,
            format!("!!!.{good_payload}.AAAA"),
            "malformed",
        ),
        case(
            "padded header",
            e,
            format!("{}=.{good_payload}.AAAA", seg(r#"{"alg":"HS256"}"#)),
            "malformed",
        ),
        case(
            "payload is not base64",
            e,
            mac(&format!("{}.%%%{good_payload}", seg(r#"{"alg":"HS256"}"#))),
            "malformed",
        ),
        case(
            "signature is not base64",
            e,
            {
                let tok = hs(&valid);
                let (head, _) = tok.rsplit_once('.').unwrap();
                format!("{head}.***")
            },
            "malformed",
        ),
        case(
            "payload is not JSON",
            e,
            mac(&format!(
                "{}.{}",
                seg(r#"{"alg":"HS256"}"#),
                seg("not json")
            )),
            "malformed",
        ),
        case("one segment", e, "abcdefghijkl".into(), "malformed"),
        case(
            "two segments",
            e,
            {
                let tok = hs(&valid);
                tok.rsplit_once('.').unwrap().0.to_owned()
            },
            "malformed",
        ),
        case(
            "four segments",
            e,
            format!("{}.AAAA", hs(&valid)),
            "malformed",
        ),
        case(
            "header is not JSON",
            e,
            format!("{}.{good_payload}.AAAA", seg("not json at all")),
            "malformed",
        ),
        case(
            "header without alg",
            e,
            format!("{}.{good_payload}.AAAA", seg(r#"{"typ":"JWT"}"#)),
            "malformed",
        ),
        case(
            "kid is not a string",
            e,
            hs_header(json!({"alg": "HS256", "kid": 7}), &valid),
            "malformed",
        ),
        case(
            "just over 8 KiB",
            e,
            hs(&with(valid.clone(), json!({"pad": "x".repeat(8 * 1024)}))),
            "malformed",
        ),
        case(
            "wrong secret",
            e,
            sign(
                &json!({"alg": "HS256"}),
                &valid,
                &hmac(b"another-secret-entirely-0123456789"),
                Algorithm::HS256,
            ),
            "invalid_signature",
        ),
        case(
            "signature of another payload",
            e,
            {
                let a = hs(&valid);
                let b = hs(&claims("other"));
                let (a_msg, _) = a.rsplit_once('.').unwrap();
                format!("{a_msg}.{}", b.rsplit_once('.').unwrap().1)
            },
            "invalid_signature",
        ),
        case(
            "expired by 1 s",
            e,
            hs(&with(valid.clone(), json!({"exp": t - 1}))),
            "expired",
        ),
        case(
            "exp not a number",
            e,
            hs(&with(valid.clone(), json!({"exp": "tomorrow"}))),
            "malformed",
        ),
        ok(
            "no exp at all",
            e,
            hs(&with(valid.clone(), json!({"exp": null}))),
        ),
        case(
            "nbf in the future",
            e,
            hs(&with(valid.clone(), json!({"nbf": t + 60}))),
            "not_yet_valid",
        ),
        ok(
            "nbf in the past",
            e,
            hs(&with(valid.clone(), json!({"nbf": t - 60}))),
        ),
        ok(
            "within leeway: expired 20 s ago",
            "/ws/leeway",
            hs(&with(valid.clone(), json!({"exp": t - 20}))),
        ),
        case(
            "beyond leeway: expired 40 s ago",
            "/ws/leeway",
            hs(&with(valid.clone(), json!({"exp": t - 40}))),
            "expired",
        ),
        ok(
            "within leeway: nbf in 20 s",
            "/ws/leeway",
            hs(&with(valid.clone(), json!({"nbf": t + 20}))),
        ),
        case(
            "beyond leeway: nbf in 40 s",
            "/ws/leeway",
            hs(&with(valid.clone(), json!({"nbf": t + 40}))),
            "not_yet_valid",
        ),
        ok("iss and aud match", "/ws/strict", hs(&strict_claims())),
        ok(
            "aud as an array containing the audience",
            "/ws/strict",
            hs(&with(strict_claims(), json!({"aud": ["other", AUDIENCE]}))),
        ),
        case(
            "aud as an array without the audience",
            "/ws/strict",
            hs(&with(strict_claims(), json!({"aud": ["other", "more"]}))),
            "invalid_audience",
        ),
        case(
            "iss mismatch",
            "/ws/strict",
            hs(&with(strict_claims(), json!({"iss": "https://evil.test/"}))),
            "invalid_issuer",
        ),
        case(
            "iss missing",
            "/ws/strict",
            hs(&with(strict_claims(), json!({"iss": null}))),
            "invalid_issuer",
        ),
        case(
            "aud mismatch",
            "/ws/strict",
            hs(&with(strict_claims(), json!({"aud": "someone-else"}))),
            "invalid_audience",
        ),
        case(
            "aud missing",
            "/ws/strict",
            hs(&with(strict_claims(), json!({"aud": null}))),
            "invalid_audience",
        ),
        ok(
            "iss and aud are ignored where not configured",
            e,
            hs(&with(valid.clone(), json!({"iss": "x", "aud": "y"}))),
        ),
        case(
            "tenant claim missing",
            e,
            hs(&with(valid.clone(), json!({"tenant_id": null}))),
            "invalid_tenant",
        ),
        case(
            "tenant claim empty",
            e,
            hs(&with(valid.clone(), json!({"tenant_id": ""}))),
            "invalid_tenant",
        ),
        case(
            "tenant claim a number",
            e,
            hs(&with(valid.clone(), json!({"tenant_id": 42}))),
            "invalid_tenant",
        ),
        case(
            "tenant claim an array",
            e,
            hs(&with(valid.clone(), json!({"tenant_id": ["acme"]}))),
            "invalid_tenant",
        ),
        case(
            "tenant claim an object",
            e,
            hs(&with(valid.clone(), json!({"tenant_id": {"id": "acme"}}))),
            "invalid_tenant",
        ),
        case(
            "tenant claim 257 bytes",
            e,
            hs(&with(valid.clone(), json!({"tenant_id": "t".repeat(257)}))),
            "invalid_tenant",
        ),
        ok(
            "tenant claim 256 bytes",
            e,
            hs(&with(valid.clone(), json!({"tenant_id": "t".repeat(256)}))),
        ),
    ]
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason() {
    let app = app();
    let mut failures = Vec::new();
    for c in cases() {
        let url = format!("ws://{}{}?token={}", app.http, c.path, q(&c.token));
        match (Ws::try_connect(&url).await, c.refused) {
            (Ok(ws), None) => ws.close().await,
            (Ok(ws), Some(want)) => {
                failures.push(format!("{}: accepted, want {want}", c.name));
                ws.close().await;
            }
            (Err(r), None) => failures.push(format!("{}: refused {r:?}", c.name)),
            (Err(r), Some(want)) => {
                let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                if r.status != 401 || body["reason"] != want || !body["error"].is_string() {
                    failures.push(format!(
                        "{}: got {} {}, want 401 {want}",
                        c.name, r.status, r.body
                    ));
                }
                if body.as_object().map(|o| o.len()) != Some(2) {
                    failures.push(format!("{}: body has extra fields: {}", c.name, r.body));
                }
                for part in c.token.split('.').filter(|p| p.len() >= 4) {
                    if r.body.contains(part) {
                        failures.push(format!("{}: body echoes the token: {}", c.name, r.body));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every refusal is counted under its reason (stats and metrics).
    let mut want: std::collections::BTreeMap<&str, u64> = Default::default();
    for c in cases() {
        if let Some(r) = c.refused {
            *want.entry(r).or_default() += 1;
        }
    }
    for (reason, n) in want {
        assert_eq!(app.rejected(reason), n, "rejected[{reason}]");
    }
    app.wait_snapshot(Snapshot::default()).await;
}

#[tokio::test]
async fn a_token_anywhere_but_the_query_parameter_is_missing() {
    let app = app();
    let token = token("acme", None, 3600);
    let want_missing = |r: Result<Ws, Refused>| match r {
        Err(r) => {
            assert_eq!(r.status, 401, "{r:?}");
            let body: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["reason"], "missing_token");
            assert!(!r.body.contains(&token));
        }
        Ok(_) => panic!("accepted without a token parameter"),
    };

    let mut req = app
        .ws_url("/ws/events", None)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    want_missing(Ws::try_connect_request(req).await);

    let mut req = app
        .ws_url("/ws/events", None)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Cookie", format!("token={token}").parse().unwrap());
    want_missing(Ws::try_connect_request(req).await);

    for query in [
        format!("access_token={token}"),
        format!("Token={token}"),
        "token=".to_owned(),
        String::new(),
    ] {
        let url = format!("ws://{}/ws/events?{query}", app.http);
        want_missing(Ws::try_connect(&url).await);
    }
}

/// Reads one HTTP response (head + Content-Length body) from a raw socket;
/// `None` when the server closed the connection first.
fn read_response(s: &mut std::net::TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0, "connection closed inside the body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            return Some((head, body));
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) if buf.is_empty() => return None,
            Ok(0) => panic!("connection closed inside a response head"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Sends a WebSocket upgrade request for `target` on a raw socket and returns
/// the response; with `probe`, also what the same connection does next when
/// sent a masked WebSocket text frame: `None` (closed) or the HTTP response it
/// got.
async fn raw_upgrade(
    http: std::net::SocketAddr,
    target: String,
    probe: bool,
) -> ((String, String), Option<(String, String)>) {
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let first = read_response(&mut s).expect("a response");
        if !probe {
            return (first, None);
        }
        // A masked text frame "hi": a WebSocket peer would take it as data.
        let _ = s.write_all(&common::limits::client_frame(0x81, b"hi"));
        let next = read_response(&mut s);
        (first, next)
    })
    .await
    .unwrap()
}

/// A refused upgrade is a plain HTTP response: no 101, no Sec-WebSocket-Accept;
/// a frame sent afterwards is never taken as WebSocket data.
#[tokio::test]
async fn refused_upgrades_never_switch_protocols() {
    let app = app();
    let bad = sign(
        &json!({"alg": "HS256"}),
        &claims("acme"),
        &hmac(b"wrong-secret-0123456789-0123456789"),
        Algorithm::HS256,
    );
    for (target, reason) in [
        (format!("/ws/events?token={bad}"), "invalid_signature"),
        ("/ws/events".to_owned(), "missing_token"),
        (
            format!("/ws/strict?token={}", token("acme", None, 60)),
            "invalid_issuer",
        ),
    ] {
        let ((head, body), next) = raw_upgrade(app.http, target, true).await;
        assert!(head.starts_with("HTTP/1.1 401"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("sec-websocket-accept"), "{head}");
        assert!(!lower.contains("upgrade: websocket"), "{head}");
        assert!(lower.contains("content-type: application/json"), "{head}");
        assert!(!body.contains(&bad) && !head.contains(&bad));
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["reason"],
            reason
        );
        if let Some((head, _)) = next {
            assert!(head.starts_with("HTTP/1.1 4"), "frame answered as: {head}");
        }
    }
    app.wait_snapshot(Snapshot::default()).await;
}

/// Oversized tokens are refused cheaply and the server stays responsive: up to
/// the HTTP layer's 64 KiB limit on the request target, with 401 `malformed`
/// (refused on length alone); beyond it, with 400 by the HTTP layer before any
/// handler runs (docs/decisions.md).
#[tokio::test]
async fn a_64_kib_token_is_refused_cheaply() {
    let app = app();
    let token_of = |len: usize| {
        let t = hs(&with(
            claims("acme"),
            json!({"pad": "x".repeat(len * 3 / 4)}),
        ));
        assert!(t.len() >= len);
        t
    };
    let (just_under, huge) = (token_of(60 * 1024), token_of(64 * 1024));
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let ((head, body), _) =
            raw_upgrade(app.http, format!("/ws/events?token={just_under}"), false).await;
        assert!(head.starts_with("HTTP/1.1 401"), "{head}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["reason"], "malformed");
        let ((head, body), _) =
            raw_upgrade(app.http, format!("/ws/events?token={huge}"), false).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        assert!(!body.contains("xxxx"));
    }
    // 20 refusals well within a second each, even in a debug build.
    assert!(started.elapsed() < Duration::from_secs(20));
    let mut ws = app.connect("/ws/events", "acme").await;
    ws.send_text("still here").await;
    assert_eq!(ws.recv_text().await, "still here");
    ws.close().await;
    app.wait_snapshot(Snapshot::default()).await;
}

/// `tenant.from = "static"` on an hs256 listener: the token must verify, but
/// the tenant is the listener's, whatever the token claims.
#[tokio::test]
async fn a_static_tenant_overrides_any_claim() {
    let mut s = base_settings();
    let mut l = listener("/ws/static");
    l.mode = wsplus::settings::Mode::Message;
    l.tenant.from = wsplus::settings::TenantFrom::Static;
    l.tenant.static_id = Some("fixed".into());
    s.listeners.push(l);
    let app = TestApp::spawn(s);
    for claims in [
        claims("acme"),
        with(claims("acme"), json!({"tenant_id": null, "sub": null})),
    ] {
        let mut ws = Ws::connect(&app.ws_url("/ws/static", Some(&hs(&claims)))).await;
        ws.send_text("{}").await;
        let got = ws.recv_json().await;
        assert_eq!(got["_session"]["tenantId"], "fixed");
        assert_eq!(got["_session"]["subject"], claims["sub"]);
        assert_eq!(got["_session"]["authStatus"], "verified");
        ws.close().await;
    }
    let bad = sign(
        &json!({"alg": "HS256"}),
        &claims("acme"),
        &hmac(b"wrong-secret-0123456789-0123456789"),
        Algorithm::HS256,
    );
    let r = Ws::try_connect(&app.ws_url("/ws/static", Some(&bad)))
        .await
        .err()
        .expect("a static tenant does not waive the signature");
    assert!(r.body.contains("invalid_signature"), "{r:?}");
}

/// `leeway_s` to the second: each token is minted right before its handshake,
/// and every row holds whether or not the clock ticks in between (`exp` must
/// be in the future: `exp + leeway == now` is expired, `nbf + leeway == now`
/// is valid).
#[tokio::test]
async fn leeway_boundaries_to_the_second() {
    let app = app();
    // (path, claim changes relative to now, accepted?)
    type Row = (&'static str, fn(i64) -> Value, bool);
    let rows: [Row; 8] = [
        ("/ws/events", |t| json!({"exp": t + 2}), true),
        ("/ws/events", |t| json!({"exp": t}), false),
        ("/ws/events", |t| json!({"nbf": t}), true),
        ("/ws/events", |t| json!({"nbf": t + 2}), false),
        ("/ws/leeway", |t| json!({"exp": t - 28}), true),
        ("/ws/leeway", |t| json!({"exp": t - 30}), false),
        ("/ws/leeway", |t| json!({"nbf": t + 29}), true),
        ("/ws/leeway", |t| json!({"nbf": t + 32}), false),
    ];
    for (path, change, accept) in rows {
        let changes = change(now());
        let token = hs(&with(claims("acme"), changes.clone()));
        match Ws::try_connect(&app.ws_url(path, Some(&token))).await {
            Ok(ws) => {
                assert!(accept, "{path} {changes}: accepted");
                ws.close().await;
            }
            Err(r) => {
                assert!(!accept, "{path} {changes}: refused {r:?}");
                let want = if changes.get("exp").is_some() {
                    "expired"
                } else {
                    "not_yet_valid"
                };
                assert!(r.body.contains(want), "{path} {changes}: {r:?}");
            }
        }
    }
}
