//! Routing by scope, tenant isolation and listener isolation, over real sockets.

use common::*;
use wsplus::settings::{Mode, Scope};
use wsplus_actors::broker::Snapshot;

/// Connects `n` clients per tenant to `path`.
async fn clients(app: &TestApp, path: &str, tenants: &[&str], n: usize) -> Vec<(String, Ws)> {
    let mut v = Vec::new();
    for t in tenants {
        for _ in 0..n {
            v.push((t.to_string(), app.connect(path, t).await));
        }
    }
    v
}

#[tokio::test]
async fn tenant_scope_reaches_every_session_of_the_tenant_and_no_other() {
    let app = TestApp::spawn(base_settings());
    let tenants = ["acme", "globex", "initech"];
    let mut cs = clients(&app, "/ws/events", &tenants, 3).await;

    // Each client sends one message tagged with its tenant and index.
    for (i, (t, ws)) in cs.iter_mut().enumerate() {
        ws.send_text(&format!("{t}:{i}")).await;
    }
    // Every client receives exactly the 3 messages of its own tenant (sender included).
    for (t, ws) in cs.iter_mut() {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(ws.recv_text().await);
        }
        assert!(
            got.iter().all(|m| m.starts_with(&format!("{t}:"))),
            "{t} got {got:?}"
        );
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 3);
    }
    // Sentinel per tenant: the next message after those 3 is the sentinel, so no
    // other tenant's message slipped in.
    for t in tenants {
        let (_, ws) = cs.iter_mut().find(|(x, _)| x == t).unwrap();
        ws.send_text(&format!("{t}:end")).await;
    }
    for (t, ws) in cs.iter_mut() {
        assert_eq!(ws.recv_text().await, format!("{t}:end"));
    }
}

#[tokio::test]
async fn session_scope_echoes_to_the_sender_only() {
    let mut s = base_settings();
    s.listeners[0].scope = Scope::Session;
    let app = TestApp::spawn(s);
    let mut a = app.connect("/ws/events", "acme").await;
    let mut b = app.connect("/ws/events", "acme").await;
    a.send_text("from-a").await;
    b.send_text("from-b").await;
    assert_eq!(a.recv_text().await, "from-a");
    assert_eq!(b.recv_text().await, "from-b");
    a.send_text("a2").await;
    assert_eq!(a.recv_text().await, "a2");
    b.send_text("b2").await;
    assert_eq!(b.recv_text().await, "b2", "b never saw a's messages");
}

#[tokio::test]
async fn global_scope_reaches_every_tenant_on_the_listener() {
    let mut s = base_settings();
    s.listeners[0].scope = Scope::Global;
    s.listeners.push(listener("/ws/other"));
    let app = TestApp::spawn(s);
    let mut cs = clients(&app, "/ws/events", &["a", "b", "c"], 2).await;
    let mut other = app.connect("/ws/other", "a").await;
    cs[0].1.send_text("hello all").await;
    for (_, ws) in cs.iter_mut() {
        assert_eq!(ws.recv_text().await, "hello all");
    }
    other.send_text("other-listener").await;
    assert_eq!(
        other.recv_text().await,
        "other-listener",
        "nothing from /ws/events reached /ws/other"
    );
}

#[tokio::test]
async fn two_listeners_are_isolated_for_the_same_tenant() {
    let mut s = base_settings();
    s.listeners.push(listener("/ws/two"));
    let app = TestApp::spawn(s);
    let mut one = app.connect("/ws/events", "acme").await;
    let mut two = app.connect("/ws/two", "acme").await;
    one.send_text("on-one").await;
    two.send_text("on-two").await;
    assert_eq!(one.recv_text().await, "on-one");
    assert_eq!(two.recv_text().await, "on-two");
}

#[tokio::test]
async fn binary_frames_are_delivered_as_binary_in_payload_mode() {
    let app = TestApp::spawn(base_settings());
    let mut a = app.connect("/ws/events", "acme").await;
    let mut b = app.connect("/ws/events", "acme").await;
    a.send_binary(&[0, 1, 2, 255]).await;
    for ws in [&mut a, &mut b] {
        match ws.next_message().await {
            tokio_tungstenite::tungstenite::Message::Binary(bytes) => {
                assert_eq!(&bytes[..], &[0, 1, 2, 255])
            }
            other => panic!("expected binary, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn message_mode_stamps_a_verified_session_and_discards_forgery() {
    let mut s = base_settings();
    s.listeners[0].mode = Mode::Message;
    let app = TestApp::spawn(s);
    let mut a =
        Ws::connect(&app.ws_url("/ws/events", Some(&token("acme", Some("alice"), 3600)))).await;
    let mut b = Ws::connect(&app.ws_url("/ws/events", Some(&token("acme", None, 3600)))).await;
    a.send_text(r#"{"text":"hi","_session":{"tenantId":"evil","type":"admin","id":"x"}}"#)
        .await;
    let got = b.recv_json().await;
    assert_eq!(got["text"], "hi");
    let sess = &got["_session"];
    assert_eq!(sess["type"], "websocket");
    assert_eq!(sess["tenantId"], "acme");
    assert_eq!(sess["subject"], "alice");
    assert_eq!(sess["authStatus"], "verified");
    assert_eq!(sess["routingScope"], "tenant");
    let id = sess["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "unguessable uuid: {id}");
    assert_eq!(sess.as_object().unwrap().len(), 6);
    // The sender gets the same stamped message.
    assert_eq!(a.recv_json().await, got);

    // Non-JSON text and binary are wrapped as {"payload": ...}; b has no sub.
    b.send_text("plain words").await;
    let w = a.recv_json().await;
    assert_eq!(w["payload"], "plain words");
    assert_eq!(w["_session"]["subject"], serde_json::Value::Null);
    assert_ne!(w["_session"]["id"], got["_session"]["id"]);
    b.send_binary(b"bytes").await;
    assert_eq!(a.recv_json().await["payload"], "bytes");
    b.send_text("[1,2]").await;
    assert_eq!(a.recv_json().await["payload"], "[1,2]");
}

#[tokio::test]
async fn auth_none_stamps_status_none_and_static_tenant() {
    let mut s = base_settings();
    s.listeners = vec![open_listener("/open", "public")];
    s.listeners[0].mode = Mode::Message;
    let app = TestApp::spawn(s);
    let mut a = Ws::connect(&app.ws_url("/open", None)).await;
    a.send_text(r#"{"x":1}"#).await;
    let v = a.recv_json().await;
    assert_eq!(v["_session"]["authStatus"], "none");
    assert_eq!(v["_session"]["tenantId"], "public");
    assert_eq!(v["_session"]["subject"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_message_published_right_after_101_reaches_the_new_client() {
    let app = TestApp::spawn(base_settings());
    let mut old = app.connect("/ws/events", "acme").await;
    for i in 0..20 {
        let mut fresh = app.connect("/ws/events", "acme").await;
        old.send_text(&format!("m{i}")).await;
        assert_eq!(fresh.recv_text().await, format!("m{i}"));
        assert_eq!(old.recv_text().await, format!("m{i}"));
        fresh.abort();
    }
    drop(old);
    app.wait_snapshot(Snapshot::default()).await;
}

/// Message mode: only a text frame holding a JSON object is the message; every
/// other frame — non-JSON text, JSON that is not an object, any binary frame
/// (a JSON object too) — is delivered, as a text frame, as
/// `{"payload": "<the frame as a string>", "_session": ...}`.
#[tokio::test]
async fn message_mode_wraps_every_other_frame_as_a_string_payload() {
    use tokio_tungstenite::tungstenite::Message;
    let mut s = base_settings();
    s.listeners[0].mode = Mode::Message;
    let app = TestApp::spawn(s);
    let mut a = app.connect("/ws/events", "acme").await;
    let cases: [(Message, &str); 7] = [
        (Message::text("plain words"), "plain words"),
        (Message::text("[1,2]"), "[1,2]"),
        (Message::text(r#""a string""#), r#""a string""#),
        (Message::text("42"), "42"),
        (Message::text("null"), "null"),
        (Message::text(r#"{"a":1}{"b":2}"#), r#"{"a":1}{"b":2}"#),
        (Message::binary(br#"{"a":1}"#.to_vec()), r#"{"a":1}"#),
    ];
    for (frame, want) in cases {
        a.send(frame).await;
        let text = match a.next_message().await {
            Message::Text(t) => t.to_string(),
            other => panic!("{want}: expected a text frame, got {other:?}"),
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(v["payload"], want, "{text}");
        assert_eq!(obj.len(), 2, "payload and _session only: {text}");
        assert_eq!(v["_session"]["tenantId"], "acme");
    }
    // A JSON object is the message itself, its keys kept.
    a.send_text(r#" {"a":1} "#).await;
    let v = a.recv_json().await;
    assert_eq!(v["a"], 1);
    assert!(v.get("payload").is_none(), "{v}");
}

/// `_session` has exactly the six fields of
/// docs/protocol.md#frames-and-messages, and `routingScope` is the listener's
/// scope, whichever it is.
#[tokio::test]
async fn the_stamp_names_the_listener_scope() {
    let mut s = base_settings();
    s.listeners.clear();
    for (path, scope) in [
        ("/session", Scope::Session),
        ("/tenant", Scope::Tenant),
        ("/global", Scope::Global),
    ] {
        let mut l = listener(path);
        l.mode = Mode::Message;
        l.scope = scope;
        s.listeners.push(l);
    }
    let app = TestApp::spawn(s);
    for (path, name) in [
        ("/session", "session"),
        ("/tenant", "tenant"),
        ("/global", "global"),
    ] {
        let mut ws = Ws::connect(&app.ws_url(path, Some(&token("acme", Some("al"), 600)))).await;
        ws.send_text(r#"{"k":1}"#).await;
        let stamp = ws.recv_json().await["_session"].clone();
        let mut keys: Vec<&str> = stamp
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "authStatus",
                "id",
                "routingScope",
                "subject",
                "tenantId",
                "type"
            ],
            "{path}"
        );
        assert_eq!(stamp["routingScope"], name, "{path}");
        assert_eq!(stamp["type"], "websocket");
        assert_eq!(stamp["tenantId"], "acme");
        assert_eq!(stamp["subject"], "al");
        assert_eq!(stamp["authStatus"], "verified");
        ws.close().await;
    }
}
