//! The admin API of channels-mode listeners over real sockets: publish to a
//! channel, the channel listing and detail, server-side subscriptions, bad
//! requests, and the channel metrics.

use common::admin::*;
use common::channels::*;
use common::metrics::*;
use common::*;
use serde_json::{json, Value};
use wsplus::settings::{ChannelAccess, ChannelsSettings, Scope};

const GLOBAL_CH: &str = "/ws/global-channels";

fn app() -> TestApp {
    let mut s = base_settings();
    s.listeners.push(channels_listener(
        CHANNELS,
        Scope::Tenant,
        ChannelsSettings {
            subscribe: ChannelAccess::Claim,
            max_per_session: 1,
            ..Default::default()
        },
    ));
    s.listeners.push(channels_listener(
        GLOBAL_CH,
        Scope::Global,
        ChannelsSettings::default(),
    ));
    TestApp::spawn(s)
}

async fn chan(app: &TestApp, path: &str, tenant: &str, channels: Value) -> Chan {
    let token = channels_token(tenant, Some("u"), 3600, json!({"channels": channels}));
    Chan::connect(app, path, &token).await
}

fn session_id(c: &Chan) -> String {
    c.connected["session"]["id"].as_str().unwrap().to_owned()
}

#[actix_rt::test]
async fn publish_to_a_channel_of_a_tenant_or_of_a_global_listener() {
    let app = app();
    let mut a = chan(&app, CHANNELS, "acme", json!({"subscribe": ["news"]})).await;
    let mut b = chan(&app, CHANNELS, "globex", json!({"subscribe": ["news"]})).await;
    a.subscribe("news").await;
    b.subscribe("news").await;
    let body = json!({"listener": CHANNELS, "scope": "tenant", "tenant": "acme",
                      "channel": "news", "payload": {"v": 1}});
    let r = post_json(&app, "/admin/v1/publish", &body)
        .await
        .expect_ok();
    assert_eq!(r, json!({"delivered": 1}));
    let p = a.push().await;
    assert_eq!(p["channel"], "news");
    assert_eq!(p["data"], json!({"v": 1}));
    assert_eq!(
        p["_session"],
        json!({"type": "admin", "id": null, "tenantId": "acme", "subject": "admin",
               "authStatus": "admin", "routingScope": "tenant"})
    );
    b.no_push().await;
    // A tenant nobody of which subscribes: delivered 0.
    let body = json!({"listener": CHANNELS, "scope": "tenant", "tenant": "initech",
                      "channel": "news", "payload": 1});
    assert_eq!(
        post_json(&app, "/admin/v1/publish", &body)
            .await
            .expect_ok()["delivered"],
        0
    );

    let mut g1 = chan(&app, GLOBAL_CH, "acme", json!({})).await;
    let mut g2 = chan(&app, GLOBAL_CH, "globex", json!({})).await;
    g1.subscribe("all").await;
    g2.subscribe("all").await;
    let body = json!({"listener": GLOBAL_CH, "scope": "global", "channel": "all", "payload": "x"});
    assert_eq!(
        post_json(&app, "/admin/v1/publish", &body)
            .await
            .expect_ok()["delivered"],
        2
    );
    assert_eq!(g1.push().await["_session"]["tenantId"], Value::Null);
    assert_eq!(g2.push().await["data"], "x");
}

#[actix_rt::test]
async fn bad_channel_publishes_are_refused() {
    let app = app();
    for (body, status) in [
        // No channel on a channels listener.
        (
            json!({"listener": CHANNELS, "scope": "tenant", "tenant": "acme", "payload": 1}),
            400,
        ),
        // A channel on a payload listener.
        (
            json!({"listener": "/ws/events", "scope": "tenant", "tenant": "acme", "channel": "x", "payload": 1}),
            400,
        ),
        // Tenant missing, tenant on a global listener, scope not the listener's.
        (
            json!({"listener": CHANNELS, "scope": "tenant", "channel": "x", "payload": 1}),
            400,
        ),
        (
            json!({"listener": GLOBAL_CH, "scope": "global", "tenant": "acme", "channel": "x", "payload": 1}),
            400,
        ),
        (
            json!({"listener": CHANNELS, "scope": "global", "channel": "x", "payload": 1}),
            400,
        ),
        (
            json!({"listener": CHANNELS, "scope": "session", "session": "s", "channel": "x", "payload": 1}),
            400,
        ),
        // An invalid channel name.
        (
            json!({"listener": CHANNELS, "scope": "tenant", "tenant": "acme", "channel": "a b", "payload": 1}),
            400,
        ),
        (
            json!({"listener": "/nope", "scope": "tenant", "tenant": "acme", "channel": "x", "payload": 1}),
            404,
        ),
    ] {
        post_json(&app, "/admin/v1/publish", &body)
            .await
            .expect_error(status);
    }
}

#[actix_rt::test]
async fn listing_detail_and_server_side_subscriptions() {
    let app = app();
    let mut a = chan(&app, CHANNELS, "acme", json!({"subscribe": ["news"]})).await;
    let mut b = chan(&app, CHANNELS, "acme", json!({"subscribe": ["news"]})).await;
    a.subscribe("news").await;
    b.subscribe("news").await;
    let q = format!("listener={CHANNELS}&tenant=acme");
    let list = get(&app, &format!("/admin/v1/channels?{q}"))
        .await
        .expect_ok();
    assert_eq!(list, json!([{"channel": "news", "subscribers": 2}]));
    let other = get(
        &app,
        &format!("/admin/v1/channels?listener={CHANNELS}&tenant=globex"),
    )
    .await;
    assert_eq!(other.expect_ok(), json!([]));

    // Server-side: no permission check, beyond max_per_session (1), pushed.
    let id = session_id(&a);
    let path = format!("/admin/v1/sessions/{id}/subscriptions");
    let r = post_json(&app, &path, &json!({"channel": "ops:a/b"})).await;
    assert_eq!(r.expect_ok(), json!({}));
    assert_eq!(
        a.push().await,
        json!({"push": "subscribe", "channel": "ops:a/b"})
    );
    let detail = get(&app, &format!("/admin/v1/channels/ops%3Aa%2Fb?{q}"))
        .await
        .expect_ok();
    assert_eq!(detail, json!({"channel": "ops:a/b", "subscribers": 1}));
    let body = json!({"listener": CHANNELS, "scope": "tenant", "tenant": "acme",
                      "channel": "ops:a/b", "payload": "alert"});
    assert_eq!(
        post_json(&app, "/admin/v1/publish", &body)
            .await
            .expect_ok()["delivered"],
        1
    );
    assert_eq!(a.push().await["data"], "alert");
    // A refresh does not end a server-side subscription.
    let fresh = channels_token(
        "acme",
        Some("u"),
        3600,
        json!({"channels": {"subscribe": []}}),
    );
    let r = a.cmd(json!({"op": "refresh", "token": fresh})).await;
    assert!(r["result"]["expires_at"].is_u64(), "{r}");
    assert_eq!(
        a.push().await,
        json!({"push": "unsubscribe", "channel": "news", "reason": "forbidden"})
    );
    a.no_push().await;

    let r = delete(&app, &format!("{path}/ops%3Aa%2Fb")).await;
    assert_eq!(r.expect_ok(), json!({}));
    assert_eq!(
        a.push().await,
        json!({"push": "unsubscribe", "channel": "ops:a/b", "reason": "admin"})
    );
    let detail = get(&app, &format!("/admin/v1/channels/ops%3Aa%2Fb?{q}"))
        .await
        .expect_ok();
    assert_eq!(detail["subscribers"], 0);
    let list = get(&app, &format!("/admin/v1/channels?{q}"))
        .await
        .expect_ok();
    assert_eq!(list, json!([{"channel": "news", "subscribers": 1}]));
    b.no_push().await;
}

#[actix_rt::test]
async fn channel_routes_refuse_bad_input() {
    let app = app();
    for (path, status) in [
        (format!("/admin/v1/channels?listener={CHANNELS}"), 400),
        (
            format!("/admin/v1/channels?listener={GLOBAL_CH}&tenant=acme"),
            400,
        ),
        (
            "/admin/v1/channels?listener=/ws/events&tenant=acme".to_owned(),
            400,
        ),
        (
            "/admin/v1/channels?listener=/nope&tenant=acme".to_owned(),
            404,
        ),
        ("/admin/v1/channels".to_owned(), 400),
        (
            format!("/admin/v1/channels/a%20b?listener={CHANNELS}&tenant=acme"),
            400,
        ),
    ] {
        get(&app, &path).await.expect_error(status);
    }
    post_json(
        &app,
        "/admin/v1/sessions/nope/subscriptions",
        &json!({"channel": "x"}),
    )
    .await
    .expect_error(404);
    delete(&app, "/admin/v1/sessions/nope/subscriptions/x")
        .await
        .expect_error(404);
    let a = chan(&app, CHANNELS, "acme", json!({})).await;
    let path = format!("/admin/v1/sessions/{}/subscriptions", session_id(&a));
    post_json(&app, &path, &json!({"channel": ""}))
        .await
        .expect_error(400);
    post_json(&app, &path, &json!({})).await.expect_error(400);
}

#[actix_rt::test]
async fn metrics_count_channels_subscriptions_and_refreshes() {
    let app = app();
    let mut a = chan(&app, GLOBAL_CH, "acme", json!({})).await;
    let mut b = chan(&app, GLOBAL_CH, "globex", json!({})).await;
    a.subscribe("x").await;
    a.subscribe("y").await;
    b.subscribe("x").await;
    let m = scrape(app.admin).await;
    assert_eq!(
        m.value("wsplus_channels", &[("listener", GLOBAL_CH)]),
        Some(2.0)
    );
    assert_eq!(
        m.value("wsplus_subscriptions", &[("listener", GLOBAL_CH)]),
        Some(3.0)
    );
    assert_eq!(
        m.value("wsplus_channels", &[("listener", CHANNELS)]),
        Some(0.0)
    );
    // Not a channels listener: no series.
    assert_eq!(
        m.value("wsplus_channels", &[("listener", "/ws/events")]),
        None
    );
    let ok = channels_token("acme", Some("u"), 60, json!({}));
    a.cmd(json!({"op": "refresh", "token": ok})).await;
    let other = channels_token("acme", Some("v"), 60, json!({}));
    a.cmd(json!({"op": "refresh", "token": other})).await;
    a.cmd(json!({"op": "refresh", "token": "x.y.z"})).await;
    let m = scrape(app.admin).await;
    for (result, n) in [
        ("ok", 1.0),
        ("identity_changed", 1.0),
        ("invalid_token", 1.0),
    ] {
        assert_eq!(
            m.value("wsplus_refreshes_total", &[("result", result)]),
            Some(n),
            "{result}"
        );
    }
    // Leaving ends every subscription.
    b.ws.close().await;
    a.ws.close().await;
    wait_value(
        app.admin,
        "wsplus_subscriptions",
        &[("listener", GLOBAL_CH)],
        0.0,
    )
    .await;
    wait_value(
        app.admin,
        "wsplus_channels",
        &[("listener", GLOBAL_CH)],
        0.0,
    )
    .await;
}
