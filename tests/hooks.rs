//! Backend hooks against a real backend on loopback (tests/hooks_support):
//! the `connect` hook decides the handshake, the `message` hook takes a
//! listener's messages and answers by reply and publication; every request
//! is signed and carries the verified identity; anything but a documented
//! answer is a refusal.

use std::collections::HashMap;
use std::time::Duration;

use common::hooks::*;
use common::metrics;
use common::*;
use serde_json::{json, Value};
use wsplus::settings::{HookName, HooksSettings, Mode, Settings};

/// Settings with `/ws/events` asking `backend` for `hooks`.
fn with_hooks(backend: &Backend, hooks: &[HookName], mode: Mode) -> Settings {
    let mut s = base_settings();
    s.listeners[0].mode = mode;
    s.listeners[0].hooks = Some(HooksSettings {
        url: backend.url(),
        hooks: hooks.to_vec(),
        timeout_ms: 1000,
        secret_env: Some("HOOK_SECRET".into()),
        ..Default::default()
    });
    s
}

fn spawn(s: Settings) -> TestApp {
    TestApp::spawn_with_env(
        s,
        HashMap::from([("HOOK_SECRET".to_owned(), HOOK_SECRET.to_owned())]),
    )
}

fn url(app: &TestApp, tenant: &str) -> String {
    app.ws_url("/ws/events", Some(&token(tenant, Some("alice"), 3600)))
}

/// The answer of a refused handshake, parsed.
async fn refusal(app: &TestApp, tenant: &str) -> (u16, Value) {
    let r = Ws::try_connect(&url(app, tenant))
        .await
        .err()
        .expect("handshake refused");
    (r.status, serde_json::from_str(&r.body).expect("JSON body"))
}

#[tokio::test]
async fn connect_hook_allows_and_denies_with_the_verified_identity_signed() {
    let backend =
        Backend::start(|r| Answer::json(json!({"allow": r.json["session"]["tenantId"] == "good"})));
    let app = spawn(with_hooks(&backend, &[HookName::Connect], Mode::Payload));

    let mut ws = Ws::connect(&url(&app, "good")).await;
    ws.send_text("hello").await;
    assert_eq!(ws.recv_text().await, "hello");

    let (status, body) = refusal(&app, "bad").await;
    assert_eq!(status, 403);
    assert_eq!(body["reason"], "hook_denied");
    assert_eq!(app.rejected("hook_denied"), 1);

    let seen = backend.requests_to("connect");
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert!(r.signed_with(HOOK_SECRET), "bad signature on {r:?}");
        assert!(!r.signed_with("another-secret"));
    }
    let first = &seen[0].json;
    assert_eq!(first["listener"], "/ws/events");
    assert_eq!(first["session"]["tenantId"], "good");
    assert_eq!(first["session"]["subject"], "alice");
    assert_eq!(
        first["session"]["id"].as_str().map(str::len),
        Some(36),
        "{first}"
    );
    assert_eq!(first["claims"]["tenant_id"], "good");
    assert_eq!(first["claims"]["sub"], "alice");
    assert!(
        first["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{first}"
    );
}

#[tokio::test]
async fn connect_hook_without_a_usable_answer_refuses_with_503() {
    let backend = Backend::start(|_| Answer::raw(500, "{\"allow\": true}"));
    let app = spawn(with_hooks(&backend, &[HookName::Connect], Mode::Payload));
    let answers = [
        Answer::raw(500, "{\"allow\": true}"),
        Answer::raw(404, "{\"allow\": true}"),
        Answer::raw(200, "{\"allow\": \"yes\"}"),
        Answer::raw(200, "{}"),
        Answer::raw(200, "not json"),
        // Slower than timeout_ms (1 s).
        Answer::json(json!({"allow": true})).after(Duration::from_secs(2)),
    ];
    for (i, a) in answers.into_iter().enumerate() {
        backend.respond(move |_| a.clone());
        let (status, body) = refusal(&app, "t").await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (503, Some("hook_unavailable")),
            "answer {i}"
        );
    }
    assert_eq!(app.rejected("hook_unavailable"), 6);
    let m = metrics::scrape(app.admin).await;
    let failures = |kind: &str| {
        m.value(
            "wsplus_hook_failures_total",
            &[
                ("listener", "/ws/events"),
                ("hook", "connect"),
                ("kind", kind),
            ],
        )
    };
    assert_eq!(failures("status"), Some(2.0));
    assert_eq!(failures("malformed"), Some(3.0));
    assert_eq!(failures("timeout"), Some(1.0));
    assert_eq!(
        m.value(
            "wsplus_hook_calls_total",
            &[("listener", "/ws/events"), ("hook", "connect")]
        ),
        Some(6.0)
    );
    assert_eq!(
        m.value(
            "wsplus_hook_duration_seconds_count",
            &[("listener", "/ws/events"), ("hook", "connect")]
        ),
        Some(6.0)
    );
}

#[tokio::test]
async fn connect_hook_with_the_backend_down_refuses_with_503() {
    let mut backend = Backend::start(|_| Answer::json(json!({"allow": true})));
    let app = spawn(with_hooks(&backend, &[HookName::Connect], Mode::Payload));
    Ws::connect(&url(&app, "t")).await.close().await;
    backend.down();
    let (status, body) = refusal(&app, "t").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("hook_unavailable"))
    );
    backend.up();
    Ws::connect(&url(&app, "t")).await.close().await;
}

#[tokio::test]
async fn connect_hook_calls_beyond_max_in_flight_are_refused_without_asking() {
    let backend =
        Backend::start(|_| Answer::json(json!({"allow": true})).after(Duration::from_secs(2)));
    let mut s = with_hooks(&backend, &[HookName::Connect], Mode::Payload);
    let hooks = s.listeners[0].hooks.as_mut().unwrap();
    hooks.max_in_flight = 1;
    hooks.timeout_ms = 5000;
    let app = spawn(s);

    let slow_url = url(&app, "t");
    let slow = tokio::spawn(async move { Ws::try_connect(&slow_url).await.is_ok() });
    backend.wait_requests(1, WAIT).await;
    // The one slot is taken: refused at once, the backend never asked.
    let (status, body) = refusal(&app, "t").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("hook_unavailable"))
    );
    assert!(slow.await.unwrap(), "the call in flight still succeeds");
    assert_eq!(backend.requests_to("connect").len(), 1);
    let m = metrics::scrape(app.admin).await;
    assert_eq!(
        m.value(
            "wsplus_hook_failures_total",
            &[
                ("listener", "/ws/events"),
                ("hook", "connect"),
                ("kind", "overloaded")
            ]
        ),
        Some(1.0)
    );
}

/// Answers `message` calls: `{"reply": "re:<payload>", "publish": "pub:<payload>"}`
/// for text payloads, the payload object back for message mode.
fn echo_backend() -> Backend {
    Backend::start(|r| match &r.json["payload"] {
        Value::String(p) => {
            Answer::json(json!({"reply": format!("re:{p}"), "publish": format!("pub:{p}")}))
        }
        other => Answer::json(json!({"reply": {"echo": other}, "publish": null})),
    })
}

#[tokio::test]
async fn message_hook_replies_to_the_sender_and_publishes_to_the_tenant_in_payload_mode() {
    let backend = echo_backend();
    let app = spawn(with_hooks(&backend, &[HookName::Message], Mode::Payload));
    let mut a = app.connect("/ws/events", "acme").await;
    let mut b = app.connect("/ws/events", "acme").await;
    let mut other = app.connect("/ws/events", "globex").await;

    a.send_text("hi").await;
    // The message itself is not routed; the reply reaches only the sender,
    // the publication the whole tenant (sender included), in that order.
    assert_eq!(a.recv_text().await, "re:hi");
    assert_eq!(a.recv_text().await, "pub:hi");
    assert_eq!(b.recv_text().await, "pub:hi");

    a.send_binary(&[0, 159, 255]).await;
    assert_eq!(a.recv_text().await, "re:AJ//");
    assert_eq!(b.recv_text().await, "pub:AJ//");
    let calls = backend.requests_to("message");
    assert_eq!(calls[0].json["payload"], "hi");
    assert!(calls[0].json.get("binary").is_none());
    assert_eq!(calls[1].json["payload"], "AJ//");
    assert_eq!(calls[1].json["binary"], true);
    assert_eq!(calls[1].json["session"]["tenantId"], "acme");
    assert!(calls.iter().all(|c| c.signed_with(HOOK_SECRET)));

    // Tenant isolation: globex heard nothing; its own message works.
    other.send_text("x").await;
    assert_eq!(other.recv_text().await, "re:x");
    assert_eq!(other.recv_text().await, "pub:x");
}

#[tokio::test]
async fn message_hook_in_message_mode_sees_the_object_and_stamps_the_answers() {
    let backend = echo_backend();
    let app = spawn(with_hooks(&backend, &[HookName::Message], Mode::Message));
    let mut a = app.connect("/ws/events", "acme").await;
    let mut b = app.connect("/ws/events", "acme").await;

    a.send_text(r#"{"n":1,"_session":{"tenantId":"forged"}}"#)
        .await;
    let reply = a.recv_json().await;
    assert_eq!(reply["echo"], json!({"n": 1}));
    assert_eq!(reply["_session"]["tenantId"], "acme");
    assert_eq!(reply["_session"]["type"], "websocket");
    let call = &backend.requests_to("message")[0].json;
    assert_eq!(call["payload"], json!({"n": 1}));

    // A string publication in message mode is wrapped and stamped.
    backend.respond(|_| Answer::json(json!({"publish": "news"})));
    a.send_text("{}").await;
    let news = b.recv_json().await;
    assert_eq!(news["payload"], "news");
    assert_eq!(news["_session"]["tenantId"], "acme");
    let own = a.recv_json().await;
    assert_eq!(
        own["payload"], "news",
        "no reply came before the publication"
    );
}

#[tokio::test]
async fn message_hook_keeps_each_sessions_order_whatever_the_backend_latency() {
    // Earlier messages answer slower: completion order is the reverse of
    // sending order, the replies must not be.
    let backend = Backend::start(|r| {
        let n: u64 = r.json["payload"].as_str().unwrap().parse().unwrap();
        Answer::json(json!({"reply": n.to_string()})).after(Duration::from_millis(200 - n * 10))
    });
    let app = spawn(with_hooks(&backend, &[HookName::Message], Mode::Payload));
    let mut a = app.connect("/ws/events", "acme").await;
    for n in 0..20 {
        a.send_text(&n.to_string()).await;
    }
    for n in 0..20 {
        assert_eq!(a.recv_text().await, n.to_string());
    }
}

#[tokio::test]
async fn one_pipelining_session_loses_nothing_and_cannot_take_the_listeners_whole_capacity() {
    // Every message takes 100 ms to answer and the listener may have 64
    // calls in flight. A client that pipelines 500 messages runs at most its
    // own share at once and is simply read more slowly: all 500 are answered,
    // in order, and another session's message is still answered meanwhile.
    let backend = Backend::start(|r| {
        Answer::json(json!({"reply": r.json["payload"]})).after(Duration::from_millis(100))
    });
    let mut s = with_hooks(&backend, &[HookName::Message], Mode::Payload);
    let hooks = s.listeners[0].hooks.as_mut().unwrap();
    hooks.max_in_flight = 64;
    hooks.timeout_ms = 5000;
    let app = spawn(s);
    let mut greedy = app.connect("/ws/events", "acme").await;
    let mut other = app.connect("/ws/events", "acme").await;
    for n in 0..500 {
        greedy.send_text(&format!("g{n}")).await;
    }
    backend.wait_requests(16, WAIT).await;
    other.send_text("other").await;
    assert_eq!(other.recv_text().await, "other");
    for n in 0..500 {
        assert_eq!(greedy.recv_text().await, format!("g{n}"));
    }
    assert_eq!(backend.requests_to("message").len(), 501);
    let m = metrics::scrape(app.admin).await;
    for kind in ["overloaded", "timeout", "connect", "status", "malformed"] {
        assert_eq!(
            m.value(
                "wsplus_hook_failures_total",
                &[
                    ("listener", "/ws/events"),
                    ("hook", "message"),
                    ("kind", kind)
                ],
            ),
            Some(0.0),
            "{kind}"
        );
    }
}

/// A session whose `message` hook calls are at their depth decodes nothing
/// more: what the client sent after them, a ping included, stays unread bytes
/// (nothing piles up in the broker) until answers free a place.
#[tokio::test]
async fn a_session_at_its_hook_depth_decodes_nothing_more() {
    use common::limits::{client_frame, open, write_raw};
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    const ANSWER_AFTER: Duration = Duration::from_secs(2);
    let backend =
        Backend::start(|r| Answer::json(json!({"reply": r.json["payload"]})).after(ANSWER_AFTER));
    let mut s = with_hooks(&backend, &[HookName::Message], Mode::Payload);
    s.listeners[0].hooks.as_mut().unwrap().timeout_ms = 10_000;
    let app = spawn(s);
    let mut sock = open(&app, "/ws/events", "acme").await;
    // Twenty messages and a ping in one write: one chunk for the broker.
    let mut burst: Vec<u8> = (0..20)
        .flat_map(|n| client_frame(0x81, format!("m{n}").as_bytes()))
        .collect();
    burst.extend(client_frame(0x89, b"still there?"));
    write_raw(&mut sock, &burst).await;
    backend.wait_requests(16, WAIT).await;
    // The first answers are 2 s away: until then the ping is not decoded,
    // so nothing at all comes back.
    let early = tokio::time::timeout(Duration::from_millis(500), sock.next()).await;
    assert!(early.is_err(), "answered while at its depth: {early:?}");
    let (mut texts, mut pong_after) = (Vec::new(), None);
    while texts.len() < 20 || pong_after.is_none() {
        match tokio::time::timeout(WAIT, sock.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => texts.push(t.to_string()),
            Ok(Some(Ok(Message::Pong(p)))) => {
                assert_eq!(&p[..], b"still there?");
                pong_after = Some(texts.len());
            }
            other => panic!("{other:?} after {texts:?}"),
        }
    }
    let expected: Vec<String> = (0..20).map(|n| format!("m{n}")).collect();
    assert_eq!(texts, expected);
    assert!(
        pong_after >= Some(1),
        "pong before any answer: {pong_after:?}"
    );
    assert_eq!(backend.requests_to("message").len(), 20);
}

#[tokio::test]
async fn a_failed_message_hook_sends_nothing_keeps_the_connection_and_counts() {
    let backend = Backend::start(|_| Answer::raw(503, "{}"));
    let app = spawn(with_hooks(&backend, &[HookName::Message], Mode::Payload));
    let mut a = app.connect("/ws/events", "acme").await;
    let mut b = app.connect("/ws/events", "acme").await;
    a.send_text("lost").await;
    backend.wait_requests(1, WAIT).await;
    metrics::wait_value(
        app.admin,
        "wsplus_hook_failures_total",
        &[
            ("listener", "/ws/events"),
            ("hook", "message"),
            ("kind", "status"),
        ],
        1.0,
    )
    .await;
    // Malformed answers fail the same way.
    backend.respond(|_| Answer::raw(200, "[\"reply\"]"));
    a.send_text("lost too").await;
    metrics::wait_value(
        app.admin,
        "wsplus_hook_failures_total",
        &[
            ("listener", "/ws/events"),
            ("hook", "message"),
            ("kind", "malformed"),
        ],
        1.0,
    )
    .await;
    // Still open: the next message goes through, and is the first anyone sees.
    backend.respond(|_| Answer::json(json!({"reply": "ok", "publish": "all"})));
    a.send_text("again").await;
    assert_eq!(a.recv_text().await, "ok");
    assert_eq!(a.recv_text().await, "all");
    assert_eq!(b.recv_text().await, "all");
}

#[test]
fn the_hook_secret_is_required_to_start() {
    let mut s = base_settings();
    s.listeners[0].hooks = Some(HooksSettings {
        url: "http://127.0.0.1:9/hooks".into(),
        hooks: vec![HookName::Message],
        secret_env: Some("HOOK_SECRET".into()),
        ..Default::default()
    });
    let vars = HashMap::from([("TEST_JWT_SECRET".to_owned(), SECRET.to_owned())]);
    let err = actix_rt::System::new()
        .block_on(async {
            wsplus::server::Plan::new(
                s.clone(),
                wsplus::settings::Source::File("test".into()),
                wsplus::env::Env::from_map(vars),
            )
            .err()
        })
        .expect("refused without the secret");
    assert_eq!(
        err.to_string(),
        "listeners[0].hooks: environment variable HOOK_SECRET is unset or empty"
    );
}

#[tokio::test]
async fn admin_listeners_show_the_hooks_without_the_secret() {
    let backend = echo_backend();
    let app = spawn(with_hooks(&backend, &[HookName::Message], Mode::Payload));
    let listeners = common::admin::Req::new("GET", "/admin/v1/listeners")
        .authorization(Some(&format!("Bearer {ADMIN_TOKEN}")))
        .send_to(app.admin)
        .await;
    assert_eq!(listeners.status, 200);
    let v: Value = serde_json::from_str(&listeners.body).unwrap();
    assert_eq!(v[0]["hooks"]["hooks"], json!(["message"]));
    assert_eq!(v[0]["hooks"]["secret_env"], "HOOK_SECRET");
    assert!(!listeners.body.contains(HOOK_SECRET));
}

#[test]
fn check_config_reports_missing_hook_and_webhook_secrets_by_key() {
    let missing = temp_dir("hooks-cc").join("no-secret").display().to_string();
    let cfg = temp_config(
        "hooks-cc",
        &format!(
            "[admin]\nbind = \"127.0.0.1:0\"\n[[listeners]]\npath = \"/ws\"\n\
             [listeners.auth]\nmode = \"none\"\n[listeners.tenant]\nfrom = \"static\"\nstatic_id = \"t\"\n\
             [listeners.hooks]\nurl = \"http://127.0.0.1:9/h\"\nhooks = [\"connect\"]\nsecret_env = \"WSPLUS_HOOK_CC_UNSET\"\n\
             [[webhooks]]\nurl = \"http://127.0.0.1:9/e\"\nevents = [\"session.opened\"]\nsecret_file = {missing:?}\n"
        ),
    );
    let out = wsplus_bin()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.lines().any(|l| l
            == "listeners[0].hooks: environment variable WSPLUS_HOOK_CC_UNSET is unset or empty"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l == format!("webhooks[0]: secret file {missing} is unreadable or empty")),
        "{stderr}"
    );
    let out = wsplus_bin()
        .args(["check-config", "--no-secrets", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
