//! `POST /admin/v1/publish` (docs/admin-api.yaml) in each scope: exact
//! `delivered` counts, only the targeted sessions receive, the admin `_session`
//! in message mode, the payload alone in payload mode, 400/404 on bad targets.

use common::admin::*;
use common::*;
use serde_json::{json, Value};
use wsplus_actors::protocol::admin_stamp;

async fn publish(app: &TestApp, body: Value) -> Response {
    post_json(app, "/admin/v1/publish", &body).await
}

/// Publishes and asserts the `delivered` count.
async fn publish_ok(app: &TestApp, body: Value, delivered: u64) {
    let res = publish(app, body).await.expect_ok();
    assert_eq!(res, json!({"delivered": delivered}));
}

/// A global message on `listener` used as a marker: a client whose next
/// message is this one received nothing before it.
async fn marker(app: &TestApp, listener: &str, n: u64) -> Value {
    let payload = json!({"marker": true});
    publish_ok(
        app,
        json!({"listener": listener, "scope": "global", "payload": payload}),
        n,
    )
    .await;
    payload
}

fn without_session(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("_session");
    v
}

#[actix_rt::test]
async fn tenant_scope_reaches_every_session_of_the_tenant_on_the_listener() {
    let app = TestApp::spawn(admin_settings());
    let mut acme = [
        app.connect(MSG, "acme").await,
        app.connect(MSG, "acme").await,
    ];
    let mut globex = app.connect(MSG, "globex").await;
    let mut elsewhere = app.connect(GLOBAL, "acme").await;

    let payload = json!({"hello": 1, "_session": {"type": "forged"}});
    publish_ok(
        &app,
        json!({"listener": MSG, "scope": "tenant", "tenant": "acme", "payload": payload}),
        2,
    )
    .await;
    for ws in &mut acme {
        assert_eq!(
            ws.recv_json().await,
            json!({"hello": 1, "_session": admin_stamp(Some("acme"), "tenant")})
        );
    }
    let m = marker(&app, MSG, 3).await;
    assert_eq!(without_session(globex.recv_json().await), m);
    let m = marker(&app, GLOBAL, 1).await;
    assert_eq!(without_session(elsewhere.recv_json().await), m);
}

#[actix_rt::test]
async fn global_scope_reaches_every_session_of_the_listener_only() {
    let app = TestApp::spawn(admin_settings());
    let mut on_msg = [
        app.connect(MSG, "acme").await,
        app.connect(MSG, "globex").await,
    ];
    let mut elsewhere = app.connect(GLOBAL, "acme").await;

    publish_ok(
        &app,
        json!({"listener": MSG, "scope": "global", "payload": "plain"}),
        2,
    )
    .await;
    for ws in &mut on_msg {
        assert_eq!(
            ws.recv_json().await,
            json!({"payload": "plain", "_session": admin_stamp(None, "global")})
        );
    }
    let m = marker(&app, GLOBAL, 1).await;
    assert_eq!(without_session(elsewhere.recv_json().await), m);
    // A listener without sessions: delivered to nobody.
    publish_ok(
        &app,
        json!({"listener": EVENTS, "scope": "global", "payload": "x"}),
        0,
    )
    .await;
}

#[actix_rt::test]
async fn session_scope_reaches_that_session_only() {
    let app = TestApp::spawn(admin_settings());
    let mut target = app.connect(MSG, "acme").await;
    let id = session_ids(&app, "acme").await[0].clone();
    let mut sibling = app.connect(MSG, "acme").await;

    publish_ok(
        &app,
        json!({"listener": MSG, "scope": "session", "session": id, "payload": [1, 2]}),
        1,
    )
    .await;
    assert_eq!(
        target.recv_json().await,
        json!({"payload": [1, 2], "_session": admin_stamp(Some("acme"), "session")})
    );
    // With the session's own tenant named, too.
    publish_ok(
        &app,
        json!({"listener": MSG, "scope": "session", "tenant": "acme", "session": id, "payload": {"n": 2}}),
        1,
    )
    .await;
    assert_eq!(without_session(target.recv_json().await), json!({"n": 2}));
    let m = marker(&app, MSG, 2).await;
    assert_eq!(without_session(sibling.recv_json().await), m);
}

#[actix_rt::test]
async fn payload_mode_sends_the_payload_alone() {
    let app = TestApp::spawn(admin_settings());
    let mut ws = app.connect(EVENTS, "acme").await;
    publish_ok(
        &app,
        json!({"listener": EVENTS, "scope": "tenant", "tenant": "acme", "payload": "raw text"}),
        1,
    )
    .await;
    assert_eq!(ws.recv_text().await, "raw text");
    // Any other JSON value is sent as its JSON text, unstamped.
    publish_ok(
        &app,
        json!({"listener": EVENTS, "scope": "global", "payload": {"a": [1, "b"]}}),
        1,
    )
    .await;
    assert_eq!(ws.recv_text().await, r#"{"a":[1,"b"]}"#);
}

#[actix_rt::test]
async fn bad_targets_are_refused_and_deliver_nothing() {
    let app = TestApp::spawn(admin_settings());
    let mut acme = app.connect(MSG, "acme").await;
    let _globex = app.connect(MSG, "globex").await;
    let id = session_ids(&app, "acme").await[0].clone();
    let p = json!("x");
    let cases = [
        // Missing or superfluous targets.
        (
            json!({"listener": MSG, "scope": "tenant", "payload": p}),
            400,
        ),
        (
            json!({"listener": MSG, "scope": "tenant", "tenant": "", "payload": p}),
            400,
        ),
        (
            json!({"listener": MSG, "scope": "session", "payload": p}),
            400,
        ),
        (
            json!({"listener": MSG, "scope": "session", "tenant": "acme", "payload": p}),
            400,
        ),
        (
            json!({"listener": MSG, "scope": "global", "tenant": "acme", "payload": p}),
            400,
        ),
        (
            json!({"listener": MSG, "scope": "global", "session": id, "payload": p}),
            400,
        ),
        (
            json!({"listener": MSG, "scope": "tenant", "tenant": "acme", "session": id, "payload": p}),
            400,
        ),
        // Unknown listener, session, tenant; a session of another tenant or listener.
        (
            json!({"listener": "/ws/nope", "scope": "global", "payload": p}),
            404,
        ),
        (
            json!({"listener": MSG, "scope": "session", "session": "nope", "payload": p}),
            404,
        ),
        (
            json!({"listener": MSG, "scope": "session", "tenant": "globex", "session": id, "payload": p}),
            404,
        ),
        (
            json!({"listener": GLOBAL, "scope": "session", "session": id, "payload": p}),
            404,
        ),
    ];
    for (body, status) in cases {
        let msg = publish(&app, body.clone()).await.expect_error(status);
        assert!(!msg.is_empty(), "{body}");
    }
    // A tenant with nobody connected is a target nobody receives, like an
    // empty listener in global scope.
    for body in [
        json!({"listener": MSG, "scope": "tenant", "tenant": "nobody", "payload": p}),
        json!({"listener": EVENTS, "scope": "global", "payload": p}),
    ] {
        publish_ok(&app, body, 0).await;
    }
    let m = marker(&app, MSG, 2).await;
    assert_eq!(without_session(acme.recv_json().await), m);
}
