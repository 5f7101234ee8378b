//! Presence on one node over real sockets: the `presence` op (who is
//! subscribed, with permission checks and bad input), `not_available` when
//! presence is off, and the `join`/`leave` pushes to a channel's other
//! subscribers — on subscribe and unsubscribe, on disconnect, on an admin
//! unsubscribe and when a refresh no longer allows the subscription — plus the
//! `presence` of the admin channel detail.

use common::admin::*;
use common::channels::*;
use common::*;
use serde_json::{json, Value};
use wsplus::settings::{ChannelAccess, ChannelsSettings, Scope};

const OFF: &str = "/ws/no-presence";
const GLOBAL_CH: &str = "/ws/global-channels";

fn presence(join_leave: bool) -> ChannelsSettings {
    ChannelsSettings {
        subscribe: ChannelAccess::Claim,
        presence: true,
        join_leave,
        ..Default::default()
    }
}

/// `/ws/channels` with presence and join/leave (claim permissions),
/// `/ws/no-presence` without presence, a global one with presence only.
fn app() -> TestApp {
    let mut s = base_settings();
    s.listeners = vec![
        channels_listener(CHANNELS, Scope::Tenant, presence(true)),
        channels_listener(OFF, Scope::Tenant, ChannelsSettings::default()),
        channels_listener(GLOBAL_CH, Scope::Global, presence(false)),
    ];
    TestApp::spawn(s)
}

/// A client of `tenant` with subject `sub` allowed to subscribe to `room*`.
async fn member(app: &TestApp, path: &str, tenant: &str, sub: Option<&str>) -> Chan {
    let claims = json!({"channels": {"subscribe": ["room*"]}});
    Chan::connect(app, path, &channels_token(tenant, sub, 3600, claims)).await
}

fn id_of(c: &Chan) -> String {
    c.connected["session"]["id"].as_str().unwrap().to_owned()
}

fn entry(c: &Chan) -> Value {
    json!({"id": id_of(c), "subject": c.connected["session"]["subject"]})
}

/// The clients of a `presence` reply, sorted by id.
async fn clients(c: &mut Chan, channel: &str) -> Vec<Value> {
    let r = c.cmd(json!({"op": "presence", "channel": channel})).await;
    let list = r["result"]["clients"]
        .as_array()
        .unwrap_or_else(|| panic!("not a presence result: {r}"))
        .clone();
    list
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|e| e["id"].as_str().unwrap().to_owned());
    v
}

#[tokio::test]
async fn presence_lists_the_subscribers_of_the_channel_in_the_tenant() {
    let app = app();
    let mut alice = member(&app, CHANNELS, "acme", Some("alice")).await;
    let mut anon = member(&app, CHANNELS, "acme", None).await;
    let mut watcher = member(&app, CHANNELS, "acme", Some("w")).await;
    let mut other_tenant = member(&app, CHANNELS, "globex", Some("g")).await;
    assert!(clients(&mut watcher, "room:1").await.is_empty());

    alice.subscribe("room:1").await;
    // Subscribing twice is one entry.
    alice.subscribe("room:1").await;
    anon.subscribe("room:1").await;
    anon.subscribe("room:2").await;
    other_tenant.subscribe("room:1").await;

    // The watcher is not subscribed: permission is enough.
    let got = clients(&mut watcher, "room:1").await;
    assert_eq!(got, sorted(vec![entry(&alice), entry(&anon)]));
    assert!(got.iter().any(|e| e["subject"] == Value::Null));
    assert_eq!(clients(&mut watcher, "room:2").await, [entry(&anon)]);
    assert_eq!(
        clients(&mut other_tenant, "room:1").await,
        [entry(&other_tenant)]
    );

    // Unsubscribing and disconnecting remove the entry.
    let r = alice
        .cmd(json!({"op": "unsubscribe", "channel": "room:1"}))
        .await;
    assert_eq!(r["result"], json!({}));
    assert_eq!(clients(&mut watcher, "room:1").await, [entry(&anon)]);
    anon.ws.close().await;
    eventually("anon's entries are gone", async || {
        clients(&mut watcher, "room:1").await.is_empty()
            && clients(&mut watcher, "room:2").await.is_empty()
    })
    .await;
}

#[tokio::test]
async fn presence_needs_subscribe_permission_and_presence_on() {
    let app = app();
    let mut c = member(&app, CHANNELS, "acme", Some("a")).await;
    let r = c.cmd(json!({"op": "presence", "channel": "secret"})).await;
    assert_eq!(Chan::code(&r), "forbidden", "{r}");
    let claims = json!({"channels": {"subscribe": ["room:{sub}"]}});
    let mut own = Chan::connect(
        &app,
        CHANNELS,
        &channels_token("acme", Some("bob"), 3600, claims),
    )
    .await;
    assert_eq!(
        Chan::code(
            &own.cmd(json!({"op": "presence", "channel": "room:alice"}))
                .await
        ),
        "forbidden"
    );
    assert!(clients(&mut own, "room:bob").await.is_empty());

    // Presence off: not_available, even for a channel one subscribes to.
    let mut off = member(&app, OFF, "acme", Some("a")).await;
    off.subscribe("room:1").await;
    let r = off
        .cmd(json!({"op": "presence", "channel": "room:1"}))
        .await;
    assert_eq!(Chan::code(&r), "not_available", "{r}");
    off.no_push().await;
}

#[tokio::test]
async fn malformed_presence_commands_get_bad_request() {
    let app = app();
    let mut c = member(&app, CHANNELS, "acme", Some("a")).await;
    for (cmd, why) in [
        (json!({"op": "presence"}), "no channel"),
        (
            json!({"op": "presence", "channel": 7}),
            "channel not a string",
        ),
        (json!({"op": "presence", "channel": ""}), "empty channel"),
        (
            json!({"op": "presence", "channel": "room 1"}),
            "space in the name",
        ),
        (
            json!({"op": "presence", "channel": "x".repeat(201)}),
            "name too long",
        ),
    ] {
        let r = c.cmd(cmd).await;
        assert_eq!(Chan::code(&r), "bad_request", "{why}: {r}");
    }
    // The connection is still usable.
    c.subscribe("room:1").await;
    assert_eq!(clients(&mut c, "room:1").await, [entry(&c)]);
}

#[tokio::test]
async fn join_and_leave_go_to_the_other_subscribers() {
    let app = app();
    let mut a = member(&app, CHANNELS, "acme", Some("alice")).await;
    let mut b = member(&app, CHANNELS, "acme", Some("bob")).await;
    let mut elsewhere = member(&app, CHANNELS, "acme", Some("e")).await;
    let mut other_tenant = member(&app, CHANNELS, "globex", Some("g")).await;
    a.subscribe("room:1").await;
    elsewhere.subscribe("room:2").await;
    other_tenant.subscribe("room:1").await;
    // Nobody else was there when a joined.
    a.no_push().await;

    b.subscribe("room:1").await;
    let j = a.push().await;
    assert_eq!(
        j,
        json!({"push": "join", "channel": "room:1", "client": entry(&b)})
    );
    // Not to the one who joined, nor to other channels or tenants.
    b.no_push().await;
    elsewhere.no_push().await;
    other_tenant.no_push().await;
    // Subscribing again is no new join.
    b.subscribe("room:1").await;
    a.no_push().await;

    let r = b
        .cmd(json!({"op": "unsubscribe", "channel": "room:1"}))
        .await;
    assert_eq!(r["result"], json!({}));
    assert_eq!(
        a.push().await,
        json!({"push": "leave", "channel": "room:1", "client": entry(&b)})
    );
    b.no_push().await;

    // A disconnect is a leave of every channel.
    b.subscribe("room:1").await;
    assert_eq!(a.push().await["push"], "join");
    b.subscribe("room:2").await;
    assert_eq!(elsewhere.push().await["push"], "join");
    let gone = entry(&b);
    b.ws.close().await;
    let l = a.push().await;
    assert_eq!(
        l,
        json!({"push": "leave", "channel": "room:1", "client": gone})
    );
    assert_eq!(elsewhere.push().await["channel"], "room:2");
    other_tenant.no_push().await;
}

#[tokio::test]
async fn admin_and_refresh_ends_are_leaves_too() {
    let app = app();
    let mut a = member(&app, CHANNELS, "acme", Some("alice")).await;
    let mut b = member(&app, CHANNELS, "acme", Some("bob")).await;
    a.subscribe("room:1").await;
    b.subscribe("room:1").await;
    assert_eq!(a.push().await["push"], "join");

    // The administrator ends b's subscription.
    let path = format!("/admin/v1/sessions/{}/subscriptions/room:1", id_of(&b));
    delete(&app, &path).await.expect_ok();
    assert_eq!(b.push().await["reason"], "admin");
    assert_eq!(
        a.push().await,
        json!({"push": "leave", "channel": "room:1", "client": entry(&b)})
    );
    // A server-side subscription is a join (and presence lists it).
    let body = json!({"channel": "room:1"});
    post_json(
        &app,
        &format!("/admin/v1/sessions/{}/subscriptions", id_of(&b)),
        &body,
    )
    .await
    .expect_ok();
    assert_eq!(b.push().await["push"], "subscribe");
    assert_eq!(a.push().await["client"], entry(&b));
    assert_eq!(
        clients(&mut a, "room:1").await,
        sorted(vec![entry(&a), entry(&b)])
    );
    let detail = get(
        &app,
        &format!("/admin/v1/channels/room:1?listener={CHANNELS}&tenant=acme"),
    )
    .await
    .expect_ok();
    assert_eq!(detail["subscribers"], 2);
    assert_eq!(
        detail["presence"],
        json!(sorted(vec![entry(&a), entry(&b)]))
    );

    // A refresh that no longer allows room:2 ends it: a leave for the others.
    let claims = json!({"channels": {"subscribe": ["room:*"]}});
    let mut c = Chan::connect(
        &app,
        CHANNELS,
        &channels_token("acme", Some("carol"), 3600, claims),
    )
    .await;
    c.subscribe("room:2").await;
    a.subscribe("room:2").await;
    assert_eq!(c.push().await["client"], entry(&a));
    let narrower = channels_token(
        "acme",
        Some("carol"),
        3600,
        json!({"channels": {"subscribe": ["room:1"]}}),
    );
    let r = c.cmd(json!({"op": "refresh", "token": narrower})).await;
    assert!(r["result"]["expires_at"].is_u64(), "{r}");
    assert_eq!(
        c.push().await,
        json!({"push": "unsubscribe", "channel": "room:2", "reason": "forbidden"})
    );
    assert_eq!(
        a.push().await,
        json!({"push": "leave", "channel": "room:2", "client": entry(&c)})
    );
    assert_eq!(clients(&mut a, "room:2").await, [entry(&a)]);
}

#[tokio::test]
async fn presence_without_join_leave_pushes_nothing_and_global_spans_tenants() {
    let app = app();
    let mut a = member(&app, GLOBAL_CH, "acme", Some("alice")).await;
    let mut b = member(&app, GLOBAL_CH, "globex", Some("bob")).await;
    a.subscribe("room:1").await;
    b.subscribe("room:1").await;
    a.no_push().await;
    let got = clients(&mut a, "room:1").await;
    assert_eq!(got, sorted(vec![entry(&a), entry(&b)]));
    // The admin detail of a global listener has no tenant; the presence key
    // is only there when presence is on.
    let detail = get(
        &app,
        &format!("/admin/v1/channels/room:1?listener={GLOBAL_CH}"),
    )
    .await
    .expect_ok();
    assert_eq!(detail["presence"], json!(got));
    let off = get(
        &app,
        &format!("/admin/v1/channels/room:1?listener={OFF}&tenant=acme"),
    )
    .await
    .expect_ok();
    assert_eq!(off, json!({"channel": "room:1", "subscribers": 0}));
}
