//! `channel.occupied` / `channel.vacated` webhooks against a real backend on
//! loopback: a channel's first subscriber and its last one gone, once each,
//! in order with the other events, on one node and across nodes sharing a
//! Redis.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::channels::*;
use common::hooks::*;
use common::*;
use serde_json::{json, Value};
use wsplus::settings::{ChannelsSettings, Scope, Settings, WebhookEvent, WebhookSettings};

const PATH: &str = CHANNELS;

fn with_channel_webhook(backend: &Backend, scope: Scope) -> Settings {
    let mut s = base_settings();
    s.listeners = vec![channels_listener(PATH, scope, ChannelsSettings::default())];
    s.webhooks = vec![WebhookSettings {
        url: format!("http://{}/events", backend.addr),
        events: vec![WebhookEvent::ChannelOccupied, WebhookEvent::ChannelVacated],
        secret_env: Some("HOOK_SECRET".into()),
        ..Default::default()
    }];
    s
}

fn env() -> HashMap<String, String> {
    HashMap::from([("HOOK_SECRET".to_owned(), HOOK_SECRET.to_owned())])
}

/// Every event received, as sent, in order of arrival.
fn raw_events(backend: &Backend) -> Vec<Value> {
    backend
        .requests_to("events")
        .iter()
        .flat_map(|r| r.json["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// `(event, tenantId, channel)` of every event received, in order.
fn events(backend: &Backend) -> Vec<(String, Value, String)> {
    raw_events(backend)
        .into_iter()
        .map(|e| {
            assert_eq!(e["listener"], PATH, "{e}");
            assert!(e["time_ms"].as_u64().is_some(), "{e}");
            assert!(e.get("session").is_none(), "{e}");
            (
                e["event"].as_str().unwrap().to_owned(),
                e["tenantId"].clone(),
                e["channel"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn wait_events(backend: &Backend, n: usize) -> Vec<(String, Value, String)> {
    poll_within(
        WAIT,
        &format!("{n} channel events"),
        async || events(backend),
        |e| e.len() >= n,
    )
    .await
}

fn ev(event: &str, tenant: Value, channel: &str) -> (String, Value, String) {
    (event.to_owned(), tenant, channel.to_owned())
}

#[tokio::test]
async fn first_subscriber_occupies_and_last_one_gone_vacates_once() {
    let backend = Backend::start(|_| Answer::json(json!({})));
    let app = TestApp::spawn_with_env(with_channel_webhook(&backend, Scope::Tenant), env());
    let mut alice = Chan::connect_subject(&app, PATH, "acme", "alice").await;
    let mut bob = Chan::connect_subject(&app, PATH, "acme", "bob").await;
    alice.subscribe("news").await;
    bob.subscribe("news").await;
    let r = alice
        .cmd(json!({"op": "unsubscribe", "channel": "news"}))
        .await;
    assert_eq!(r["result"], json!({}));
    // The last subscriber leaves by closing its socket.
    bob.ws.close().await;
    // Another tenant's `news` is another channel.
    let mut eve = Chan::connect_subject(&app, PATH, "other", "eve").await;
    eve.subscribe("news").await;

    let got = wait_events(&backend, 3).await;
    assert_eq!(
        got,
        [
            ev("channel.occupied", json!("acme"), "news"),
            ev("channel.vacated", json!("acme"), "news"),
            ev("channel.occupied", json!("other"), "news"),
        ]
    );
    let batch = &backend.requests_to("events")[0];
    assert!(batch.signed_with(HOOK_SECRET));
}

#[tokio::test]
async fn global_listener_channels_have_no_tenant() {
    let backend = Backend::start(|_| Answer::json(json!({})));
    let app = TestApp::spawn_with_env(with_channel_webhook(&backend, Scope::Global), env());
    let mut a = Chan::connect_subject(&app, PATH, "acme", "alice").await;
    let mut b = Chan::connect_subject(&app, PATH, "other", "bob").await;
    a.subscribe("lobby").await;
    b.subscribe("lobby").await;
    a.ws.close().await;
    b.ws.close().await;
    let got = wait_events(&backend, 2).await;
    assert_eq!(
        got,
        [
            ev("channel.occupied", Value::Null, "lobby"),
            ev("channel.vacated", Value::Null, "lobby"),
        ]
    );
}

/// Two nodes sharing a Redis: a channel is occupied by its first subscriber
/// on any node and vacated when the last one anywhere is gone.
#[tokio::test]
async fn occupancy_is_cluster_wide_with_redis() {
    use common::cluster::RedisServer;
    let backend = Backend::start(|_| Answer::json(json!({})));
    let redis = RedisServer::start();
    let node = |id: &str| TestApp::spawn_with_env(cluster_node(&backend, &redis, id), env());
    let (a, b) = (node("a"), node("b"));
    let held_by = async |n: i64| {
        poll_until(
            &format!("{n} nodes holding news in Redis"),
            async || holders(&redis, "news"),
            |c| *c == n,
        )
        .await
    };
    let mut alice = Chan::connect_subject(&a, PATH, "acme", "alice").await;
    alice.subscribe("news").await;
    held_by(1).await;
    let mut bob = Chan::connect_subject(&b, PATH, "acme", "bob").await;
    bob.subscribe("news").await;
    held_by(2).await;
    // Node a's last subscriber leaves: b still holds the channel.
    alice
        .cmd(json!({"op": "unsubscribe", "channel": "news"}))
        .await;
    held_by(1).await;
    bob.ws.close().await;
    held_by(0).await;
    // b stamps its vacated event when Redis' verdict reaches it, which may
    // be after Redis already shows the channel empty: the next channel is
    // occupied (on a) once b's event is in, so the two nodes' stamps are in
    // the order of the changes.
    wait_events(&backend, 2).await;
    alice.subscribe("later").await;

    wait_events(&backend, 3).await;
    let mut got = raw_events(&backend);
    got.sort_by_key(|e| e["time_ms"].as_u64());
    let seen: Vec<(&str, &str)> = got
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["channel"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("channel.occupied", "news"),
            ("channel.vacated", "news"),
            ("channel.occupied", "later")
        ]
    );
}

/// How many nodes Redis counts as holding `channel` of tenant `acme`.
fn holders(redis: &common::cluster::RedisServer, channel: &str) -> i64 {
    redis::cmd("ZCARD")
        .arg(format!("wsplus:c:{{/ws/channels:acme:{channel}}}:n"))
        .query(&mut redis.conn())
        .unwrap()
}

/// Settings of node `id` of a cluster on `redis`, with the channel webhook.
fn cluster_node(backend: &Backend, redis: &common::cluster::RedisServer, id: &str) -> Settings {
    let mut s = with_channel_webhook(backend, Scope::Tenant);
    s.cluster = common::cluster::node_settings(redis, id).cluster;
    s
}

/// [`cluster_node`] for a process of its own (SIGKILL), whose webhook
/// secret comes from `secret` (see [`secret_file`]).
fn child_node(
    backend: &Backend,
    redis: &common::cluster::RedisServer,
    id: &str,
    secret: &std::path::Path,
) -> Settings {
    let mut s = cluster_node(backend, redis, id);
    s.webhooks[0].secret_env = None;
    s.webhooks[0].secret_file = Some(secret.display().to_string());
    s
}

/// Node `b` as a process of its own ([`child_node`]), whose one client
/// subscribes to `news` (occupied): the node, the client and its token.
async fn child_holding_news(
    backend: &Backend,
    redis: &common::cluster::RedisServer,
    secret: &std::path::Path,
) -> (common::cluster::ChildNode, Chan, String) {
    let b = common::cluster::ChildNode::spawn(child_node(backend, redis, "b", secret)).await;
    let token = channels_token("acme", Some("bob"), 3600, json!({}));
    let mut bob = Chan::start(Ws::connect(&b.ws_url(PATH, &token)).await).await;
    bob.subscribe("news").await;
    wait_event(backend, "channel.occupied", "news", WAIT).await;
    (b, bob, token)
}

/// A file holding the webhook secret, named for `test`.
fn secret_file(test: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "wsplus-webhook-secret-{test}-{}",
        std::process::id()
    ));
    std::fs::write(&path, HOOK_SECRET).unwrap();
    path
}

/// How often `event` of `channel` (tenant `acme`) was received.
fn count(backend: &Backend, event: &str, channel: &str) -> usize {
    let want = ev(event, json!("acme"), channel);
    events(backend).iter().filter(|e| **e == want).count()
}

/// Waits until `event` of `channel` (tenant `acme`) was received.
async fn wait_event(backend: &Backend, event: &str, channel: &str, limit: Duration) {
    poll_within(
        limit,
        &format!("{event} {channel}"),
        async || count(backend, event, channel),
        |n| *n > 0,
    )
    .await;
}

/// Node b holds the only subscriber of `news` and is killed: a live node
/// notices its lease ran out, sweeps it out of the channel and emits
/// `channel.vacated` — once, though two nodes are left to notice.
#[tokio::test]
async fn a_killed_nodes_last_subscriber_is_vacated_once_by_a_live_node() {
    use common::cluster::{RedisServer, LEASE_S};
    let backend = Backend::start(|_| Answer::json(json!({})));
    let redis = RedisServer::start();
    let a = TestApp::spawn_with_env(cluster_node(&backend, &redis, "a"), env());
    let c = TestApp::spawn_with_env(cluster_node(&backend, &redis, "c"), env());
    let secret = secret_file("killed");
    let (mut b, _bob, _) = child_holding_news(&backend, &redis, &secret).await;

    b.kill();
    let killed = Instant::now();
    let lease = Duration::from_secs(LEASE_S);
    // Lease, one renewal tick (lease / 3), the webhook batch (1 s), slack.
    wait_event(
        &backend,
        "channel.vacated",
        "news",
        lease + Duration::from_secs(5),
    )
    .await;
    assert!(
        killed.elapsed() <= lease + Duration::from_secs(4),
        "{:?}",
        killed.elapsed()
    );

    // Once b is claimed and swept nobody sweeps it again; then an event from
    // each live node flushes whatever each queued before it.
    let mut conn = redis.conn();
    poll_until(
        "b swept",
        async || {
            redis::cmd("EXISTS")
                .arg("wsplus:occ:{b}")
                .query::<i64>(&mut conn)
                .unwrap()
        },
        |n| *n == 0,
    )
    .await;
    let mut on_a = Chan::connect_subject(&a, PATH, "acme", "alice").await;
    on_a.subscribe("after-a").await;
    let mut on_c = Chan::connect_subject(&c, PATH, "acme", "carol").await;
    on_c.subscribe("after-c").await;
    wait_event(&backend, "channel.occupied", "after-a", WAIT).await;
    wait_event(&backend, "channel.occupied", "after-c", WAIT).await;
    assert_eq!(
        count(&backend, "channel.vacated", "news"),
        1,
        "{:?}",
        events(&backend)
    );
    assert_eq!(count(&backend, "channel.occupied", "news"), 1);
    let _ = std::fs::remove_file(secret);
}

/// Node b holds the only subscriber of `news`, is killed and started again
/// under the same id at once, within its lease: nobody claims it dead, so
/// its new run's first renewal takes what the last one held and vacates it.
#[tokio::test]
async fn a_node_restarted_under_its_id_vacates_what_its_last_run_held() {
    use common::cluster::{ChildNode, RedisServer};
    let backend = Backend::start(|_| Answer::json(json!({})));
    let redis = RedisServer::start();
    let secret = secret_file("restarted");
    let (mut b, _bob, token) = child_holding_news(&backend, &redis, &secret).await;

    b.kill();
    let b = ChildNode::spawn(child_node(&backend, &redis, "b", &secret)).await;
    wait_event(&backend, "channel.vacated", "news", WAIT).await;
    // An event of the new run after it flushes whatever it queued before.
    let mut again = Chan::start(Ws::connect(&b.ws_url(PATH, &token)).await).await;
    again.subscribe("after").await;
    wait_event(&backend, "channel.occupied", "after", WAIT).await;
    assert_eq!(
        count(&backend, "channel.vacated", "news"),
        1,
        "{:?}",
        events(&backend)
    );
    let _ = std::fs::remove_file(secret);
}

/// A change Redis could not take is not lost: the node keeps the channels
/// it holds and applies them when Redis is back, so the channel first
/// subscribed during the outage is occupied then (and counted meanwhile).
#[tokio::test]
async fn occupancy_changes_during_a_redis_outage_are_applied_when_it_returns() {
    use common::cluster::RedisServer;
    let backend = Backend::start(|_| Answer::json(json!({})));
    let mut redis = RedisServer::start();
    let a = TestApp::spawn_with_env(cluster_node(&backend, &redis, "a"), env());
    let mut alice = Chan::connect_subject(&a, PATH, "acme", "alice").await;
    alice.subscribe("before").await;
    wait_event(&backend, "channel.occupied", "before", WAIT).await;

    redis.kill();
    alice.subscribe("during").await;
    let deferred = [("reason", "redis")];
    common::metrics::wait_until(a.admin, "a deferred occupancy change", |m| {
        m.value("wsplus_cluster_occupancy_deferred_total", &deferred) >= Some(1.0)
    })
    .await;
    assert_eq!(count(&backend, "channel.occupied", "during"), 0);

    redis.restart();
    wait_event(&backend, "channel.occupied", "during", WAIT).await;
    assert_eq!(holders(&redis, "during"), 1);
}

/// Changes beyond the occupancy queue (`cluster.queue`, here its least, 16)
/// are not lost: the node's renewal applies them, and every channel of a
/// burst of subscriptions is announced.
#[tokio::test]
async fn occupancy_changes_beyond_the_queue_are_applied_by_the_renewal() {
    use common::cluster::RedisServer;
    let backend = Backend::start(|_| Answer::json(json!({})));
    let redis = RedisServer::start();
    let mut s = cluster_node(&backend, &redis, "a");
    s.cluster.queue = 16;
    let a = TestApp::spawn_with_env(s, env());
    let mut alice = Chan::connect_subject(&a, PATH, "acme", "alice").await;
    // One frame of 100 subscriptions while Redis hangs: the channel space
    // reports 100 first subscribers, and the queue's consumer is stuck on
    // its first round trip, so the queue of 16 overflows whatever the speed
    // of the machine.
    let lines: Vec<String> = (0..100)
        .map(|i| json!({"id": i + 1, "op": "subscribe", "channel": format!("c{i}")}).to_string())
        .collect();
    redis.pause();
    alice.send_raw(&lines.join("\n")).await;
    for i in 0..100 {
        let r = alice.reply(json!(i + 1)).await;
        assert!(r.get("result").is_some(), "{r}");
    }
    redis.resume();
    let got = poll_until(
        "100 channels occupied",
        async || {
            (0..100)
                .filter(|i| count(&backend, "channel.occupied", &format!("c{i}")) == 1)
                .count()
        },
        |n| *n == 100,
    )
    .await;
    assert_eq!(got, 100);
    let m = common::metrics::scrape(a.admin).await;
    assert!(
        m.value(
            "wsplus_cluster_occupancy_deferred_total",
            &[("reason", "queue_full")]
        ) > Some(0.0),
        "the burst overflowed the queue"
    );
}
