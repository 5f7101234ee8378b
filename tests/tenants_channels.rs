//! A tenant record's `max_channels` over real sockets: how many channels with
//! subscribers a tenant may have on a channels-mode listener, counted per
//! listener, with existing channels still joinable at the limit, slots freed
//! by unsubscribes and disconnects, server-side subscriptions refused with
//! 409, and admin-API changes applied to the next subscribe — on the node
//! that took them, and within a second on another node of a Redis cluster
//! (where each node counts its own channels).

use common::admin::*;
use common::channels::*;
use common::cluster::{node_settings, RedisServer};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

use wsplus::settings::{ChannelsSettings, Scope, TenantStore};
use wsplus::tenants::TenantSpec;

const OTHER: &str = "/ws/other-channels";
const GLOBAL: &str = "/ws/global-channels";

/// Two tenant-scope channels listeners and a global-scope one; `acme` is
/// registered with `max_channels = 2`.
fn app() -> TestApp {
    let mut s = base_settings();
    s.listeners = vec![
        channels_listener(CHANNELS, Scope::Tenant, ChannelsSettings::default()),
        channels_listener(OTHER, Scope::Tenant, ChannelsSettings::default()),
        channels_listener(GLOBAL, Scope::Global, ChannelsSettings::default()),
    ];
    let mut acme = TenantSpec::new("acme");
    acme.max_channels = Some(2);
    s.tenants.registered = vec![acme];
    TestApp::spawn(s)
}

async fn client(app: &TestApp, path: &str, tenant: &str) -> Chan {
    Chan::connect_as(app, path, tenant).await
}

/// Subscribes `c` server-side through the admin API.
async fn admin_subscribe(app: &TestApp, c: &Chan, channel: &str) -> Response {
    let path = format!("/admin/v1/sessions/{}/subscriptions", c.session_id());
    post_json(app, &path, &json!({"channel": channel})).await
}

/// The reply to a subscribe that must be refused by `max_channels`.
async fn refused(c: &mut Chan, channel: &str) {
    let r = c.cmd(json!({"op": "subscribe", "channel": channel})).await;
    assert_eq!(Chan::code(&r), "limit_exceeded", "{channel}: {r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_channels"),
        "{r}"
    );
}

async fn channels_of(app: &TestApp, path: &str, tenant: &str) -> Value {
    get(
        app,
        &format!("/admin/v1/channels?listener={path}&tenant={tenant}"),
    )
    .await
    .expect_ok()
}

async fn patch(app: &TestApp, tenant: &str, body: Value) -> Value {
    Req::new("PATCH", &format!("/admin/v1/tenants/{tenant}/settings"))
        .json(&body)
        .send(app)
        .await
        .expect_ok()
}

#[actix_rt::test]
async fn max_channels_bounds_new_channels_per_listener_and_frees_slots() {
    let app = app();
    let mut a = client(&app, CHANNELS, "acme").await;
    let mut b = client(&app, CHANNELS, "acme").await;
    a.subscribe("x").await;
    a.subscribe("y").await;
    refused(&mut a, "z").await;
    refused(&mut b, "z").await;
    // At the limit, the tenant's existing channels stay joinable.
    b.subscribe("x").await;
    b.subscribe("y").await;
    a.subscribe("x").await;
    assert_eq!(
        channels_of(&app, CHANNELS, "acme").await,
        json!([{"channel": "x", "subscribers": 2}, {"channel": "y", "subscribers": 2}])
    );
    // Another listener has its own count; another tenant has no record.
    let mut o = client(&app, OTHER, "acme").await;
    o.subscribe("p").await;
    o.subscribe("q").await;
    refused(&mut o, "r").await;
    let mut g = client(&app, CHANNELS, "globex").await;
    for ch in ["x", "y", "z", "w"] {
        g.subscribe(ch).await;
    }
    // A global-scope listener's channels are no tenant's.
    let mut shared = client(&app, GLOBAL, "acme").await;
    for ch in ["x", "y", "z"] {
        shared.subscribe(ch).await;
    }

    // A channel frees its slot when its last subscriber unsubscribes...
    for c in [&mut a, &mut b] {
        let r = c.cmd(json!({"op": "unsubscribe", "channel": "y"})).await;
        assert_eq!(r["result"], json!({}));
    }
    a.subscribe("z").await;
    refused(&mut b, "w").await;
    // ...or disconnects.
    a.ws.close().await;
    poll_until(
        "a's channels closed",
        async || channels_of(&app, CHANNELS, "acme").await,
        |v| v == &json!([{"channel": "x", "subscribers": 1}]),
    )
    .await;
    b.subscribe("w").await;
}

#[actix_rt::test]
async fn server_side_subscriptions_beyond_max_channels_are_409() {
    let app = app();
    let mut a = client(&app, CHANNELS, "acme").await;
    a.subscribe("x").await;
    a.subscribe("y").await;
    let err = admin_subscribe(&app, &a, "z").await.expect_error(409);
    assert!(err.contains("limit_exceeded"), "{err}");
    assert!(err.contains("max_channels"), "{err}");
    a.no_push().await;
    // An existing channel is still joinable server-side.
    let mut b = client(&app, CHANNELS, "acme").await;
    let r = admin_subscribe(&app, &b, "x").await;
    assert_eq!(r.expect_ok(), json!({}));
    assert_eq!(b.push().await, json!({"push": "subscribe", "channel": "x"}));
}

#[actix_rt::test]
async fn admin_changes_apply_to_the_next_subscribe_without_a_restart() {
    let app = app();
    let mut a = client(&app, CHANNELS, "acme").await;
    a.subscribe("x").await;
    a.subscribe("y").await;
    refused(&mut a, "z").await;
    // Raised: the same session may open one more.
    patch(&app, "acme", json!({"max_channels": 3})).await;
    a.subscribe("z").await;
    refused(&mut a, "w").await;
    // Lowered below the count: nothing is closed, no new channel opens.
    patch(&app, "acme", json!({"max_channels": 1})).await;
    refused(&mut a, "w").await;
    a.no_push().await;
    assert_eq!(
        channels_of(&app, CHANNELS, "acme")
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let mut b = client(&app, CHANNELS, "acme").await;
    b.subscribe("z").await;
    // 0 and removing the field both mean no limit.
    patch(&app, "acme", json!({"max_channels": 0})).await;
    a.subscribe("w").await;
    patch(&app, "acme", json!({"max_channels": 4})).await;
    refused(&mut a, "v").await;
    patch(&app, "acme", json!({"max_channels": null})).await;
    a.subscribe("v").await;

    // A tenant registered while its sessions are open is bound at once.
    let mut g = client(&app, CHANNELS, "globex").await;
    g.subscribe("x").await;
    Req::new("PUT", "/admin/v1/tenants/globex/settings")
        .json(&json!({"max_channels": 1}))
        .send(&app)
        .await
        .expect_ok();
    refused(&mut g, "y").await;
    // Unregistered again: the listener has no channel limit.
    delete(&app, "/admin/v1/tenants/globex/settings")
        .await
        .expect_ok();
    g.subscribe("y").await;
}

#[actix_rt::test]
async fn bad_max_channels_values_are_refused_with_the_field_named() {
    let app = app();
    for bad in [
        json!(-1),
        json!(1.5),
        json!("10"),
        json!(true),
        json!(10_000_001),
    ] {
        for method in ["PUT", "PATCH"] {
            let err = Req::new(method, "/admin/v1/tenants/acme/settings")
                .json(&json!({"max_channels": bad}))
                .send(&app)
                .await
                .expect_error(400);
            assert!(err.starts_with("max_channels: "), "{method} {bad}: {err}");
        }
    }
    // Nothing changed.
    let rec = get(&app, "/admin/v1/tenants/acme/settings")
        .await
        .expect_ok();
    assert_eq!(rec["max_channels"], 2);
    assert_eq!(rec["source"], "config");
}

#[actix_rt::test]
async fn in_a_cluster_a_change_applies_on_every_node_within_a_second() {
    let redis = RedisServer::start();
    let node = |id: &str| {
        let mut s = node_settings(&redis, id);
        s.tenants.store = TenantStore::Redis;
        s.listeners = vec![channels_listener(
            CHANNELS,
            Scope::Tenant,
            ChannelsSettings::default(),
        )];
        TestApp::spawn(s)
    };
    let (a, b) = (node("a"), node("b"));
    let mut on_b = client(&b, CHANNELS, "acme").await;
    on_b.subscribe("x").await;

    Req::new("PUT", "/admin/v1/tenants/acme/settings")
        .json(&json!({"max_channels": 1}))
        .send(&a)
        .await
        .expect_ok();
    // Each try opens a channel on b until the new limit has arrived there.
    let mut tries = 0;
    poll_within(
        Duration::from_secs(1),
        "b refusing a second channel",
        async || {
            tries += 1;
            let ch = format!("y{tries}");
            on_b.cmd(json!({"op": "subscribe", "channel": ch})).await
        },
        |r| r["error"]["code"] == "limit_exceeded",
    )
    .await;
    // Counted per node: a has no channel of acme yet.
    let mut on_a = client(&a, CHANNELS, "acme").await;
    on_a.subscribe("z").await;
    refused(&mut on_a, "w").await;
}
