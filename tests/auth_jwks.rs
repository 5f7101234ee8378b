//! jwks listeners against a fake JWKS endpoint with generated RSA and P-256
//! keys: RS256/ES256 accepted, algorithm confusion refused, key rotation,
//! unknown kids and their refetch rate limit, the endpoint down at start
//! (fail closed, not ready) and later (cached keys keep serving).

use std::time::Duration;

use common::auth::*;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use wsplus::settings::{AuthMode, ListenerSettings, Mode};

const PATH: &str = "/ws/jwks";

/// A message-mode jwks listener on `fake`, adjusted by `tweak`.
fn jwks_app(fake: &FakeJwks, tweak: impl FnOnce(&mut ListenerSettings)) -> TestApp {
    let mut s = base_settings();
    let mut l = listener(PATH);
    l.mode = Mode::Message;
    l.auth.mode = AuthMode::Jwks;
    l.auth.secret_env = None;
    l.auth.jwks_uri = Some(fake.uri());
    tweak(&mut l);
    s.listeners.push(l);
    TestApp::spawn(s)
}

fn rsa_a() -> Value {
    rsa_keys()[0].jwk("rsa-a")
}

fn ec_a() -> Value {
    ec_keys()[0].jwk("ec-a")
}

async fn ready(app: &TestApp) -> bool {
    let admin = app.admin;
    http_get(admin, "/readyz").await.0 == 200
}

async fn wait_ready(app: &TestApp) {
    wait_ready_within(app, WAIT).await;
}

async fn wait_ready_within(app: &TestApp, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while !ready(app).await {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects with `token`: `Ok(ws)` or the refusal's `reason` (asserting 401).
async fn try_token(app: &TestApp, token: &str) -> Result<Ws, String> {
    match Ws::try_connect(&app.ws_url(PATH, Some(token))).await {
        Ok(ws) => Ok(ws),
        Err(r) => {
            assert_eq!(r.status, 401, "{r:?}");
            assert!(!r.body.contains(token));
            let body: Value = serde_json::from_str(&r.body).unwrap();
            Err(body["reason"].as_str().unwrap().to_owned())
        }
    }
}

async fn accepted(app: &TestApp, token: &str) {
    match try_token(app, token).await {
        Ok(ws) => ws.close().await,
        Err(reason) => panic!("refused: {reason}"),
    }
}

async fn refused(app: &TestApp, token: &str, want: &str) {
    match try_token(app, token).await {
        Ok(_) => panic!("accepted, want {want}"),
        Err(reason) => assert_eq!(reason, want),
    }
}

#[tokio::test]
async fn rs256_and_es256_are_accepted_and_confusion_is_refused() {
    let fake = FakeJwks::start(FakeJwks::keys(vec![rsa_a(), ec_a()]));
    let app = jwks_app(&fake, |_| {});
    wait_ready(&app).await;
    let (rsa, ec) = (&rsa_keys()[0], &ec_keys()[0]);
    let c = claims("acme");

    // The verified identity reaches the message's _session.
    for token in [rsa.token("rsa-a", &c), ec.token("ec-a", &c)] {
        let mut ws = try_token(&app, &token).await.expect("accepted");
        ws.send_text(r#"{"hello": 1, "_session": {"tenantId": "forged"}}"#)
            .await;
        let got = ws.recv_json().await;
        assert_eq!(got["hello"], 1);
        assert_eq!(got["_session"]["tenantId"], "acme");
        assert_eq!(got["_session"]["subject"], "user-1");
        assert_eq!(got["_session"]["authStatus"], "verified");
        ws.close().await;
    }

    let pem = rsa.public_pem.as_bytes();
    let table: Vec<(&str, String, &str)> = vec![
        (
            "HS256 signed with the RSA public key PEM, kid of that key",
            sign(
                &json!({"alg": "HS256", "kid": "rsa-a"}),
                &c,
                &hmac(pem),
                Algorithm::HS256,
            ),
            "algorithm_not_allowed",
        ),
        (
            "HS256 signed with the RSA public key PEM, no kid",
            sign(&json!({"alg": "HS256"}), &c, &hmac(pem), Algorithm::HS256),
            "algorithm_not_allowed",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","kid":"rsa-a"}"#),
                b64(&serde_json::to_vec(&c).unwrap())
            ),
            "algorithm_not_allowed",
        ),
        (
            "PS256",
            sign(
                &json!({"alg": "PS256", "kid": "rsa-a"}),
                &c,
                &rsa.encoding,
                Algorithm::PS256,
            ),
            "algorithm_not_allowed",
        ),
        (
            "RS256 header naming the EC key",
            rsa.token("ec-a", &c),
            "algorithm_not_allowed",
        ),
        (
            "ES256 header naming the RSA key",
            ec.token("rsa-a", &c),
            "algorithm_not_allowed",
        ),
        (
            "embedded jwk of the attacker's key",
            sign(
                &json!({"alg": "RS256", "kid": "rsa-a", "jwk": rsa_keys()[1].jwk("rsa-a")}),
                &c,
                &rsa_keys()[1].encoding,
                Algorithm::RS256,
            ),
            "algorithm_not_allowed",
        ),
        (
            "jku to the attacker's key set",
            sign(
                &json!({"alg": "RS256", "kid": "rsa-a", "jku": "http://127.0.0.1:1/jwks"}),
                &c,
                &rsa_keys()[1].encoding,
                Algorithm::RS256,
            ),
            "algorithm_not_allowed",
        ),
        (
            "x5u",
            sign(
                &json!({"alg": "RS256", "kid": "rsa-a", "x5u": "http://127.0.0.1:1/cert"}),
                &c,
                &rsa.encoding,
                Algorithm::RS256,
            ),
            "algorithm_not_allowed",
        ),
        (
            "another key claiming a known kid",
            rsa_keys()[1].token("rsa-a", &c),
            "invalid_signature",
        ),
        (
            "another EC key claiming a known kid",
            ec_keys()[1].token("ec-a", &c),
            "invalid_signature",
        ),
        (
            "no kid",
            sign(
                &json!({"alg": "RS256"}),
                &c,
                &rsa.encoding,
                Algorithm::RS256,
            ),
            "unknown_key",
        ),
        (
            "expired",
            rsa.token("rsa-a", &with(c.clone(), json!({"exp": now() - 1}))),
            "expired",
        ),
        (
            "tenant missing",
            rsa.token("rsa-a", &with(c.clone(), json!({"tenant_id": null}))),
            "invalid_tenant",
        ),
    ];
    for (name, token, want) in &table {
        match try_token(&app, token).await {
            Ok(_) => panic!("{name}: accepted, want {want}"),
            Err(reason) => assert_eq!(&reason, want, "{name}"),
        }
    }
    // None of those asked the endpoint for keys: no refetch for a known kid.
    assert_eq!(fake.requests(), 1);
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_one_refetch() {
    let fake = FakeJwks::start(FakeJwks::keys(vec![rsa_a()]));
    let app = jwks_app(&fake, |_| {});
    wait_ready(&app).await;
    assert_eq!(fake.requests(), 1);
    let c = claims("acme");
    accepted(&app, &rsa_keys()[0].token("rsa-a", &c)).await;

    fake.set(FakeJwks::keys(vec![
        rsa_a(),
        rsa_keys()[1].jwk("rsa-b"),
        ec_keys()[1].jwk("ec-b"),
    ]));
    accepted(&app, &rsa_keys()[1].token("rsa-b", &c)).await;
    assert_eq!(fake.requests(), 2);
    // The refetch brought every new key: no second fetch for ec-b.
    accepted(&app, &ec_keys()[1].token("ec-b", &c)).await;
    accepted(&app, &rsa_keys()[0].token("rsa-a", &c)).await;
    assert_eq!(fake.requests(), 2);
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_10_s() {
    let fake = FakeJwks::start(FakeJwks::keys(vec![rsa_a()]));
    let app = jwks_app(&fake, |_| {});
    wait_ready(&app).await;
    let c = claims("acme");
    let rsa_b = &rsa_keys()[1];

    refused(&app, &rsa_b.token("nope-1", &c), "unknown_key").await;
    assert_eq!(fake.requests(), 2, "the first unknown kid refetches");
    let limited_at = std::time::Instant::now();
    for i in 0..5 {
        refused(&app, &rsa_b.token(&format!("nope-{i}"), &c), "unknown_key").await;
    }
    assert_eq!(fake.requests(), 2, "later unknown kids within 10 s do not");

    // The key appears; within the window it is still unknown, after it the
    // next handshake refetches and is accepted.
    fake.set(FakeJwks::keys(vec![rsa_a(), rsa_b.jwk("rsa-b")]));
    let token = rsa_b.token("rsa-b", &c);
    loop {
        match try_token(&app, &token).await {
            Ok(ws) => {
                ws.close().await;
                break;
            }
            Err(reason) => {
                assert_eq!(reason, "unknown_key");
                assert!(limited_at.elapsed() < Duration::from_secs(15));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    assert!(limited_at.elapsed() >= Duration::from_secs(9));
    assert_eq!(fake.requests(), 3);
}

#[tokio::test]
async fn jwks_down_at_start_fails_closed_until_it_answers() {
    let fake = FakeJwks::start(Answer::Status(503));
    let app = jwks_app(&fake, |_| {});
    fake.wait_requests(1, WAIT);
    assert!(!ready(&app).await);
    let admin = app.admin;
    let (status, body) = http_get(admin, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains(PATH), "{body}");

    let c = claims("acme");
    let token = rsa_keys()[0].token("rsa-a", &c);
    refused(&app, &token, "unknown_key").await;
    // An hs256 token for the jwks listener gets nowhere either.
    refused(
        &app,
        &common::token("acme", None, 60),
        "algorithm_not_allowed",
    )
    .await;

    // Retries (1 s doubling) pick the keys up once the endpoint answers.
    fake.set(FakeJwks::keys(vec![rsa_a()]));
    wait_ready_within(&app, Duration::from_secs(20)).await;
    accepted(&app, &token).await;
}

#[tokio::test]
async fn cached_keys_keep_serving_when_a_refresh_fails() {
    let failures = [
        ("500", Answer::Status(500)),
        ("404", Answer::Status(404)),
        ("not JSON", Answer::Huge(10)),
        ("over the size cap", Answer::Huge(300 * 1024)),
        (
            "no usable key",
            FakeJwks::keys(vec![json!({"kty": "oct", "kid": "x", "k": "AAAA"})]),
        ),
        ("not a JWKS", Answer::Keys(json!({"keys": "none"}))),
        ("no answer (timeout)", Answer::Hang),
    ];
    let c = claims("acme");
    let token = rsa_keys()[0].token("rsa-a", &c);
    for (name, failure) in failures {
        let fake = FakeJwks::start(FakeJwks::keys(vec![rsa_a()]));
        let app = jwks_app(&fake, |_| {});
        wait_ready(&app).await;
        fake.set(failure);
        // An unknown kid makes the server refetch, which fails.
        refused(&app, &rsa_keys()[1].token("rsa-b", &c), "unknown_key").await;
        assert_eq!(fake.requests(), 2, "{name}");
        accepted(&app, &token).await;
        assert!(ready(&app).await, "{name}: still ready");
    }
}

#[tokio::test]
async fn keys_are_refreshed_on_the_timer() {
    let fake = FakeJwks::start(FakeJwks::keys(vec![rsa_a()]));
    let app = jwks_app(&fake, |l| l.auth.jwks_refresh_s = 10);
    wait_ready(&app).await;
    let started = std::time::Instant::now();
    fake.set(FakeJwks::keys(vec![ec_a()]));
    let fake_ref = &fake;
    eventually_within(Duration::from_secs(15), "a timed refresh", async || {
        fake_ref.requests() >= 2
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(8));
    let c = claims("acme");
    // Accepted from the refreshed set (or, should the handshake overtake the
    // refresh, after the one refetch its unknown kid may cause).
    accepted(&app, &ec_keys()[0].token("ec-a", &c)).await;
    // The refreshed set replaced the old one: rsa-a is gone.
    refused(&app, &rsa_keys()[0].token("rsa-a", &c), "unknown_key").await;
    // Either rsa-a or ec-a caused one kid refetch; the other was rate-limited.
    assert_eq!(fake.requests(), 3);
}
