//! Demo mode over plain HTTP: `/demo` and `/demo/token` exist only with
//! `[server] demo = true`; the token route validates its input, mints tokens
//! the chosen listener accepts (with `mode=channels`, the channels view's
//! listener), and answers JSON errors. (The page itself, its channels view
//! included, is driven in a real browser by `tests/browser_e2e.rs`.)

use common::auth::claims_of;
use common::{base_settings, listener, open_listener, TestApp, Ws};
use serde_json::Value;
use wsplus::settings::{Mode, Scope, Settings};

/// GET `url`: (status, headers, body).
async fn get(url: &str) -> (u16, awc::http::header::HeaderMap, String) {
    let mut resp = awc::Client::default()
        .get(url)
        .send()
        .await
        .expect("request");
    let body = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        resp.headers().clone(),
        String::from_utf8(body.to_vec()).expect("utf-8"),
    )
}

/// GET a JSON route: (status, Cache-Control, body).
async fn get_json(url: &str) -> (u16, String, Value) {
    let (status, headers, body) = get(url).await;
    let cache = headers
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let json = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (status, cache, json)
}

/// Demo on, a payload-mode listener first and a message-mode one second.
fn demo_settings() -> Settings {
    let mut s = base_settings();
    s.server.demo = true;
    let mut msg = listener("/ws/msg");
    msg.mode = Mode::Message;
    s.listeners = vec![listener("/ws/events"), msg];
    s
}

#[actix_rt::test]
async fn demo_routes_are_404_unless_demo_mode_is_on() {
    let app = TestApp::spawn(base_settings());
    let base = format!("http://{}", app.http);
    for path in ["/demo", "/demo/token?tenant=acme&sub=a&ttl=60"] {
        let (status, _, body) = get(&format!("{base}{path}")).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            !body.contains("token\":\"ey"),
            "{path} leaked a token: {body}"
        );
    }
    let (status, _, _) = get(&format!("{base}/wsplus.js")).await;
    assert_eq!(
        status, 200,
        "the client is served with or without demo mode"
    );
}

#[actix_rt::test]
async fn demo_page_is_served_in_demo_mode() {
    let app = TestApp::spawn(demo_settings());
    let (status, headers, body) = get(&format!("http://{}/demo", app.http)).await;
    assert_eq!(status, 200);
    let ctype = headers.get("content-type").unwrap().to_str().unwrap();
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(body.contains("import { WsPlusClient, WsPlusChannels } from '/wsplus.js'"));
    assert!(
        body.contains("mode: 'channels'"),
        "the channels view asks for its token"
    );
    assert!(body.contains("/demo/token?"));
    assert!(body.contains("development only"), "the page warns");
}

#[actix_rt::test]
async fn demo_token_is_accepted_by_the_first_message_mode_listener() {
    let app = TestApp::spawn(demo_settings());
    let (status, cache, body) = get_json(&format!(
        "http://{}/demo/token?tenant=acme&sub=alice&ttl=60",
        app.http
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache, "no-store");
    assert_eq!(body["url"], format!("ws://{}/ws/msg", app.http));
    assert_eq!(body["listener"], "/ws/msg");
    assert_eq!(body["mode"], "message");
    assert_eq!(body["expires_in"], 60);
    let token = body["token"].as_str().expect("token");
    let c = claims_of(token);
    assert_eq!(c["tenant_id"], "acme");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 60);

    let url = format!("{}?token={token}", body["url"].as_str().unwrap());
    let mut ws = Ws::connect(&url).await;
    ws.send_text(r#"{"text":"hi"}"#).await;
    let got = ws.recv_json().await;
    assert_eq!(got["text"], "hi");
    assert_eq!(got["_session"]["tenantId"], "acme");
    assert_eq!(got["_session"]["subject"], "alice");
    assert_eq!(got["_session"]["authStatus"], "verified");
    ws.close().await;
}

#[actix_rt::test]
async fn demo_token_defaults_and_expiry() {
    let app = TestApp::spawn(demo_settings());
    let (status, _, body) =
        get_json(&format!("http://{}/demo/token?tenant=globex", app.http)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 300, "default ttl");
    assert!(claims_of(body["token"].as_str().unwrap())
        .get("sub")
        .is_none());

    // A 1 s token really is short-lived: the broker closes with 4001 at exp.
    let (_, _, body) = get_json(&format!(
        "http://{}/demo/token?tenant=globex&sub=carol&ttl=1",
        app.http
    ))
    .await;
    let url = format!(
        "{}?token={}",
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap()
    );
    let mut ws = Ws::connect(&url).await;
    assert_eq!(ws.recv_close().await.0, 4001);
}

#[actix_rt::test]
async fn demo_token_refuses_bad_input_with_json_errors() {
    let app = TestApp::spawn(demo_settings());
    let long = "x".repeat(65);
    for (query, field) in [
        ("", "tenant"),
        ("tenant=", "tenant"),
        ("sub=alice", "tenant"),
        ("tenant=a%20b", "tenant"),
        ("tenant=%22%3E%3Cscript%3E", "tenant"),
        (&format!("tenant={long}"), "tenant"),
        ("tenant=acme&sub=a/b", "sub"),
        ("tenant=acme&ttl=0", "ttl"),
        ("tenant=acme&ttl=3601", "ttl"),
        ("tenant=acme&ttl=ten", "ttl"),
        ("tenant=acme&ttl=-5", "ttl"),
        ("tenant=acme&tenant=globex", "at most once"),
        ("tenant=acme&mode=payload", "mode"),
        ("tenant=acme&mode=channels&mode=message", "at most once"),
    ] {
        let (status, cache, body) =
            get_json(&format!("http://{}/demo/token?{query}", app.http)).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(cache, "no-store");
        let err = body["error"].as_str().expect("error string");
        assert!(err.contains(field), "{query}: {err}");
        assert!(body.get("token").is_none());
        assert!(!err.contains("script"), "input is not echoed: {err}");
    }
    let (_, _, body) = get_json(&format!("http://{}/demo/token?tenant=a&ttl=3600", app.http)).await;
    assert_eq!(body["expires_in"], 3600, "the bound itself is allowed");
}

#[actix_rt::test]
async fn demo_token_for_the_channels_view() {
    // No channels listener: mode=channels is a clear 503; the default still works.
    let app = TestApp::spawn(demo_settings());
    let (status, cache, body) = get_json(&format!(
        "http://{}/demo/token?tenant=acme&mode=channels",
        app.http
    ))
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(cache, "no-store");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("mode = \"channels\""),
        "{body}"
    );
    assert!(body.get("token").is_none());

    // With one, after a message-mode listener: the token and URL are for it.
    let mut s = demo_settings();
    s.listeners.push(common::channels::channels_listener(
        common::channels::CHANNELS,
        Scope::Tenant,
        Default::default(),
    ));
    let app = TestApp::spawn(s);
    let (status, _, body) = get_json(&format!(
        "http://{}/demo/token?tenant=acme&sub=alice&ttl=60&mode=channels",
        app.http
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["url"],
        format!("ws://{}{}", app.http, common::channels::CHANNELS)
    );
    assert_eq!(body["listener"], common::channels::CHANNELS);
    assert_eq!(body["mode"], "channels");
    let token = body["token"].as_str().expect("token");
    let ch = common::channels::Chan::connect(&app, common::channels::CHANNELS, token).await;
    assert_eq!(ch.connected["session"]["tenantId"], "acme");
    assert_eq!(ch.connected["session"]["subject"], "alice");
    let (_, _, body) = get_json(&format!(
        "http://{}/demo/token?tenant=acme&mode=message",
        app.http
    ))
    .await;
    assert_eq!(body["listener"], "/ws/msg", "mode=message is the default");
}

#[actix_rt::test]
async fn demo_token_without_an_hs256_listener_is_a_clear_error() {
    let mut s = base_settings();
    s.server.demo = true;
    s.listeners = vec![open_listener("/ws/open", "acme")];
    let app = TestApp::spawn(s);
    let (status, _, body) = get_json(&format!("http://{}/demo/token?tenant=acme", app.http)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("hs256"), "{body}");
    let (status, _, _) = get(&format!("http://{}/demo", app.http)).await;
    assert_eq!(status, 200, "the page itself is still served");
}

#[actix_rt::test]
async fn demo_token_falls_back_to_a_payload_listener_and_carries_iss_aud() {
    let mut s = base_settings();
    s.server.demo = true;
    let mut l = listener("/ws/events");
    l.auth.issuer = Some("https://issuer.test/".into());
    l.auth.audience = Some("wsplus".into());
    l.tenant.claim = "org".into();
    s.listeners = vec![open_listener("/ws/open", "x"), l];
    let app = TestApp::spawn(s);
    let (status, _, body) = get_json(&format!(
        "http://{}/demo/token?tenant=acme&sub=bob&ttl=30",
        app.http
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["listener"], "/ws/events");
    assert_eq!(body["mode"], "payload");
    let token = body["token"].as_str().unwrap();
    let c = claims_of(token);
    assert_eq!(c["org"], "acme");
    assert_eq!(c["iss"], "https://issuer.test/");
    assert_eq!(c["aud"], "wsplus");
    let mut ws = Ws::connect(&app.ws_url("/ws/events", Some(token))).await;
    ws.send_text("ping").await;
    assert_eq!(ws.recv_text().await, "ping");
    ws.close().await;
}
