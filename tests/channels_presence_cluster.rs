//! Presence and the channel admin routes across nodes sharing one real Redis:
//! `presence` and the admin detail list the subscribers of every node,
//! joins and leaves cross nodes, the listing sums every node's subscribers,
//! admin publish counts the other nodes' subscribers, a server-side
//! (un)subscription reaches a session on another node, and a killed node's
//! entries are gone within `lease_s`.

use std::time::{Duration, Instant};

use common::admin::*;
use common::channels::*;
use common::cluster::*;
use common::*;
use serde_json::{json, Value};
use wsplus::settings::{ChannelsSettings, Scope, Settings};

fn settings(redis: &RedisServer, node: &str) -> Settings {
    let mut s = node_settings(redis, node);
    s.listeners.push(channels_listener(
        CHANNELS,
        Scope::Tenant,
        ChannelsSettings {
            presence: true,
            join_leave: true,
            ..Default::default()
        },
    ));
    s
}

fn tok(sub: &str) -> String {
    channels_token("acme", Some(sub), 3600, json!({}))
}

fn entry(c: &Chan) -> Value {
    json!({"id": c.connected["session"]["id"], "subject": c.connected["session"]["subject"]})
}

fn id_of(c: &Chan) -> String {
    c.connected["session"]["id"].as_str().unwrap().to_owned()
}

fn sorted(mut v: Vec<Value>) -> Value {
    v.sort_by_key(|e| e["id"].as_str().unwrap().to_owned());
    Value::Array(v)
}

async fn presence(c: &mut Chan, channel: &str) -> Value {
    let r = c.cmd(json!({"op": "presence", "channel": channel})).await;
    r["result"]["clients"].clone()
}

fn detail_path(channel: &str) -> String {
    format!("/admin/v1/channels/{channel}?listener={CHANNELS}&tenant=acme")
}

#[tokio::test]
async fn presence_joins_and_admin_routes_span_the_nodes() {
    let redis = RedisServer::start();
    let a = TestApp::spawn(settings(&redis, "a"));
    let b = TestApp::spawn(settings(&redis, "b"));
    let mut on_a = Chan::connect(&a, CHANNELS, &tok("alice")).await;
    let mut on_b = Chan::connect(&b, CHANNELS, &tok("bob")).await;
    let mut idle_b = Chan::connect(&b, CHANNELS, &tok("carol")).await;
    on_a.subscribe("room").await;
    on_b.subscribe("room").await;
    // b's join reaches a's subscriber (not b's own client).
    let j = on_a.push().await;
    assert_eq!(
        j,
        json!({"push": "join", "channel": "room", "client": entry(&on_b)})
    );
    // b's own client gets no join of its own; it may get a's: a publishes
    // its join through Redis after answering its client, so the join can
    // reach b once b's subscription is in (a join of a member already
    // listed by presence; clients treat joins as set updates).
    let pong = on_b.cmd(json!({"op": "ping"})).await;
    assert_eq!(pong["result"], json!({}));
    while let Some(p) = on_b.take_push() {
        assert_eq!(
            p,
            json!({"push": "join", "channel": "room", "client": entry(&on_a)})
        );
    }

    // Presence from either node lists both nodes' subscribers.
    let both = sorted(vec![entry(&on_a), entry(&on_b)]);
    assert_eq!(presence(&mut on_a, "room").await, both);
    assert_eq!(presence(&mut idle_b, "room").await, both);

    // Admin on a: listing and detail are cluster-wide.
    idle_b.subscribe("only-b").await;
    let list = get(
        &a,
        &format!("/admin/v1/channels?listener={CHANNELS}&tenant=acme"),
    )
    .await
    .expect_ok();
    assert_eq!(
        list,
        json!([{"channel": "only-b", "subscribers": 1}, {"channel": "room", "subscribers": 2}])
    );
    let d = get(&a, &detail_path("room")).await.expect_ok();
    assert_eq!(d["subscribers"], 2);
    assert_eq!(d["presence"], both);

    // Admin publish on a counts b's subscriber too.
    let body = json!({"listener": CHANNELS, "scope": "tenant", "tenant": "acme",
                      "channel": "only-b", "payload": 1});
    let r = post_json(&a, "/admin/v1/publish", &body).await.expect_ok();
    assert_eq!(r["delivered"], 1, "{r}");
    assert_eq!(idle_b.push().await["data"], 1);

    // A server-side subscription of a session on b, asked on a.
    let subs = format!("/admin/v1/sessions/{}/subscriptions", id_of(&idle_b));
    post_json(&a, &subs, &json!({"channel": "room"}))
        .await
        .expect_ok();
    assert_eq!(
        idle_b.push().await,
        json!({"push": "subscribe", "channel": "room"})
    );
    assert_eq!(on_a.push().await["client"], entry(&idle_b));
    assert_eq!(on_b.push().await["client"], entry(&idle_b));
    delete(&a, &format!("{subs}/room")).await.expect_ok();
    assert_eq!(
        idle_b.push().await,
        json!({"push": "unsubscribe", "channel": "room", "reason": "admin"})
    );
    let l = on_a.push().await;
    assert_eq!(
        l,
        json!({"push": "leave", "channel": "room", "client": entry(&idle_b)})
    );
    assert_eq!(on_b.push().await["push"], "leave");
    // An unknown session is still a 404.
    let missing = post_json(
        &a,
        "/admin/v1/sessions/nope/subscriptions",
        &json!({"channel": "room"}),
    )
    .await;
    assert_eq!(missing.status, 404);

    // b's client leaves by closing: a's subscriber is told.
    let gone = entry(&on_b);
    on_b.ws.close().await;
    assert_eq!(
        on_a.push().await,
        json!({"push": "leave", "channel": "room", "client": gone})
    );
    assert_eq!(presence(&mut on_a, "room").await, json!([entry(&on_a)]));
}

#[tokio::test]
async fn a_killed_nodes_entries_vanish_within_the_lease() {
    let redis = RedisServer::start();
    let a = TestApp::spawn(settings(&redis, "a"));
    let mut b = ChildNode::spawn(settings(&redis, "b")).await;
    let mut on_a = Chan::connect(&a, CHANNELS, &tok("alice")).await;
    let on_b = Chan::start(Ws::connect(&b.ws_url(CHANNELS, &tok("bob"))).await).await;
    let mut on_b = on_b;
    on_b.subscribe("room").await;
    on_a.subscribe("room").await;
    assert_eq!(on_b.push().await["push"], "join");
    assert_eq!(
        presence(&mut on_a, "room").await,
        sorted(vec![entry(&on_a), entry(&on_b)])
    );
    assert_eq!(
        get(&a, &detail_path("room")).await.expect_ok()["subscribers"],
        2
    );

    b.kill();
    let killed = Instant::now();
    let lease = Duration::from_secs(LEASE_S);
    let deadline = killed + lease + Duration::from_secs(3);
    loop {
        let now = presence(&mut on_a, "room").await;
        if now == json!([entry(&on_a)]) {
            break;
        }
        assert!(Instant::now() < deadline, "b's entry stayed: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(killed.elapsed() <= lease + Duration::from_secs(1));
    let d = get(&a, &detail_path("room")).await.expect_ok();
    assert_eq!(d["subscribers"], 1);
    assert_eq!(d["presence"], json!([entry(&on_a)]));
}

#[tokio::test]
async fn joins_travel_beside_numbered_publications_without_an_offset() {
    let redis = RedisServer::start();
    let with_history = |node| {
        let mut s = settings(&redis, node);
        let c = s.listeners.last_mut().unwrap().channels.as_mut().unwrap();
        c.history_size = 10;
        c.history_ttl_s = 60;
        s
    };
    let a = TestApp::spawn(with_history("a"));
    let b = TestApp::spawn(with_history("b"));
    let mut on_a = Chan::connect(&a, CHANNELS, &tok("alice")).await;
    let mut on_b = Chan::connect(&b, CHANNELS, &tok("bob")).await;
    on_a.subscribe("room").await;
    let publish = |data: i64| json!({"op": "publish", "channel": "room", "data": data});
    assert_eq!(on_a.cmd(publish(1)).await["result"]["offset"], 1);
    assert_eq!(on_a.push().await["offset"], 1);
    on_b.subscribe("room").await;
    let j = on_a.push().await;
    assert_eq!(j["push"], "join", "{j}");
    assert!(j.get("offset").is_none(), "{j}");
    assert_eq!(on_b.cmd(publish(2)).await["result"]["offset"], 2);
    let p = on_a.push().await;
    assert_eq!(
        (p["offset"].clone(), p["data"].clone()),
        (json!(2), json!(2))
    );
    // The join is not kept: history holds the two publications only.
    let h = on_a.cmd(json!({"op": "history", "channel": "room"})).await;
    let kept: Vec<Value> = h["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"].clone())
        .collect();
    assert_eq!(kept, [json!(1), json!(2)], "{h}");
}
