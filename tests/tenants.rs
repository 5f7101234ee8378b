//! Tenant records (`[tenants]`, the tenant-settings admin routes) and their
//! effects over real sockets: registered and enabled checks at the handshake,
//! per-tenant connection caps and rates, sessions closed on disable, and
//! persistence across a restart.

use std::time::{Duration, Instant};

use common::admin::*;
use common::*;
use serde_json::{json, Value};
use wsplus::settings::{OnRateLimit, Settings, TenantPolicy};
use wsplus::tenants::TenantSpec;

const A: &str = "/ws/a";
const B: &str = "/ws/b";

/// Two tenant-scope listeners, /ws/a capped at 1 connection per tenant.
fn settings(policy: TenantPolicy, registered: Vec<TenantSpec>) -> Settings {
    let mut s = base_settings();
    let mut a = listener(A);
    a.session.max_connections_per_tenant = 1;
    s.listeners = vec![a, listener(B)];
    s.tenants.policy = policy;
    s.tenants.registered = registered;
    s
}

fn spec(id: &str, f: impl FnOnce(&mut TenantSpec)) -> TenantSpec {
    let mut s = TenantSpec::new(id);
    f(&mut s);
    s
}

async fn settings_of(app: &TestApp, id: &str) -> Response {
    get(app, &format!("/admin/v1/tenants/{id}/settings")).await
}

async fn change(app: &TestApp, method: &str, id: &str, body: Value) -> Response {
    Req::new(method, &format!("/admin/v1/tenants/{id}/settings"))
        .json(&body)
        .send(app)
        .await
}

async fn refused(app: &TestApp, path: &str, tenant: &str) -> (u16, Value) {
    let url = app.ws_url(path, Some(&token(tenant, Some("u"), 3600)));
    let Err(r) = Ws::try_connect(&url).await else {
        panic!("{tenant} on {path}: handshake accepted");
    };
    (r.status, serde_json::from_str(&r.body).expect("json body"))
}

#[actix_rt::test]
async fn the_settings_routes_list_read_change_and_validate() {
    let app = TestApp::spawn(settings(
        TenantPolicy::Open,
        vec![spec("acme", |s| s.max_connections = Some(5))],
    ));
    let list = get(&app, "/admin/v1/tenant-settings").await.expect_ok();
    assert_eq!(
        list,
        json!([{"id": "acme", "enabled": true, "max_connections": 5, "source": "config"}])
    );

    let put = change(&app, "PUT", "globex", json!({"rate_limit_per_s": 3}));
    let rec = put.await.expect_ok();
    assert_eq!(
        rec,
        json!({"id": "globex", "enabled": true, "rate_limit_per_s": 3, "source": "api"})
    );
    let patched = change(&app, "PATCH", "acme", json!({"max_channels": 9}))
        .await
        .expect_ok();
    assert_eq!(
        patched,
        json!({"id": "acme", "enabled": true, "max_connections": 5, "max_channels": 9, "source": "api"})
    );
    assert_eq!(settings_of(&app, "acme").await.expect_ok(), patched);

    // Errors: 4xx with {"error"} naming the field.
    let unknown = change(&app, "PATCH", "nobody", json!({"enabled": false})).await;
    assert!(unknown.expect_error(404).contains("nobody"));
    settings_of(&app, "nobody").await.expect_error(404);
    for (body, field) in [
        (json!({"id": "other"}), "id"),
        (json!({"max_connections": -1}), "max_connections"),
        (json!({"enabled": 1}), "enabled"),
        (json!({"jwks_uri": "https://idp/keys"}), "issuer"),
        (json!({"limit": 1}), "limit"),
        (json!("acme"), "body"),
    ] {
        let err = change(&app, "PUT", "acme", body.clone())
            .await
            .expect_error(400);
        assert!(err.contains(field), "{body}: {err}");
    }
    // DELETE: the config record applies again; a config-only record has nothing to delete.
    let del = delete(&app, "/admin/v1/tenants/acme/settings")
        .await
        .expect_ok();
    assert_eq!(del["record"]["source"], "config");
    assert_eq!(del["record"].get("max_channels"), None);
    delete(&app, "/admin/v1/tenants/acme/settings")
        .await
        .expect_error(409);
    let del = delete(&app, "/admin/v1/tenants/globex/settings")
        .await
        .expect_ok();
    assert_eq!(del, json!({"id": "globex", "record": null}));
    delete(&app, "/admin/v1/tenants/globex/settings")
        .await
        .expect_error(404);
}

#[actix_rt::test]
async fn registered_policy_refuses_unknown_tenants_and_counts_them() {
    let app = TestApp::spawn(settings(
        TenantPolicy::Registered,
        vec![TenantSpec::new("acme")],
    ));
    let _ok = app.connect(B, "acme").await;
    let (status, body) = refused(&app, B, "stranger").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("unknown_tenant"))
    );
    assert_eq!(app.rejected("unknown_tenant"), 1);
    let stats = get(&app, "/admin/v1/stats").await.expect_ok();
    assert_eq!(stats["rejected"]["unknown_tenant"], 1);
    let metrics = get(&app, "/metrics").await.body;
    assert!(
        metrics.contains("wsplus_handshake_rejections_total{reason=\"unknown_tenant\"} 1"),
        "{metrics}"
    );
    // Registering through the API lets it in; unregistering closes it with 4003.
    change(&app, "PUT", "stranger", json!({})).await.expect_ok();
    let mut ws = app.connect(B, "stranger").await;
    let t = Instant::now();
    delete(&app, "/admin/v1/tenants/stranger/settings")
        .await
        .expect_ok();
    assert_eq!(ws.recv_close().await.0, 4003);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(
        refused(&app, B, "stranger").await.1["reason"],
        "unknown_tenant"
    );
}

#[actix_rt::test]
async fn disabling_refuses_handshakes_and_closes_open_sessions_within_a_second() {
    let app = TestApp::spawn(settings(
        TenantPolicy::Open,
        vec![spec("off", |s| s.enabled = false)],
    ));
    let (status, body) = refused(&app, B, "off").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("tenant_disabled"))
    );
    assert_eq!(app.rejected("tenant_disabled"), 1);

    let mut acme = [app.connect(A, "acme").await, app.connect(B, "acme").await];
    let mut other = app.connect(B, "other").await;
    let t = Instant::now();
    change(&app, "PATCH", "acme", json!({"enabled": false}))
        .await
        .expect_error(404);
    change(&app, "PUT", "acme", json!({"enabled": false}))
        .await
        .expect_ok();
    for ws in &mut acme {
        assert_eq!(ws.recv_close().await.0, 4003);
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(
        refused(&app, A, "acme").await.1["reason"],
        "tenant_disabled"
    );
    // Other tenants are untouched.
    other.send_text("still here").await;
    assert_eq!(other.recv_text().await, "still here");
    // Enabled again: it connects.
    change(&app, "PATCH", "acme", json!({"enabled": true}))
        .await
        .expect_ok();
    let _back = app.connect(A, "acme").await;
}

#[actix_rt::test]
async fn a_tenant_cap_replaces_the_listener_cap_and_counts_every_listener() {
    let app = TestApp::spawn(settings(
        TenantPolicy::Open,
        vec![spec("big", |s| s.max_connections = Some(3))],
    ));
    // The listener allows 1 per tenant on /ws/a; "big" may have 3 in all.
    let _a1 = app.connect(A, "big").await;
    let _a2 = app.connect(A, "big").await;
    let _b1 = app.connect(B, "big").await;
    let (status, body) = refused(&app, B, "big").await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (429, Some("tenant_limit"))
    );
    // Unregistered tenants keep the listener's cap.
    let _s1 = app.connect(A, "small").await;
    assert_eq!(refused(&app, A, "small").await.0, 429);
    // A raised cap applies to the next handshake; 0 lifts it.
    change(&app, "PATCH", "big", json!({"max_connections": 0}))
        .await
        .expect_ok();
    let _b2 = app.connect(B, "big").await;
    let _a3 = app.connect(A, "big").await;
    assert_eq!(app.rejected("tenant_limit"), 2);
}

#[actix_rt::test]
async fn a_tenant_rate_replaces_the_listener_rate() {
    let mut s = settings(
        TenantPolicy::Open,
        vec![
            spec("slow", |s| s.rate_limit_per_s = Some(1)),
            spec("free", |s| s.rate_limit_per_s = Some(0)),
        ],
    );
    for l in &mut s.listeners {
        l.session.rate_limit_per_s = 10;
        l.session.on_rate_limit = OnRateLimit::Close;
    }
    let app = TestApp::spawn(s);
    let mut slow = app.connect(B, "slow").await;
    // The server closes the socket right after the 4008: send no more.
    for i in 0..2 {
        slow.send_text(&format!("m{i}")).await;
    }
    assert_eq!(slow.recv_text().await, "m0");
    assert_eq!(
        slow.recv_close().await.0,
        4008,
        "1/s: the second message is over"
    );

    // 0 in the record: no limit, although the listener has one (10/s, so
    // these 200 messages would take 19 s).
    let mut free = app.connect(B, "free").await;
    for chunk in 0..10 {
        let batch = (chunk * 20)..(chunk * 20 + 20);
        for i in batch.clone() {
            free.send_text(&format!("{i}")).await;
        }
        for i in batch {
            assert_eq!(free.recv_text().await, format!("{i}"));
        }
    }
}

#[actix_rt::test]
async fn changes_survive_a_restart() {
    let s = settings(TenantPolicy::Registered, vec![TenantSpec::new("acme")]);
    let app = TestApp::spawn(s.clone());
    change(&app, "PUT", "globex", json!({"max_connections": 1}))
        .await
        .expect_ok();
    change(&app, "PATCH", "acme", json!({"enabled": false}))
        .await
        .expect_ok();
    app.shutdown().await;

    let app = TestApp::spawn(s);
    let list = get(&app, "/admin/v1/tenant-settings").await.expect_ok();
    assert_eq!(
        list,
        json!([
            {"id": "acme", "enabled": false, "source": "api"},
            {"id": "globex", "enabled": true, "max_connections": 1, "source": "api"},
        ])
    );
    assert_eq!(
        refused(&app, B, "acme").await.1["reason"],
        "tenant_disabled"
    );
    let _g = app.connect(B, "globex").await;
    assert_eq!(refused(&app, B, "globex").await.1["reason"], "tenant_limit");
}

#[test]
fn a_corrupt_or_unplaceable_store_stops_the_server_with_a_clear_error() {
    let dir = temp_dir("tenants-bad-store");
    let corrupt = dir.join("corrupt.db");
    std::fs::write(
        &corrupt,
        b"this is not an sqlite database, not at all........",
    )
    .unwrap();
    let missing = dir.join("no-such-dir").join("t.db");
    for (path, want) in [(&corrupt, "not a database"), (&missing, "does not exist")] {
        let config = temp_config(
            "tenants-bad-store",
            &format!(
                "[server]\nbind = \"127.0.0.1:0\"\n[admin]\nbind = \"127.0.0.1:0\"\n\
                 [[listeners]]\npath = \"/ws\"\n[tenants]\npath = {:?}\n",
                path.to_string_lossy()
            ),
        );
        let out = wsplus_bin()
            .args(["serve", "--config"])
            .arg(&config)
            .env("WSPLUS_JWT_SECRET", SECRET)
            .env("WSPLUS_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("tenant store") && stderr.contains(want),
            "{stderr}"
        );
    }
}
