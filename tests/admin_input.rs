//! Bad input to the admin API: malformed JSON, wrong types, unknown fields,
//! an oversized body (`admin.max_body_bytes`),
//! bad query parameters. Each gets a 4xx with `{"error": "..."}`, nothing is
//! delivered, and the server keeps answering.

use common::admin::*;
use common::*;
use serde_json::{json, Value};

/// The body limit the tests configure.
const LIMIT: usize = 1024;

fn app() -> TestApp {
    let mut s = admin_settings();
    s.admin.max_body_bytes = LIMIT;
    TestApp::spawn(s)
}

fn publish(content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Req {
    Req::new("POST", "/admin/v1/publish").raw_body(content_type, body.into())
}

/// A valid global publish to [`EVENTS`] padded to exactly `len` bytes, and
/// its payload.
fn padded_publish(len: usize) -> (Vec<u8>, String) {
    let empty = json!({"listener": EVENTS, "scope": "global", "payload": ""}).to_string();
    let payload = "x".repeat(len - empty.len());
    let body = json!({"listener": EVENTS, "scope": "global", "payload": payload}).to_string();
    assert_eq!(body.len(), len);
    (body.into_bytes(), payload)
}

#[actix_rt::test]
async fn malformed_or_mistyped_bodies_are_400() {
    let app = app();
    let mut ws = app.connect(EVENTS, "acme").await;
    let json_ct = Some("application/json");
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"not json".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        vec![0xff, 0xfe, b'{'],
    ];
    for body in bodies {
        publish(json_ct, body).send(&app).await.expect_error(400);
    }
    let typed: Vec<Value> = vec![
        json!({"listener": 1, "scope": "global", "payload": "x"}),
        json!({"listener": EVENTS, "scope": "room", "payload": "x"}),
        json!({"listener": EVENTS, "scope": 3, "payload": "x"}),
        json!({"listener": EVENTS, "scope": "tenant", "tenant": 7, "payload": "x"}),
        json!({"listener": EVENTS, "scope": "session", "session": ["a"], "payload": "x"}),
        json!({"scope": "global", "payload": "x"}),
        json!({"listener": EVENTS, "payload": "x"}),
        json!({"listener": EVENTS, "scope": "global"}),
        json!({"listener": EVENTS, "scope": "global", "payload": "x", "extra": true}),
        json!({"listener": EVENTS, "scope": "global", "payload": "x", "_session": {}}),
    ];
    for body in typed {
        let msg = post_json(&app, "/admin/v1/publish", &body)
            .await
            .expect_error(400);
        assert!(msg.starts_with("invalid JSON body"), "{body}: {msg}");
    }
    // Nothing was delivered: the first message the client gets is this one.
    let res = post_json(
        &app,
        "/admin/v1/publish",
        &json!({"listener": EVENTS, "scope": "global", "payload": "first"}),
    )
    .await;
    assert_eq!(res.expect_ok(), json!({"delivered": 1}));
    assert_eq!(ws.recv_text().await, "first");
}

/// "JSON in" (docs/admin-api.yaml): the body is JSON whatever the client
/// declares, so `curl -d` (a form content type) and clients sending none work
/// alike.
#[actix_rt::test]
async fn a_json_body_is_read_whatever_its_declared_content_type() {
    let app = app();
    let mut ws = app.connect(EVENTS, "acme").await;
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=utf-8"),
    ] {
        let payload = format!("{ct:?}");
        let body = json!({"listener": EVENTS, "scope": "global", "payload": payload}).to_string();
        let res = publish(ct, body).send(&app).await;
        assert_eq!(res.expect_ok(), json!({"delivered": 1}), "{ct:?}");
        assert_eq!(ws.recv_text().await, payload);
    }
    // Not JSON is still a 400, whatever the content type says.
    publish(Some("text/plain"), "listener=/ws/events")
        .send(&app)
        .await
        .expect_error(400);
    publish(None, "").send(&app).await.expect_error(400);
}

#[actix_rt::test]
async fn bodies_up_to_the_limit_are_read_larger_ones_are_413() {
    let app = app();
    let mut ws = app.connect(EVENTS, "acme").await;
    let json_ct = Some("application/json");
    let msg = publish(json_ct, padded_publish(LIMIT + 1).0)
        .send(&app)
        .await
        .expect_error(413);
    assert!(msg.contains(&LIMIT.to_string()), "{msg}");
    // Without a Content-Length the limit applies while reading.
    publish(json_ct, padded_publish(LIMIT + 1).0)
        .chunked()
        .send(&app)
        .await
        .expect_error(413);
    let (body, payload) = padded_publish(LIMIT);
    let res = publish(json_ct, body).send(&app).await;
    assert_eq!(res.expect_ok(), json!({"delivered": 1}));
    // The oversized one was not delivered: this is the first message.
    assert_eq!(ws.recv_text().await, payload);
}

#[actix_rt::test]
async fn bad_query_parameters_are_400() {
    let app = app();
    let _ws = app.connect(EVENTS, "acme").await;
    delete(&app, "/admin/v1/tenants/acme/sessions?lstener=/ws/events")
        .await
        .expect_error(400);
    // The tenant was not kicked.
    assert_eq!(session_ids(&app, "acme").await.len(), 1);
    let res = get(&app, "/healthz").await;
    assert_eq!(res.status, 200);
}
