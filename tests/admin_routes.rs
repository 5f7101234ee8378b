//! Admin queries and kicks (docs/admin-api.yaml) against real connected
//! clients: stats and listings exact, one session or a whole tenant closed with
//! 4003.

use common::admin::*;
use common::*;
use serde_json::{json, Value};
use wsplus::settings::{AuthMode, ListenerSettings};

/// Seconds since the Unix epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn stats(app: &TestApp) -> Value {
    get(app, "/admin/v1/stats").await.expect_ok()
}

#[actix_rt::test]
async fn stats_count_connections_tenants_messages_and_rejections() {
    let app = TestApp::spawn(admin_settings());
    let s = stats(&app).await;
    let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "connections",
        "tenants",
        "messages_in",
        "messages_out",
        "dropped",
        "rejected",
        "uptime_s",
    ] {
        assert!(keys.contains(&k), "{k} missing from {s}");
    }
    assert_eq!(s["connections"], 0);
    assert!(s["rejected"].as_object().unwrap().values().all(|v| v == 0));

    let mut a1 = app.connect(EVENTS, "acme").await;
    let mut a2 = app.connect(EVENTS, "acme").await;
    let _g = app.connect(MSG, "globex").await;
    let refused = Ws::try_connect(&app.ws_url(EVENTS, Some("not.a.jwt"))).await;
    assert_eq!(refused.err().map(|r| r.status), Some(401));

    a1.send_text("hi").await;
    assert_eq!(a1.recv_text().await, "hi");
    assert_eq!(a2.recv_text().await, "hi");
    eventually("one in, two out", || async {
        let s = stats(&app).await;
        s["messages_in"] == 1 && s["messages_out"] == 2
    })
    .await;
    let s = stats(&app).await;
    assert_eq!(s["connections"], 3);
    assert_eq!(s["tenants"], 2);
    assert_eq!(s["dropped"], 0);
    assert_eq!(s["rejected"]["malformed"], 1, "{s}");
    let rejected_total: u64 = s["rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(rejected_total, 1);
}

#[actix_rt::test]
async fn tenants_and_sessions_list_exactly_the_connected_clients() {
    let app = TestApp::spawn(admin_settings());
    let tenants = get(&app, "/admin/v1/tenants").await.expect_ok();
    assert_eq!(tenants, json!([]));

    let before = now();
    let _a1 = app.connect(EVENTS, "acme").await;
    let _a2 = app.connect(MSG, "acme").await;
    let _g = app.connect(EVENTS, "globex").await;

    let mut tenants = get(&app, "/admin/v1/tenants").await.expect_ok();
    let rows = tenants.as_array_mut().unwrap();
    rows.sort_by_key(|r| (r["listener"].to_string(), r["tenant"].to_string()));
    assert_eq!(
        tenants,
        json!([
            {"listener": EVENTS, "tenant": "acme", "connections": 1},
            {"listener": EVENTS, "tenant": "globex", "connections": 1},
            {"listener": MSG, "tenant": "acme", "connections": 1},
        ])
    );

    let sessions = get(&app, "/admin/v1/tenants/acme/sessions")
        .await
        .expect_ok();
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let mut listeners: Vec<&str> = sessions
        .iter()
        .map(|s| s["listener"].as_str().unwrap())
        .collect();
    listeners.sort();
    assert_eq!(listeners, [EVENTS, MSG]);
    for s in sessions {
        assert_eq!(s["tenant"], "acme");
        assert_eq!(s["subject"], "user");
        assert!(s["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
        let connected = s["connected_at"].as_u64().unwrap();
        assert!((before..=now()).contains(&connected), "{s}");
        let expires = s["expires_at"].as_u64().unwrap();
        assert!((before + 3600..=now() + 3600).contains(&expires), "{s}");
        assert_eq!(s["messages_in"], 0);
        assert_eq!(s["messages_out"], 0);
        // The same view by id.
        let one = get(
            &app,
            &format!("/admin/v1/sessions/{}", s["id"].as_str().unwrap()),
        )
        .await
        .expect_ok();
        assert_eq!(&one, s);
    }
    // Tenants need no registration: one with nobody connected has no sessions.
    let nobody = get(&app, "/admin/v1/tenants/nobody/sessions")
        .await
        .expect_ok();
    assert_eq!(nobody, json!([]));
    get(&app, "/admin/v1/sessions/no-such-session")
        .await
        .expect_error(404);
}

#[actix_rt::test]
async fn deleting_a_session_closes_it_with_4003() {
    let app = TestApp::spawn(admin_settings());
    let mut victim = app.connect(EVENTS, "acme").await;
    let victim_id = session_ids(&app, "acme").await[0].clone();
    let mut other = app.connect(EVENTS, "acme").await;
    let mut ids = session_ids(&app, "acme").await;
    ids.retain(|id| *id != victim_id);
    let path = format!("/admin/v1/sessions/{victim_id}");

    let res = delete(&app, &path).await.expect_ok();
    assert_eq!(res, json!({"closed": 1}));
    assert_eq!(victim.recv_close().await.0, 4003);
    eventually("the kicked session is gone", || async {
        get(&app, &path).await.status == 404
    })
    .await;
    delete(&app, &path).await.expect_error(404);
    // The other session of the tenant is untouched.
    other.send_text("still here").await;
    assert_eq!(other.recv_text().await, "still here");
    assert_eq!(session_ids(&app, "acme").await, ids);
}

#[actix_rt::test]
async fn deleting_a_tenants_sessions_closes_them_all_or_one_listeners() {
    let app = TestApp::spawn(admin_settings());
    let mut on_msg = app.connect(MSG, "acme").await;
    let mut on_events = [
        app.connect(EVENTS, "acme").await,
        app.connect(EVENTS, "acme").await,
    ];
    let mut bystander = app.connect(EVENTS, "globex").await;

    delete(&app, "/admin/v1/tenants/acme/sessions?listener=/ws/nope")
        .await
        .expect_error(404);
    let res = delete(&app, "/admin/v1/tenants/acme/sessions?listener=%2Fws%2Fmsg")
        .await
        .expect_ok();
    assert_eq!(res, json!({"closed": 1}));
    assert_eq!(on_msg.recv_close().await.0, 4003);
    eventually("acme keeps its two /ws/events sessions", || async {
        session_ids(&app, "acme").await.len() == 2
    })
    .await;

    let res = delete(&app, "/admin/v1/tenants/acme/sessions")
        .await
        .expect_ok();
    assert_eq!(res, json!({"closed": 2}));
    for ws in &mut on_events {
        assert_eq!(ws.recv_close().await.0, 4003);
    }
    eventually("acme is gone", || async {
        session_ids(&app, "acme").await.is_empty()
    })
    .await;
    // Nobody left to close is not an error.
    let res = delete(&app, "/admin/v1/tenants/acme/sessions")
        .await
        .expect_ok();
    assert_eq!(res, json!({"closed": 0}));
    bystander.send_text("unaffected").await;
    assert_eq!(bystander.recv_text().await, "unaffected");
}

/// Connects to `path` as user `sub` of `tenant`.
async fn connect_as(app: &TestApp, path: &str, tenant: &str, sub: &str) -> Ws {
    Ws::connect(&app.ws_url(path, Some(&token(tenant, Some(sub), 3600)))).await
}

#[actix_rt::test]
async fn deleting_one_users_sessions_closes_only_theirs() {
    let app = TestApp::spawn(admin_settings());
    let mut alice = [
        connect_as(&app, EVENTS, "acme", "alice").await,
        connect_as(&app, MSG, "acme", "alice").await,
    ];
    let mut alice_msg2 = connect_as(&app, MSG, "acme", "alice").await;
    let mut bob = connect_as(&app, EVENTS, "acme", "bob").await;
    // The same subject in another tenant is another user.
    let mut other_alice = connect_as(&app, EVENTS, "globex", "alice").await;

    delete(&app, "/admin/v1/tenants/acme/sessions?subject=")
        .await
        .expect_error(400);
    delete(
        &app,
        "/admin/v1/tenants/acme/sessions?subject=alice&listener=/ws/nope",
    )
    .await
    .expect_error(404);
    // One listener only.
    let res = delete(
        &app,
        "/admin/v1/tenants/acme/sessions?subject=alice&listener=%2Fws%2Fevents",
    )
    .await
    .expect_ok();
    assert_eq!(res, json!({"closed": 1}));
    assert_eq!(alice[0].recv_close().await.0, 4003);
    // Then every listener.
    let res = delete(&app, "/admin/v1/tenants/acme/sessions?subject=alice")
        .await
        .expect_ok();
    assert_eq!(res, json!({"closed": 2}));
    assert_eq!(alice[1].recv_close().await.0, 4003);
    assert_eq!(alice_msg2.recv_close().await.0, 4003);
    let res = delete(&app, "/admin/v1/tenants/acme/sessions?subject=carol")
        .await
        .expect_ok();
    assert_eq!(res, json!({"closed": 0}));
    for ws in [&mut bob, &mut other_alice] {
        ws.send_text("unaffected").await;
        assert_eq!(ws.recv_text().await, "unaffected");
    }
    eventually("only bob is left in acme", || async {
        session_ids(&app, "acme").await.len() == 1
    })
    .await;
}

#[actix_rt::test]
async fn listeners_show_settings_with_secrets_redacted() {
    let mut s = admin_settings();
    let mut jwks = ListenerSettings {
        path: "/ws/jwks".into(),
        ..Default::default()
    };
    jwks.auth.mode = AuthMode::Jwks;
    jwks.auth.secret_env = None;
    jwks.auth.jwks_uri = Some("http://alice:hunter2@127.0.0.1:9/jwks?api_key=k3y".into());
    s.listeners.push(jwks);
    let app = TestApp::spawn(s);

    let res = get(&app, "/admin/v1/listeners").await;
    let v = res.expect_ok();
    let rows = v.as_array().unwrap();
    let paths: Vec<&str> = rows.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths, [EVENTS, MSG, GLOBAL, "/ws/jwks"]);
    assert_eq!(rows[0]["mode"], "payload");
    assert_eq!(rows[1]["mode"], "message");
    assert_eq!(rows[2]["scope"], "global");
    assert_eq!(rows[0]["auth"]["secret_env"], "TEST_JWT_SECRET");
    assert_eq!(
        rows[3]["auth"]["jwks_uri"],
        "http://[redacted]@127.0.0.1:9/jwks?[redacted]"
    );
    for leaked in ["alice", "hunter2", "k3y"] {
        assert!(!res.body.contains(leaked), "{leaked} in {}", res.body);
    }
}
