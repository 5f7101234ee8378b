//! Channels mode (`wsplus.v1`) over real sockets: the connected push, the
//! subprotocol, subscribe/publish/unsubscribe with tenant isolation, bad
//! input answered without closing, permissions, limits and in-band refresh.

use common::channels::*;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsplus::settings::{ChannelAccess, ChannelsSettings, Scope, Settings};

const PATH: &str = "/ws/channels";

fn app_with(scope: Scope, channels: ChannelsSettings) -> TestApp {
    let mut s: Settings = base_settings();
    s.listeners = vec![channels_listener(PATH, scope, channels)];
    TestApp::spawn(s)
}

fn app() -> TestApp {
    app_with(Scope::Tenant, ChannelsSettings::default())
}

async fn client(app: &TestApp, tenant: &str, sub: &str) -> Chan {
    Chan::connect(
        app,
        PATH,
        &channels_token(tenant, Some(sub), 3600, json!({})),
    )
    .await
}

#[tokio::test]
async fn connected_comes_first_and_the_subprotocol_is_selected() {
    let app = app();
    let token = channels_token("acme", Some("alice"), 3600, json!({}));
    let mut req = app
        .ws_url(PATH, Some(&token))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "wsplus.v1".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "wsplus.v1"
    );
    let first = ws.next().await.unwrap().unwrap().into_text().unwrap();
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["push"], "connected");
    assert_eq!(v["protocol"], "wsplus.v1");
    assert_eq!(v["session"]["tenantId"], "acme");
    assert_eq!(v["session"]["subject"], "alice");
    assert!(v["session"]["id"].as_str().unwrap().len() >= 32);
    assert!(v["expires_at"].as_u64().unwrap() > common::auth::now() as u64);

    // Without the offer there is no subprotocol, and no exp means expires_at null.
    let c = Chan::connect(&app, PATH, &channels_token("acme", None, 0, json!({}))).await;
    assert_eq!(c.connected["expires_at"], Value::Null);
    assert_eq!(c.connected["session"]["subject"], Value::Null);
}

#[tokio::test]
async fn channels_are_topics_inside_the_tenant() {
    let app = app();
    let mut news = client(&app, "acme", "a").await;
    let mut sport = client(&app, "acme", "b").await;
    let mut other = client(&app, "globex", "c").await;
    news.subscribe("news").await;
    sport.subscribe("sport").await;
    other.subscribe("news").await;

    sport.publish("news", json!({"headline": 1})).await;
    let p = news.push().await;
    assert_eq!(p["push"], "pub");
    assert_eq!(p["channel"], "news");
    assert_eq!(p["data"], json!({"headline": 1}));
    assert_eq!(p["_session"]["tenantId"], "acme");
    assert_eq!(p["_session"]["subject"], "b");
    assert_eq!(p["_session"]["type"], "websocket");
    assert!(p.get("offset").is_none());
    // The publisher is not subscribed to news; tenant globex never sees acme's news.
    sport.no_push().await;
    other.no_push().await;

    // The publisher gets its own publication when subscribed.
    other.publish("news", json!(null)).await;
    let p = other.push().await;
    assert_eq!(p["data"], Value::Null);
    assert_eq!(p["_session"]["tenantId"], "globex");
    news.no_push().await;
}

#[tokio::test]
async fn subscribing_twice_delivers_once_and_unsubscribe_ends_delivery() {
    let app = app();
    let mut a = client(&app, "acme", "a").await;
    let mut b = client(&app, "acme", "b").await;
    a.subscribe("x").await;
    a.subscribe("x").await;
    b.publish("x", json!(1)).await;
    assert_eq!(a.push().await["data"], 1);
    a.no_push().await;

    let r = a.cmd(json!({"op": "unsubscribe", "channel": "x"})).await;
    assert_eq!(r["result"], json!({}));
    b.publish("x", json!(2)).await;
    a.no_push().await;
    // Unsubscribing from a channel one is not subscribed to is harmless.
    let r = a
        .cmd(json!({"op": "unsubscribe", "channel": "never"}))
        .await;
    assert_eq!(r["result"], json!({}));
}

#[tokio::test]
async fn malformed_input_gets_bad_request_and_the_connection_stays_open() {
    let app = app();
    let mut c = client(&app, "acme", "a").await;
    for (line, id) in [
        ("not json", Value::Null),
        ("[1,2]", Value::Null),
        (r#"{"op":"ping"}"#, Value::Null),
        (r#"{"id":0,"op":"ping"}"#, Value::Null),
        (r#"{"id":"1","op":"ping"}"#, Value::Null),
        (r#"{"id":5}"#, json!(5)),
        (r#"{"id":6,"op":"subscribe"}"#, json!(6)),
        (
            r#"{"id":7,"op":"subscribe","channel":"bad name"}"#,
            json!(7),
        ),
        (r#"{"id":8,"op":"publish","channel":"x"}"#, json!(8)),
    ] {
        c.send_raw(line).await;
        let r = c.reply(id).await;
        assert_eq!(Chan::code(&r), "bad_request", "{line}: {r}");
        assert!(r["error"]["message"].is_string());
    }
    let long = "x".repeat(201);
    c.send_raw(&format!(
        r#"{{"id":9,"op":"subscribe","channel":"{long}"}}"#
    ))
    .await;
    assert_eq!(Chan::code(&c.reply(json!(9)).await), "bad_request");
    c.send_raw(r#"{"id":10,"op":"dance"}"#).await;
    assert_eq!(Chan::code(&c.reply(json!(10)).await), "unknown_op");
    c.ws.send_binary(b"\x00\x01").await;
    assert_eq!(Chan::code(&c.reply(Value::Null).await), "bad_request");

    // A batched frame: the bad line is answered, the others are processed.
    c.send_raw(
        "{\"id\":11,\"op\":\"subscribe\",\"channel\":\"b\"}\n{oops\n{\"id\":12,\"op\":\"ping\"}\n",
    )
    .await;
    assert_eq!(c.reply(json!(11)).await["result"]["channel"], "b");
    assert_eq!(Chan::code(&c.reply(Value::Null).await), "bad_request");
    assert_eq!(c.reply(json!(12)).await["result"], json!({}));
    c.publish("b", json!("still open")).await;
    assert_eq!(c.push().await["data"], "still open");
}

#[tokio::test]
async fn max_per_session_is_enforced_after_permissions() {
    let app = app_with(
        Scope::Tenant,
        ChannelsSettings {
            subscribe: ChannelAccess::Claim,
            max_per_session: 2,
            ..Default::default()
        },
    );
    let token = channels_token(
        "acme",
        Some("u"),
        3600,
        json!({"channels": {"subscribe": ["ok:*"]}}),
    );
    let mut c = Chan::connect(&app, PATH, &token).await;
    c.subscribe("ok:1").await;
    c.subscribe("ok:2").await;
    // Re-subscribing is not a new subscription.
    c.subscribe("ok:2").await;
    let r = c.cmd(json!({"op": "subscribe", "channel": "ok:3"})).await;
    assert_eq!(Chan::code(&r), "limit_exceeded");
    // forbidden is checked before the limit.
    let r = c.cmd(json!({"op": "subscribe", "channel": "no"})).await;
    assert_eq!(Chan::code(&r), "forbidden");
    let r = c.cmd(json!({"op": "unsubscribe", "channel": "ok:1"})).await;
    assert_eq!(r["result"], json!({}));
    c.subscribe("ok:3").await;
}

#[tokio::test]
async fn claim_permissions_with_prefixes_and_sub() {
    let app = app_with(
        Scope::Tenant,
        ChannelsSettings {
            subscribe: ChannelAccess::Claim,
            publish: ChannelAccess::Claim,
            ..Default::default()
        },
    );
    let perms =
        json!({"channels": {"subscribe": ["user:{sub}", "doc:*"], "publish": ["doc:{sub}:*"]}});
    let mut alice = Chan::connect(
        &app,
        PATH,
        &channels_token("acme", Some("alice"), 3600, perms.clone()),
    )
    .await;
    alice.subscribe("user:alice").await;
    alice.subscribe("doc:1").await;
    for ch in ["user:bob", "doc", "other"] {
        let r = alice.cmd(json!({"op": "subscribe", "channel": ch})).await;
        assert_eq!(Chan::code(&r), "forbidden", "{ch}");
    }
    alice.publish("doc:alice:1", json!(1)).await;
    let r = alice
        .cmd(json!({"op": "publish", "channel": "doc:1", "data": 1}))
        .await;
    assert_eq!(Chan::code(&r), "forbidden");
    // No sub: patterns with {sub} match nothing.
    let mut anon = Chan::connect(&app, PATH, &channels_token("acme", None, 3600, perms)).await;
    let r = anon
        .cmd(json!({"op": "subscribe", "channel": "user:"}))
        .await;
    assert_eq!(Chan::code(&r), "forbidden");
    anon.subscribe("doc:2").await;
    // A token without the claim may do nothing.
    let mut bare = client(&app, "acme", "x").await;
    let r = bare
        .cmd(json!({"op": "subscribe", "channel": "doc:1"}))
        .await;
    assert_eq!(Chan::code(&r), "forbidden");
}

#[tokio::test]
async fn publish_none_and_unavailable_ops() {
    let app = app_with(
        Scope::Tenant,
        ChannelsSettings {
            publish: ChannelAccess::None,
            ..Default::default()
        },
    );
    let mut c = client(&app, "acme", "a").await;
    c.subscribe("x").await;
    let r = c
        .cmd(json!({"op": "publish", "channel": "x", "data": 1}))
        .await;
    assert_eq!(Chan::code(&r), "forbidden");
    for cmd in [
        json!({"op": "presence", "channel": "x"}),
        json!({"op": "history", "channel": "x"}),
        json!({"op": "rpc", "method": "m", "data": {}}),
    ] {
        let r = c.cmd(cmd.clone()).await;
        assert_eq!(Chan::code(&r), "not_available", "{cmd}");
    }
    let r = c
        .cmd(json!({"op": "subscribe", "channel": "y", "since": {"epoch": "e", "offset": 3}}))
        .await;
    assert_eq!(r["result"]["recovered"], false);
    assert_eq!(r["result"]["publications"], json!([]));
    c.no_push().await;
}

#[tokio::test]
async fn global_scope_shares_channels_across_tenants() {
    let app = app_with(Scope::Global, ChannelsSettings::default());
    let mut a = client(&app, "acme", "a").await;
    let mut b = client(&app, "globex", "b").await;
    a.subscribe("all").await;
    b.subscribe("all").await;
    b.publish("all", json!("hi")).await;
    let p = a.push().await;
    assert_eq!(p["data"], "hi");
    assert_eq!(p["_session"]["tenantId"], "globex");
    assert_eq!(p["_session"]["routingScope"], "global");
    assert_eq!(b.push().await["data"], "hi");
}

#[tokio::test]
async fn rate_limited_commands_get_an_error() {
    let mut s = base_settings();
    let mut l = channels_listener(PATH, Scope::Tenant, ChannelsSettings::default());
    l.session.rate_limit_per_s = 2;
    s.listeners = vec![l];
    let app = TestApp::spawn(s);
    let mut c = client(&app, "acme", "a").await;
    let batch: Vec<String> = (1..=5)
        .map(|i| format!(r#"{{"id":{i},"op":"ping"}}"#))
        .collect();
    c.send_raw(&batch.join("\n")).await;
    let mut limited = 0;
    for i in 1..=5 {
        let r = c.reply(json!(i)).await;
        if r.get("error").is_some() {
            assert_eq!(Chan::code(&r), "rate_limited");
            limited += 1;
        }
    }
    assert!(limited >= 2, "{limited}");
}

#[tokio::test]
async fn refresh_replaces_the_token_in_band() {
    let app = app_with(
        Scope::Tenant,
        ChannelsSettings {
            subscribe: ChannelAccess::Claim,
            ..Default::default()
        },
    );
    let both = json!({"channels": {"subscribe": ["a", "b"]}});
    // Expires in 2 s: without a refresh the session is closed with 4001.
    let mut c = Chan::connect(&app, PATH, &channels_token("acme", Some("u"), 2, both)).await;
    // Less than refresh_notice_s (30) is left: `expiring` at once.
    let exp = c.connected["expires_at"].as_u64().unwrap();
    assert_eq!(
        c.push().await,
        json!({"push": "expiring", "expires_at": exp})
    );
    c.subscribe("a").await;
    c.subscribe("b").await;

    // Another subject, another tenant, a bad signature: refused, nothing changes.
    for (token, reason) in [
        (
            channels_token("acme", Some("v"), 60, json!({})),
            "identity_changed",
        ),
        (
            channels_token("globex", Some("u"), 60, json!({})),
            "identity_changed",
        ),
        (
            channels_token("acme", None, 60, json!({})),
            "identity_changed",
        ),
        (
            format!("{}x", channels_token("acme", Some("u"), 60, json!({}))),
            "invalid_signature",
        ),
        ("garbage".to_owned(), "malformed"),
    ] {
        let r = c.cmd(json!({"op": "refresh", "token": token})).await;
        assert_eq!(Chan::code(&r), "invalid_token", "{r}");
        assert_eq!(r["error"]["reason"], reason, "{r}");
    }

    // Only "a" is still allowed: "b" ends with a push.
    let fresh = channels_token(
        "acme",
        Some("u"),
        3600,
        json!({"channels": {"subscribe": ["a"]}}),
    );
    let r = c.cmd(json!({"op": "refresh", "token": fresh})).await;
    let new_exp = r["result"]["expires_at"].as_u64().unwrap();
    assert!(new_exp > exp + 3000, "{r}");
    assert_eq!(
        c.push().await,
        json!({"push": "unsubscribe", "channel": "b", "reason": "forbidden"})
    );
    // Past the first token's exp the session is still open and subscribed.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    c.publish("a", json!("alive")).await;
    assert_eq!(c.push().await["data"], "alive");
    c.no_push().await;
    assert_eq!(
        app.counters
            .refreshes
            .get(wsplus_actors::channels::counters::RefreshResult::Ok),
        1
    );
}

#[tokio::test]
async fn without_refresh_the_session_ends_with_4001() {
    let app = app();
    let mut c = Chan::connect(&app, PATH, &channels_token("acme", Some("u"), 1, json!({}))).await;
    assert_eq!(c.push().await["push"], "expiring");
    assert_eq!(c.ws.recv_close().await.0, 4001);
}

#[tokio::test]
async fn a_burst_to_many_subscribers_loses_nothing_and_closes_no_one() {
    let mut s = base_settings();
    s.listeners = vec![channels_listener(
        PATH,
        Scope::Tenant,
        ChannelsSettings::default(),
    )];
    // Small queues: the burst fills them many times over.
    s.limits.outbound_queue_messages = 16;
    let app = TestApp::spawn(s);
    let mut subs = Vec::new();
    for i in 0..10 {
        let mut c = client(&app, "acme", &format!("s{i}")).await;
        c.subscribe("burst").await;
        subs.push(c);
    }
    let mut publisher = client(&app, "acme", "p").await;
    const N: usize = 2000;
    // Batched frames of 100 publish commands each, sent as fast as possible.
    for chunk in (1..=N).collect::<Vec<_>>().chunks(100) {
        let frame: Vec<String> = chunk
            .iter()
            .map(|n| format!(r#"{{"id":{n},"op":"publish","channel":"burst","data":{n}}}"#))
            .collect();
        publisher.send_raw(&frame.join("\n")).await;
    }
    let readers = subs.into_iter().map(|mut c| {
        tokio::spawn(async move {
            for n in 1..=N {
                assert_eq!(c.push().await["data"], n);
            }
        })
    });
    for r in readers {
        r.await.unwrap();
    }
    assert_eq!(publisher.reply(json!(N)).await["result"], json!({}));
    assert_eq!(
        app.counters.closes(wsplus_actors::CloseCode::SlowConsumer),
        0
    );
}
