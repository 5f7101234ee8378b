//! `channel.occupied` / `channel.vacated` webhooks against a real backend on
//! loopback: a channel's first subscriber and its last one gone, once each,
//! in order with the other events, on one node and across nodes sharing a
//! Redis.

use std::collections::HashMap;

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

/// `(event, tenantId, channel)` of every event received, in order.
fn events(backend: &Backend) -> Vec<(String, Value, String)> {
    backend
        .requests()
        .iter()
        .filter(|r| r.hook == "events")
        .flat_map(|r| r.json["events"].as_array().cloned().unwrap_or_default())
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
    use common::cluster::{node_settings, RedisServer};
    let backend = Backend::start(|_| Answer::json(json!({})));
    let redis = RedisServer::start();
    let node = |id: &str| {
        let mut s = with_channel_webhook(&backend, Scope::Tenant);
        let c = node_settings(&redis, id);
        s.cluster = c.cluster;
        TestApp::spawn_with_env(s, env())
    };
    let (a, b) = (node("a"), node("b"));
    let holders = async |n: i64| {
        poll_until(
            &format!("{n} nodes holding news in Redis"),
            async || {
                let mut conn = redis.conn();
                redis::cmd("ZCARD")
                    .arg("wsplus:c:{/ws/channels:acme:news}:n")
                    .query::<i64>(&mut conn)
                    .unwrap()
            },
            |c| *c == n,
        )
        .await
    };
    let mut alice = Chan::connect_subject(&a, PATH, "acme", "alice").await;
    alice.subscribe("news").await;
    holders(1).await;
    let mut bob = Chan::connect_subject(&b, PATH, "acme", "bob").await;
    bob.subscribe("news").await;
    holders(2).await;
    // Node a's last subscriber leaves: b still holds the channel.
    alice
        .cmd(json!({"op": "unsubscribe", "channel": "news"}))
        .await;
    holders(1).await;
    bob.ws.close().await;
    holders(0).await;
    alice.subscribe("later").await;

    let mut got: Vec<Value> = poll_within(
        WAIT,
        "3 channel events",
        async || {
            backend
                .requests_to("events")
                .iter()
                .flat_map(|r| r.json["events"].as_array().cloned().unwrap_or_default())
                .collect::<Vec<_>>()
        },
        |e| e.len() >= 3,
    )
    .await;
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
