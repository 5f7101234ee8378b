//! History and recovery across two nodes sharing one real Redis (the redis
//! backend keeps streams in Redis): a client recovers on node B what was
//! published on node A, the hand-over to live publications stays exact while
//! another node publishes continuously, the admin API reads the same stream
//! from either node, and a Redis restart without persistence changes the
//! epoch (recovered: false, never a silent gap) while publishing during the
//! outage answers `unavailable`, while Redis forgetting its scripts
//! (`SCRIPT FLUSH`; the scripts are sent by SHA1) changes nothing; and
//! `wsplus_history_publications` counts what a node holds in memory (none:
//! the streams are in Redis, whose count the admin API reads).

use common::admin::*;
use common::channels::*;
use common::cluster::*;
use common::metrics::*;
use common::*;
use serde_json::json;
use wsplus::settings::{ChannelsSettings, Scope};

fn settings(redis: &RedisServer, node: &str) -> wsplus::settings::Settings {
    let mut s = node_settings(redis, node);
    s.listeners.push(channels_listener(
        CHANNELS,
        Scope::Tenant,
        ChannelsSettings {
            history_size: 1000,
            history_ttl_s: 60,
            ..Default::default()
        },
    ));
    s
}

async fn client(app: &TestApp) -> Chan {
    Chan::connect_as(app, CHANNELS, "acme").await
}

#[tokio::test]
async fn a_client_recovers_on_b_what_was_published_on_a() {
    let redis = RedisServer::start();
    let a = TestApp::spawn(settings(&redis, "a"));
    let b = TestApp::spawn(settings(&redis, "b"));
    let mut publisher = client(&a).await;
    let mut s = client(&a).await;
    let e = epoch(&s.subscribe_since("x", None).await);
    for n in 1..=3 {
        assert_eq!(publish_numbered(&mut publisher, "x", json!(n)).await, n);
        let p = s.push().await;
        assert_eq!((p["offset"].as_u64(), &p["data"]), (Some(n), &json!(n)));
    }
    drop(s);
    for n in 4..=6 {
        assert_eq!(publish_numbered(&mut publisher, "x", json!(n)).await, n);
    }
    // The client comes back on the other node.
    let mut s = client(&b).await;
    let r = s.subscribe_since("x", Some((&e, 3))).await;
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!((epoch(&r), r["offset"].as_u64()), (e.clone(), Some(6)));
    assert_eq!(offsets(&r["publications"]), [4, 5, 6]);
    assert_eq!(r["publications"][0]["data"], 4);
    assert_eq!(r["publications"][0]["_session"]["tenantId"], "acme");
    // Live from A after the recovery, then an admin publication on B.
    assert_eq!(publish_numbered(&mut publisher, "x", json!(7)).await, 7);
    assert_eq!(s.push().await["offset"], 7);
    let body = json!({"listener": CHANNELS, "scope": "tenant", "tenant": "acme",
                      "channel": "x", "payload": 8});
    let r = post_json(&b, "/admin/v1/publish", &body).await.expect_ok();
    assert_eq!(r, json!({"delivered": 1, "offset": 8}));
    let p = s.push().await;
    assert_eq!(
        (p["offset"].as_u64(), &p["_session"]["type"]),
        (Some(8), &json!("admin"))
    );
    // Both nodes read the same stream.
    let q = "listener=%2Fws%2Fchannels&tenant=acme";
    for node in [&a, &b] {
        let h = get(node, &format!("/admin/v1/channels/x/history?{q}&limit=3"))
            .await
            .expect_ok();
        assert_eq!(
            (epoch(&h), offsets(&h["publications"])),
            (e.clone(), vec![6, 7, 8])
        );
        let d = get(node, &format!("/admin/v1/channels/x?{q}"))
            .await
            .expect_ok();
        assert_eq!(d["history"], json!({"epoch": e, "offset": 8, "size": 8}));
    }
    let h = publisher
        .cmd(json!({"op": "history", "channel": "x", "since": {"epoch": e, "offset": 6}}))
        .await;
    assert_eq!(offsets(&h["result"]["publications"]), [7, 8]);
    // A server-side subscription on A learns its position from Redis.
    let mut c = client(&a).await;
    let id = c.connected["session"]["id"].as_str().unwrap().to_owned();
    post_json(
        &a,
        &format!("/admin/v1/sessions/{id}/subscriptions"),
        &json!({"channel": "x"}),
    )
    .await
    .expect_ok();
    assert_eq!(
        c.push().await,
        json!({"push": "subscribe", "channel": "x", "epoch": e, "offset": 8})
    );
    // Another epoch.
    let r = s.subscribe_since("x", Some(("another", 8))).await;
    assert_eq!(
        (r["recovered"].as_bool(), epoch(&r)),
        (Some(false), e.clone())
    );
    s.no_push().await;
    publisher.no_push().await;
}

/// A publisher on node A, a subscriber on node B that unsubscribes and
/// recovers again and again: exactly 1, 2, 3, … (the subscriber's node
/// subscribes to the channel in Redis anew each time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_across_nodes_hands_over_without_gap_or_repeat() {
    let redis = RedisServer::start();
    let a = TestApp::spawn(settings(&redis, "a"));
    let b = TestApp::spawn(settings(&redis, "b"));
    let publisher = client(&a).await;
    let subscriber = client(&b).await;
    recover_while_publishing(publisher, subscriber, "x", 15).await;
}

#[tokio::test]
async fn a_redis_restart_without_persistence_is_a_new_epoch() {
    let mut redis = RedisServer::start();
    let a = TestApp::spawn(settings(&redis, "a"));
    let b = TestApp::spawn(settings(&redis, "b"));
    let mut publisher = client(&a).await;
    let mut s = client(&b).await;
    let e = epoch(&s.subscribe_since("x", None).await);
    for n in 1..=2 {
        publish_numbered(&mut publisher, "x", json!(n)).await;
        assert_eq!(s.push().await["offset"], n);
    }
    redis.kill();
    wait_cluster_state(&[a.admin], "degraded").await;
    let r = publisher
        .cmd(json!({"op": "publish", "channel": "x", "data": 3}))
        .await;
    assert_eq!(
        Chan::code(&r),
        "unavailable",
        "nothing numbered, nothing sent"
    );
    let r = publisher
        .cmd(json!({"op": "history", "channel": "x"}))
        .await;
    assert_eq!(Chan::code(&r), "unavailable");
    redis.restart();
    wait_cluster_state(&[a.admin, b.admin], "connected").await;

    let mut late = client(&b).await;
    let r = late.subscribe_since("x", Some((&e, 2))).await;
    assert_eq!(r["recovered"], false, "the stream was lost with Redis: {r}");
    assert_ne!(epoch(&r), e);
    assert_eq!(r["offset"], 0);
    let e2 = epoch(&r);
    assert_eq!(publish_numbered(&mut publisher, "x", json!(1)).await, 1);
    assert_eq!(late.push().await["offset"], 1);
    let h = late.cmd(json!({"op": "history", "channel": "x"})).await;
    assert_eq!(
        (epoch(&h["result"]), offsets(&h["result"]["publications"])),
        (e2, vec![1])
    );
}

/// The scripts are sent by their SHA1: when Redis forgets them (`SCRIPT
/// FLUSH`, as after a restart) they are loaded again and the same stream goes
/// on, without an error, a gap or a new epoch.
#[tokio::test]
async fn a_script_flush_is_invisible_to_clients() {
    let redis = RedisServer::start();
    let a = TestApp::spawn(settings(&redis, "a"));
    let b = TestApp::spawn(settings(&redis, "b"));
    let mut publisher = client(&a).await;
    let mut s = client(&b).await;
    let e = epoch(&s.subscribe_since("x", None).await);
    for n in 1..=4 {
        if n % 2 == 1 {
            redis.command(&["SCRIPT", "FLUSH"]);
        }
        assert_eq!(publish_numbered(&mut publisher, "x", json!(n)).await, n);
        assert_eq!(s.push().await["offset"], n);
    }
    redis.command(&["SCRIPT", "FLUSH"]);
    let mut late = client(&b).await;
    let r = late.subscribe_since("x", Some((&e, 1))).await;
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(offsets(&r["publications"]), [2, 3, 4]);
    assert_eq!(cluster_state(a.admin).await, "connected");
}

/// `wsplus_history_publications` is what a node holds in its own memory:
/// with the streams in Redis, none on either node, while the admin API reads
/// the count Redis keeps.
#[tokio::test]
async fn history_publications_counts_memory_and_the_admin_api_what_redis_keeps() {
    let redis = RedisServer::start();
    let a = TestApp::spawn(settings(&redis, "a"));
    let b = TestApp::spawn(settings(&redis, "b"));
    let mut publisher = client(&a).await;
    let mut s = client(&b).await;
    s.subscribe_since("x", None).await;
    for n in 1..=3 {
        publish_numbered(&mut publisher, "x", json!(n)).await;
        assert_eq!(s.push().await["offset"], n);
    }
    let q = "listener=%2Fws%2Fchannels&tenant=acme";
    for node in [&a, &b] {
        let d = get(node, &format!("/admin/v1/channels/x?{q}"))
            .await
            .expect_ok();
        assert_eq!(d["history"]["size"], 3, "{d}");
        let m = scrape(node.admin).await;
        assert_eq!(
            m.value("wsplus_history_publications", &[("listener", CHANNELS)]),
            Some(0.0)
        );
    }
}
