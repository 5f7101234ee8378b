//! Channels across two nodes sharing one real Redis: a publication reaches the
//! subscribers of the same (listener, tenant, channel) on the other node and
//! nobody else, and a node is subscribed to a channel in Redis exactly while
//! it has a local subscriber.

use std::time::Duration;

use common::channels::*;
use common::cluster::*;
use common::*;
use serde_json::json;
use wsplus::settings::{ChannelsSettings, Scope};

const GLOBAL_CH: &str = "/ws/global-channels";

fn settings(redis: &RedisServer, node: &str) -> wsplus::settings::Settings {
    let mut s = node_settings(redis, node);
    s.listeners.push(channels_listener(
        CHANNELS,
        Scope::Tenant,
        ChannelsSettings::default(),
    ));
    s.listeners.push(channels_listener(
        GLOBAL_CH,
        Scope::Global,
        ChannelsSettings::default(),
    ));
    s
}

/// The Redis channel of tenant acme's `news` on the channels listener.
const NEWS: &str = "wsplus:c:{/ws/channels:acme:news}";

/// Nodes a and b on `redis`.
fn nodes(redis: &RedisServer) -> (TestApp, TestApp) {
    (
        TestApp::spawn(settings(redis, "a")),
        TestApp::spawn(settings(redis, "b")),
    )
}

/// How many connections subscribe to `name` in Redis.
async fn redis_subscribers(redis: &RedisServer, name: &str) -> i64 {
    let mut conn = redis.conn();
    let v: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(name)
        .query(&mut conn)
        .unwrap();
    v[0].1
}

async fn wait_subscribers(redis: &RedisServer, name: &str, want: i64) {
    poll_until(
        &format!("{want} Redis subscribers of {name}"),
        async || redis_subscribers(redis, name).await,
        |n| *n == want,
    )
    .await;
}

async fn client(app: &TestApp, path: &str, tenant: &str) -> Chan {
    Chan::connect_as(app, path, tenant).await
}

#[tokio::test]
async fn publications_cross_nodes_by_listener_tenant_and_channel() {
    let redis = RedisServer::start();
    let (a, b) = nodes(&redis);

    let mut publisher = client(&a, CHANNELS, "acme").await;
    let mut on_b = client(&b, CHANNELS, "acme").await;
    let mut other_channel = client(&b, CHANNELS, "acme").await;
    let mut other_tenant = client(&b, CHANNELS, "globex").await;
    assert_eq!(redis_subscribers(&redis, NEWS).await, 0);
    on_b.subscribe("news").await;
    other_channel.subscribe("sport").await;
    other_tenant.subscribe("news").await;
    wait_subscribers(&redis, NEWS, 1).await;

    publisher.publish("news", json!({"n": 1})).await;
    let p = on_b.push().await;
    assert_eq!(p["data"], json!({"n": 1}));
    assert_eq!(p["_session"]["tenantId"], "acme");
    // The publisher is not subscribed; the other channel and tenant get nothing.
    publisher.no_push().await;
    other_channel.no_push().await;
    other_tenant.no_push().await;

    // A second subscriber on b does not subscribe b twice; both receive.
    let mut second = client(&b, CHANNELS, "acme").await;
    second.subscribe("news").await;
    publisher.publish("news", json!(2)).await;
    assert_eq!(on_b.push().await["data"], 2);
    assert_eq!(second.push().await["data"], 2);
    assert_eq!(redis_subscribers(&redis, NEWS).await, 1);

    // b unsubscribes from Redis once its last local subscriber is gone.
    on_b.cmd(json!({"op": "unsubscribe", "channel": "news"}))
        .await;
    assert_eq!(redis_subscribers(&redis, NEWS).await, 1);
    second.ws.close().await;
    wait_subscribers(&redis, NEWS, 0).await;
}

/// A subscribe is answered once its node receives the channel from the
/// others (Redis confirmed the SUBSCRIBE), so whatever is published anywhere
/// after the reply reaches the subscriber.
#[tokio::test]
async fn a_subscribe_is_answered_once_redis_confirmed_the_channel() {
    let redis = RedisServer::start();
    let (a, b) = nodes(&redis);
    let mut publisher = client(&a, CHANNELS, "acme").await;
    let mut on_b = client(&b, CHANNELS, "acme").await;
    redis.pause();
    on_b.send_raw(r#"{"id":1,"op":"subscribe","channel":"news"}"#)
        .await;
    let early = tokio::time::timeout(Duration::from_millis(300), on_b.reply(json!(1))).await;
    redis.resume();
    assert!(early.is_err(), "answered before Redis confirmed: {early:?}");
    let r = on_b.reply(json!(1)).await;
    assert_eq!(r["result"]["channel"], "news", "{r}");
    assert_eq!(redis_subscribers(&redis, NEWS).await, 1);
    publisher.publish("news", json!(1)).await;
    assert_eq!(on_b.push().await["data"], 1);
}

#[tokio::test]
async fn global_channels_and_admin_publications_cross_nodes() {
    let redis = RedisServer::start();
    let (a, b) = nodes(&redis);
    let mut on_b = client(&b, GLOBAL_CH, "globex").await;
    on_b.subscribe("all").await;
    wait_subscribers(&redis, "wsplus:cg:{/ws/global-channels:all}", 1).await;
    let mut on_a = client(&a, GLOBAL_CH, "acme").await;
    on_a.publish("all", json!("from a")).await;
    let p = on_b.push().await;
    assert_eq!(p["data"], "from a");
    assert_eq!(p["_session"]["tenantId"], "acme");

    // An admin publication on node a reaches b's subscriber, and `delivered`
    // counts it although nobody on a subscribes.
    let body = json!({"listener": GLOBAL_CH, "scope": "global", "channel": "all", "payload": 3});
    let res = common::admin::post_json(&a, "/admin/v1/publish", &body).await;
    assert_eq!(
        res.expect_ok()["delivered"],
        1,
        "b's subscriber, cluster-wide"
    );
    assert_eq!(on_b.push().await["data"], 3);
}
