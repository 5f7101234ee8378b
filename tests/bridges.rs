//! Bridges between two real wsplus servers on port 0: an upstream and a local
//! one whose `[[bridges]]` entry dials it. Covers `into` (with the bridge's
//! `_session`), `from`, the no-echo rule with both directions on one tenant,
//! reconnects, refused handshakes, heartbeats and the admin view.

use std::collections::HashMap;

use common::bridge::*;
use common::client::{test_pki, FakeServer, Script, Tinyproxy};
use common::*;
use serde_json::json;
use wsplus::server::Sockets;
use wsplus::settings::{BridgeAuth, BridgeSettings, Mode};

/// An upstream with one listener at [`PATH`] in `mode`.
fn upstream(mode: Mode) -> TestApp {
    TestApp::spawn(settings(mode))
}

#[actix_rt::test]
async fn into_publishes_with_the_bridge_session() {
    let up = upstream(Mode::Payload);
    let mut b = bridge(&up.ws_url(PATH, None));
    b.into = Some(local_end());
    let local = local_with(settings(Mode::Message), vec![b]);
    let mut client = local.connect(PATH, TENANT).await;
    let mut other = local.connect(PATH, "other").await;
    let mut hq = up.connect(PATH, UP_TENANT).await;
    wait_sessions(&up, 2).await;

    hq.send_text(r#"{"k":1,"_session":"forged"}"#).await;
    let got = client.recv_json().await;
    assert_eq!(
        got,
        json!({"k": 1, "_session": {
            "type": "bridge", "id": null, "tenantId": TENANT, "subject": "hq",
            "authStatus": "bridge", "routingScope": "tenant"
        }})
    );
    hq.send_text("not json").await;
    let got = client.recv_json().await;
    assert_eq!(got["payload"], "not json");
    assert_eq!(got["_session"]["type"], "bridge");
    // Another tenant got nothing: its own message is the next thing it sees.
    other.send_text("mine").await;
    assert_eq!(other.recv_json().await["payload"], "mine");
}

#[actix_rt::test]
async fn into_payload_mode_delivers_the_payload_alone() {
    let up = upstream(Mode::Message);
    let mut b = bridge(&up.ws_url(PATH, None));
    b.into = Some(local_end());
    let local = local_with(settings(Mode::Payload), vec![b]);
    let mut client = local.connect(PATH, TENANT).await;
    let mut hq = up.connect(PATH, UP_TENANT).await;
    wait_sessions(&up, 2).await;
    hq.send_text("plain").await;
    // The upstream (message mode) wraps and stamps; the local payload-mode
    // listener delivers the frame as the bridge received it.
    let got: serde_json::Value = serde_json::from_str(&client.recv_text().await).unwrap();
    assert_eq!(got["payload"], "plain");
    assert_eq!(got["_session"]["tenantId"], UP_TENANT);
}

/// An upstream (listener in `up_mode`) and a local broker (listener in
/// `local_mode`) whose bridge, dialling the upstream and shaped by
/// `configure`, joins [`TENANT`]; with a local client and an upstream client
/// (`hq`), once each side counts its client and the bridge.
async fn linked(
    up_mode: Mode,
    local_mode: Mode,
    configure: impl FnOnce(&mut BridgeSettings),
) -> (TestApp, TestApp, Ws, Ws) {
    let up = upstream(up_mode);
    let mut b = bridge(&up.ws_url(PATH, None));
    configure(&mut b);
    let local = local_with(settings(local_mode), vec![b]);
    let client = local.connect(PATH, TENANT).await;
    let hq = up.connect(PATH, UP_TENANT).await;
    // Local: the client and the bridge's membership; upstream: hq and the bridge.
    wait_sessions(&local, 2).await;
    wait_sessions(&up, 2).await;
    (up, local, client, hq)
}

#[actix_rt::test]
async fn from_forwards_local_messages_upstream() {
    let (_up, _local, mut client, mut hq) = linked(Mode::Payload, Mode::Message, |b| {
        b.from = Some(local_end());
        b.mode = Mode::Payload;
    })
    .await;

    client.send_text(r#"{"a":1}"#).await;
    // Payload mode bridge: the local `_session` stays home.
    assert_eq!(hq.recv_text().await, r#"{"a":1}"#);
    client.send_text("words").await;
    assert_eq!(hq.recv_text().await, "words");
    // Upstream frames are not published locally by a from-only bridge.
    hq.send_text("down?").await;
    assert_eq!(hq.recv_text().await, "down?");
    let _ = client.recv_json().await; // its own {"a":1}
    let _ = client.recv_json().await; // its own "words"
    client.send_text("sentinel").await;
    assert_eq!(client.recv_json().await["payload"], "sentinel");
}

/// Both directions on one tenant, for both listener modes: one message on
/// either side is delivered exactly once on each side, and nothing comes
/// back (each check ends with a sentinel sent after the message).
#[actix_rt::test]
async fn both_directions_do_not_echo() {
    for mode in [Mode::Payload, Mode::Message] {
        let (_up, local, mut client, mut hq) = linked(mode, mode, |b| {
            b.into = Some(local_end());
            b.from = Some(local_end());
            b.mode = mode;
        })
        .await;
        let text_of = |raw: String| match mode {
            Mode::Payload => raw,
            Mode::Message | Mode::Channels => {
                let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
                v["payload"].as_str().unwrap().to_owned()
            }
        };

        // Local → upstream; the upstream sends it back to the bridge too.
        client.send_text("m1").await;
        assert_eq!(text_of(client.recv_text().await), "m1", "{mode:?}");
        assert_eq!(text_of(hq.recv_text().await), "m1", "{mode:?}");
        hq.send_text("s1").await;
        assert_eq!(text_of(hq.recv_text().await), "s1", "{mode:?}");
        assert_eq!(
            text_of(client.recv_text().await),
            "s1",
            "{mode:?}: m1 came back before the sentinel"
        );

        // Upstream → local; the bridge's membership does not get it back.
        hq.send_text("u1").await;
        assert_eq!(text_of(hq.recv_text().await), "u1", "{mode:?}");
        assert_eq!(text_of(client.recv_text().await), "u1", "{mode:?}");
        client.send_text("s2").await;
        assert_eq!(text_of(client.recv_text().await), "s2", "{mode:?}");
        assert_eq!(
            text_of(hq.recv_text().await),
            "s2",
            "{mode:?}: u1 went back up before the sentinel"
        );

        // Both messages sent up came back down and were recognised.
        let view = wait_bridge(&local, "hq", "two echoes", |v| v["echoes_dropped"] == 2).await;
        assert_eq!(view["messages_in"], 2, "{mode:?}: s1 and u1: {view}");
        assert_eq!(view["messages_out"], 2, "{mode:?}: m1 and s2: {view}");
        assert_eq!(view["dropped"], 0, "{view}");
    }
}

/// `wsplus check-config` on `text`: (exit code, stdout, stderr).
/// `check-config --no-secrets` on `text` (these tests are about the bridges'
/// settings, not about their variables being set).
fn check_config(text: &str) -> (Option<i32>, String, String) {
    let path = temp_config(&format!("bridges-{}", text.len()), text);
    let out = wsplus_bin()
        .args(["check-config", "--no-secrets", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_config_reports_bad_bridges_by_key() {
    let (code, stdout, stderr) = check_config(
        r#"
[[listeners]]
path = "/ws/events"
[[bridges]]
name = "hq"
url = "https://hq.example.com/"
auth = "jwt"
into = { listener = "/nope", tenant = "acme" }
[[bridges]]
name = "hq"
url = "ws://h/"
auth = "none"
token_env = "T"
"#,
    );
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "bridges[0].url: URL scheme must be ws:// or wss://, got https://",
            "bridges[0].token_env: auth = \"jwt\" needs token_env or token_file",
            "bridges[0].into.listener: no listener has path \"/nope\"",
            "bridges[1].token_env: only used with auth = \"jwt\" (auth is \"none\")",
            "bridges[1].into: a bridge needs into, from or both",
            "bridges[1].name: duplicates bridges[0].name \"hq\"",
        ],
        "{stderr}"
    );
    assert!(stdout.is_empty());
}

#[test]
fn check_config_prints_bridges_and_redacts_the_proxy_password() {
    let (code, stdout, stderr) = check_config(
        r#"
[proxy]
https_proxy = "http://alice:plaintext-pw@proxy.corp:3128"
[[listeners]]
path = "/ws/events"
[[bridges]]
name = "hq"
url = "wss://hq.example.com/ws/events"
auth = "jwt"
token_env = "HQ_TOKEN"
from = { listener = "/ws/events", tenant = "acme" }
"#,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.contains("plaintext-pw"), "{stdout}");
    assert!(
        stdout.contains("https_proxy = \"http://alice:[redacted]@proxy.corp:3128\""),
        "{stdout}"
    );
    assert!(stdout.contains("[[bridges]]"), "{stdout}");
    assert!(stdout.contains("token_env = \"HQ_TOKEN\""), "{stdout}");
}

/// A bridge that names a token without `auth` uses it (`auth` defaults to
/// "jwt" then); one that names none defaults to "none".
#[test]
fn auth_defaults_to_jwt_when_a_token_is_named() {
    let (code, stdout, stderr) = check_config(
        r#"
[[listeners]]
path = "/ws/events"
[[bridges]]
name = "hq"
url = "wss://hq.example.com/ws/events"
token_env = "HQ_TOKEN"
into = { listener = "/ws/events", tenant = "acme" }
[[bridges]]
name = "open"
url = "ws://open.example.com/ws/events"
into = { listener = "/ws/events", tenant = "acme" }
"#,
    );
    assert_eq!(code, Some(0), "{stderr}");
    let auth: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("auth = "))
        .collect();
    assert_eq!(auth, ["auth = \"jwt\"", "auth = \"none\""], "{stdout}");
}

#[actix_rt::test]
async fn serve_refuses_a_bridge_whose_token_variable_is_unset() {
    let mut s = settings(Mode::Payload);
    let mut b = bridge("ws://127.0.0.1:1/ws");
    b.from = Some(local_end());
    s.bridges = vec![b];
    let sockets = wsplus::server::Sockets::bind(&s).unwrap();
    let env = std::collections::HashMap::from([("TEST_JWT_SECRET".to_owned(), SECRET.to_owned())]);
    let err = wsplus::server::start(
        s,
        wsplus::settings::Source::File("test".into()),
        sockets,
        wsplus::env::Env::from_map(env),
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(
        err.to_string(),
        format!("bridges[0] (hq): token: environment variable {TOKEN_VAR} is unset or empty")
    );
}

#[actix_rt::test]
async fn upstream_restart_reconnects_and_traffic_resumes() {
    let up_settings = settings(Mode::Payload);
    let sockets = Sockets::bind(&up_settings).unwrap();
    let addr = sockets.http.local_addr().unwrap();
    let up = TestApp::spawn_bound(up_settings.clone(), sockets, HashMap::new());
    let mut b = bridge(&up.ws_url(PATH, None));
    b.into = Some(local_end());
    let local = local_with(settings(Mode::Payload), vec![b]);
    let mut client = local.connect(PATH, TENANT).await;
    wait_connected(&local, "hq").await;

    up.shutdown().await;
    let down = wait_bridge(&local, "hq", "disconnected", |v| {
        v["connected"] == false && v["reconnects"].as_u64() >= Some(1)
    })
    .await;
    assert!(
        down["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("1001") || e.contains("cannot connect")),
        "{down}"
    );

    // The same address again: the bridge finds it on its next attempt.
    let sockets = Sockets {
        http: std::net::TcpListener::bind(addr).unwrap(),
        admin: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    };
    let up = TestApp::spawn_bound(up_settings, sockets, HashMap::new());
    let view = wait_connected(&local, "hq").await;
    assert!(view["reconnects"].as_u64() >= Some(1), "{view}");
    let mut hq = up.connect(PATH, UP_TENANT).await;
    wait_sessions(&up, 2).await;
    hq.send_text("again").await;
    assert_eq!(client.recv_text().await, "again");
}

#[actix_rt::test]
async fn a_refusing_upstream_is_retried_with_backoff_and_reported() {
    let up = upstream(Mode::Payload);
    let mut b = bridge(&up.ws_url(PATH, None));
    b.into = Some(local_end());
    let bad = wsplus::auth::mint::hs256(
        "not-the-upstream-secret-0123456789",
        &wsplus::auth::mint::Claims::new(UP_TENANT, Some("bridge"), 3600, "tenant_id"),
    )
    .unwrap();
    let local = local_with_token(settings(Mode::Payload), vec![b], &bad);
    let view = wait_bridge(&local, "hq", "refused twice", |v| {
        v["reconnects"].as_u64() >= Some(2) && v["last_error"].is_string()
    })
    .await;
    assert_eq!(view["connected"], false);
    let err = view["last_error"].as_str().unwrap();
    assert!(
        err.contains("HTTP 401") && err.contains("invalid_signature"),
        "{err}"
    );
    let shown = view.to_string();
    assert!(!shown.contains(&bad), "token leaked: {shown}");
    assert!(up.rejected("invalid_signature") >= 2);
    // The local server is unaffected.
    let mut client = local.connect(PATH, TENANT).await;
    client.send_text("still here").await;
    assert_eq!(client.recv_text().await, "still here");
}

#[actix_rt::test]
async fn a_silent_upstream_is_dropped_by_the_heartbeat() {
    let silent = FakeServer::start(Script::Silent, None).await;
    let mut b = bridge(&silent.url(PATH));
    b.auth = BridgeAuth::None;
    b.token_env = None;
    b.heartbeat_s = 1;
    b.into = Some(local_end());
    let local = local_with(settings(Mode::Payload), vec![b]);
    wait_bridge(&local, "hq", "timed out", |v| {
        v["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no answer to pings for two heartbeat intervals (1s each)"))
    })
    .await;
    // It dials again after the timeout.
    poll_until(
        "dialled twice",
        || async { silent.seen().len() },
        |n| *n >= 2,
    )
    .await;
    let view = bridge_view(&local, "hq").await;
    assert!(view["reconnects"].as_u64() >= Some(1), "{view}");
}

#[actix_rt::test]
async fn the_admin_view_shows_state_with_the_token_redacted() {
    let up = upstream(Mode::Payload);
    let mut b = bridge(&format!("{}?site=7", up.ws_url(PATH, None)));
    b.into = Some(local_end());
    b.from = Some(local_end());
    let tok = token(UP_TENANT, Some("bridge-hq"), 3600);
    let local = local_with_token(settings(Mode::Payload), vec![b], &tok);
    let view = wait_connected(&local, "hq").await;
    let shown = view.to_string();
    assert!(!shown.contains(&tok), "token leaked: {shown}");
    let url = view["url"].as_str().unwrap();
    assert!(
        url.contains("site=7") && url.contains("token=") && url.contains("redacted"),
        "{url}"
    );
    assert_eq!(view["last_error"], serde_json::Value::Null);
    assert_eq!(view["reconnects"], 0);
    assert_eq!(view["into"], json!({"listener": PATH, "tenant": TENANT}));
    assert_eq!(view["from"], view["into"]);
    for key in [
        "messages_in",
        "messages_out",
        "dropped",
        "echoes_dropped",
        "connected_since",
    ] {
        assert!(view.get(key).is_some(), "{key} missing: {view}");
    }
    assert_eq!(admin_get(&local, "/admin/v1/bridges/hq").await, (200, view));
    let (status, body) = admin_get(&local, "/admin/v1/bridges/nope").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("nope")),
        "{body}"
    );
    let (status, metrics) = admin_text(&local, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "wsplus_bridge_connected{bridge=\"hq\"} 1",
        "wsplus_bridge_reconnects_total{bridge=\"hq\"} 0",
        "wsplus_bridge_messages_in_total{bridge=\"hq\"} 0",
        "wsplus_bridge_messages_out_total{bridge=\"hq\"} 0",
        "wsplus_bridge_dropped_total{bridge=\"hq\"} 0",
        "wsplus_bridge_echoes_dropped_total{bridge=\"hq\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line} in:\n{metrics}"
        );
    }
    let unauthorized = awc::Client::default()
        .get(local.admin_url("/admin/v1/bridges"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
}

#[actix_rt::test]
async fn the_configured_proxy_is_used_over_the_environment() {
    let up = upstream(Mode::Payload);
    let port = up.http.port();
    let proxy = Tinyproxy::start("bridge", &[port], None);
    let mut s = settings(Mode::Payload);
    s.proxy.http_proxy = Some(proxy.url(None));
    let mut b = bridge(&up.ws_url(PATH, None));
    b.into = Some(local_end());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let vars = HashMap::from([
        ("HTTPS_PROXY".to_owned(), dead.clone()),
        ("https_proxy".to_owned(), dead),
    ]);
    let local = local_with_env(s, vec![b], vars);
    let mut client = local.connect(PATH, TENANT).await;
    wait_connected(&local, "hq").await;
    let mut hq = up.connect(PATH, UP_TENANT).await;
    wait_sessions(&up, 2).await;
    hq.send_text("through the proxy").await;
    assert_eq!(client.recv_text().await, "through the proxy");
    proxy.assert_tunnelled(&format!("127.0.0.1:{port}"));
}

/// While the upstream is down, local messages wait in the bounded queue; the
/// ones beyond it are dropped and counted, the queued ones go up on connect.
#[actix_rt::test]
async fn a_full_queue_drops_and_counts_then_flushes_on_connect() {
    let port = free_port();
    let up_url = format!("ws://127.0.0.1:{port}{PATH}");
    let mut b = bridge(&up_url);
    b.from = Some(local_end());
    b.queue = 2;
    let local = local_with(settings(Mode::Payload), vec![b]);
    let mut client = local.connect(PATH, TENANT).await;
    wait_sessions(&local, 2).await;
    for i in 0..5 {
        client.send_text(&format!("m{i}")).await;
    }
    // The room handed each message to the bridge when it delivered it here.
    for i in 0..5 {
        assert_eq!(client.recv_text().await, format!("m{i}"));
    }
    let view = wait_bridge(&local, "hq", "3 dropped", |v| v["dropped"] == 3).await;
    assert_eq!(view["connected"], false);
    assert_eq!(view["messages_out"], 0);

    let s = settings(Mode::Payload);
    let sockets = Sockets {
        http: std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
        admin: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    };
    let up = TestApp::spawn_bound(s, sockets, HashMap::new());
    let view = wait_bridge(&local, "hq", "flushed", |v| v["messages_out"] == 2).await;
    assert_eq!(view["dropped"], 3, "{view}");
    wait_messages_in(&up, 2).await;
}

/// The bridge dials with the shared client: token in the query, `${VAR}`
/// headers expanded, the subprotocol requested.
#[actix_rt::test]
async fn the_upgrade_carries_token_headers_and_subprotocol() {
    let fake = FakeServer::start(Script::Echo, Some("wsplus.v1")).await;
    let mut b = bridge(&format!("{}?site=7", fake.url(PATH)));
    b.subprotocol = "wsplus.v1".into();
    b.headers = [
        ("X-Site".to_owned(), "plant-7".to_owned()),
        ("X-Key".to_owned(), "${SITE_KEY}".to_owned()),
    ]
    .into();
    b.into = Some(local_end());
    let tok = "a+b/c=";
    let vars = HashMap::from([
        (TOKEN_VAR.to_owned(), tok.to_owned()),
        ("SITE_KEY".to_owned(), "k-123".to_owned()),
    ]);
    let local = local_with_env(settings(Mode::Payload), vec![b], vars);
    let view = wait_connected(&local, "hq").await;
    assert!(!view.to_string().contains(tok), "{view}");
    let seen = fake.seen();
    let first = &seen[0];
    assert_eq!(first.uri, format!("{PATH}?site=7&token=a%2Bb%2Fc%3D"));
    assert_eq!(first.headers["x-site"], "plant-7");
    assert_eq!(first.headers["x-key"], "k-123");
    assert_eq!(first.headers["sec-websocket-protocol"], "wsplus.v1");
}

/// wss:// to a TLS wsplus, trusting the test CA through `tls_ca_file`.
#[actix_rt::test]
async fn wss_with_an_extra_ca() {
    let pki = test_pki("bridge");
    let mut up_settings = settings(Mode::Payload);
    up_settings.server.tls_cert = Some(pki.cert.display().to_string());
    up_settings.server.tls_key = Some(pki.key.display().to_string());
    let up = TestApp::spawn(up_settings);
    let mut b = bridge(&format!("wss://localhost:{}{PATH}", up.http.port()));
    b.tls_ca_file = pki.ca.display().to_string();
    b.from = Some(local_end());
    let local = local_with(settings(Mode::Payload), vec![b]);
    let mut client = local.connect(PATH, TENANT).await;
    let view = wait_connected(&local, "hq").await;
    assert!(
        view["url"]
            .as_str()
            .unwrap()
            .starts_with("wss://localhost:"),
        "{view}"
    );
    wait_sessions(&local, 2).await;
    client.send_text("over tls").await;
    assert_eq!(client.recv_text().await, "over tls");
    wait_bridge(&local, "hq", "sent", |v| v["messages_out"] == 1).await;
    wait_messages_in(&up, 1).await;
}

/// Shutdown stops the bridges first: the upstream link is closed and the
/// local membership left, well within the grace period.
#[actix_rt::test]
async fn shutdown_stops_the_bridge() {
    let up = upstream(Mode::Payload);
    let mut b = bridge(&up.ws_url(PATH, None));
    b.into = Some(local_end());
    b.from = Some(local_end());
    let local = local_with(settings(Mode::Payload), vec![b]);
    wait_connected(&local, "hq").await;
    wait_sessions(&up, 1).await;
    wait_sessions(&local, 1).await;
    let started = std::time::Instant::now();
    local.shutdown().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "shutdown took {:?}",
        started.elapsed()
    );
    wait_sessions(&up, 0).await;
}

/// An administrator kicking the bridge's local membership (4003) does not
/// stop the bridge: it joins again, under a new session id, and forwards on.
#[actix_rt::test]
async fn a_kicked_membership_joins_again() {
    let up = upstream(Mode::Payload);
    let mut b = bridge(&up.ws_url(PATH, None));
    b.from = Some(local_end());
    let local = local_with(settings(Mode::Payload), vec![b]);
    let mut hq = up.connect(PATH, UP_TENANT).await;
    wait_sessions(&up, 2).await;
    let member = || async {
        let (_, list) = admin_get(&local, &format!("/admin/v1/tenants/{TENANT}/sessions")).await;
        list.as_array()
            .into_iter()
            .flatten()
            .find(|s| s["subject"] == "hq")
            .map(|s| s["id"].as_str().unwrap_or_default().to_owned())
    };
    let first = poll_until("a member", member, Option::is_some)
        .await
        .unwrap();
    let kicked = awc::Client::default()
        .delete(local.admin_url(&format!("/admin/v1/sessions/{first}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(kicked.status().is_success(), "{}", kicked.status());
    let second = poll_until("a new member", member, |m| {
        m.as_ref().is_some_and(|id| *id != first)
    })
    .await;
    assert!(second.is_some());
    let mut client = local.connect(PATH, TENANT).await;
    client.send_text("after the kick").await;
    assert_eq!(hq.recv_text().await, "after the kick");
}

/// `mode = "message"`: a local message goes upstream as delivered locally,
/// the sender's verified `_session` included (a payload-mode upstream shows
/// the frame as it arrived).
#[actix_rt::test]
async fn from_in_message_mode_sends_the_local_session_upstream() {
    let (_up, _local, mut client, mut hq) = linked(Mode::Payload, Mode::Message, |b| {
        b.from = Some(local_end());
        b.mode = Mode::Message;
    })
    .await;

    client.send_text(r#"{"a":1}"#).await;
    let mine = client.recv_json().await;
    assert_eq!(mine["_session"]["type"], "websocket", "{mine}");
    let up_frame: serde_json::Value = serde_json::from_str(&hq.recv_text().await).unwrap();
    assert_eq!(
        up_frame, mine,
        "the upstream gets the message as delivered locally"
    );
    client.send_text("words").await;
    let mine = client.recv_json().await;
    let up_frame: serde_json::Value = serde_json::from_str(&hq.recv_text().await).unwrap();
    assert_eq!(up_frame, mine);
    assert_eq!(up_frame["payload"], "words");
}

/// `token_file` instead of `token_env`: the file's token (trailing newline
/// dropped) is appended as `?token=` and the upstream accepts it.
#[actix_rt::test]
async fn a_token_file_authenticates_the_bridge() {
    let up = upstream(Mode::Payload);
    let file = temp_dir("bridge-token").join("hq.jwt");
    std::fs::write(
        &file,
        format!("{}\n", token(UP_TENANT, Some("bridge-hq"), 3600)),
    )
    .unwrap();
    let mut b = bridge(&up.ws_url(PATH, None));
    b.token_env = None;
    b.token_file = Some(file.display().to_string());
    b.into = Some(local_end());
    // The variable holds a token the upstream refuses: only the file can work.
    let bad = wsplus::auth::mint::hs256(
        "not-the-upstream-secret-0123456789",
        &wsplus::auth::mint::Claims::new(UP_TENANT, Some("bridge"), 3600, "tenant_id"),
    )
    .unwrap();
    let local = local_with_token(settings(Mode::Payload), vec![b], &bad);
    let mut client = local.connect(PATH, TENANT).await;
    wait_connected(&local, "hq").await;
    let mut hq = up.connect(PATH, UP_TENANT).await;
    wait_sessions(&up, 2).await;
    hq.send_text("via the file's token").await;
    assert_eq!(client.recv_text().await, "via the file's token");
    assert_eq!(up.rejected("invalid_signature"), 0);
}
