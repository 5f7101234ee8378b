//! Channel hooks against a real backend on loopback (tests/common/hooks.rs):
//! `subscribe = "hook"` and `publish = "hook"` ask the backend (with the
//! verified identity, signed), its replacement data is what subscribers get,
//! `rpc` passes results and errors through, anything but a documented answer
//! is `unavailable`, commands keep their order while they wait, and the
//! `connect` hook's `channels` become server-side subscriptions.

use std::collections::HashMap;
use std::time::Duration;

use common::channels::*;
use common::hooks::*;
use common::metrics;
use common::*;
use serde_json::{json, Value};
use wsplus::settings::{ChannelAccess, ChannelsSettings, HookName, HooksSettings, Scope, Settings};

const PATH: &str = CHANNELS;

/// A channels listener whose permissions are `subscribe`/`publish` and whose
/// backend is `backend` with `hooks` on.
fn settings(
    backend: &Backend,
    subscribe: ChannelAccess,
    publish: ChannelAccess,
    hooks: &[HookName],
) -> Settings {
    let mut s = base_settings();
    let mut l = channels_listener(
        PATH,
        Scope::Tenant,
        ChannelsSettings {
            subscribe,
            publish,
            ..Default::default()
        },
    );
    l.hooks = Some(HooksSettings {
        url: backend.url(),
        hooks: hooks.to_vec(),
        timeout_ms: 1000,
        secret_env: Some("HOOK_SECRET".into()),
        ..Default::default()
    });
    s.listeners = vec![l];
    s
}

fn spawn(s: Settings) -> TestApp {
    TestApp::spawn_with_env(
        s,
        HashMap::from([("HOOK_SECRET".to_owned(), HOOK_SECRET.to_owned())]),
    )
}

async fn client(app: &TestApp, tenant: &str, sub: &str) -> Chan {
    Chan::connect(
        app,
        PATH,
        &channels_token(tenant, Some(sub), 3600, json!({})),
    )
    .await
}

/// Allows channels starting with `open`, denies the rest; publications to
/// `censored` are replaced, to `closed*` refused.
fn gatekeeper(r: &Recorded) -> Answer {
    let channel = r.json["channel"].as_str().unwrap_or_default();
    match r.hook.as_str() {
        "subscribe" => Answer::json(json!({"allow": channel.starts_with("open")})),
        "publish" if channel == "open-censored" => {
            Answer::json(json!({"allow": true, "data": {"text": "***", "was": r.json["data"]}}))
        }
        "publish" => Answer::json(json!({"allow": !channel.starts_with("closed")})),
        "rpc" => match r.json["method"].as_str() {
            Some("sum") => {
                let sum: i64 = r.json["data"]
                    .as_array()
                    .map_or(0, |a| a.iter().filter_map(Value::as_i64).sum());
                Answer::json(json!({"result": {"sum": sum, "by": r.json["session"]["subject"]}}))
            }
            _ => {
                Answer::json(json!({"error": {"code": "no_such_method", "message": "try \"sum\""}}))
            }
        },
        _ => Answer::raw(404, "{}"),
    }
}

/// The channels the `subscribe` hook was asked about, in order.
fn channels_asked(backend: &Backend) -> Vec<Value> {
    backend
        .requests_to("subscribe")
        .iter()
        .map(|r| r.json["channel"].clone())
        .collect()
}

fn hooked_app(backend: &Backend) -> TestApp {
    spawn(settings(
        backend,
        ChannelAccess::Hook,
        ChannelAccess::Hook,
        &[HookName::Subscribe, HookName::Publish, HookName::Rpc],
    ))
}

#[tokio::test]
async fn subscribe_hook_allows_and_denies_with_the_identity_signed() {
    let backend = Backend::start(gatekeeper);
    let app = hooked_app(&backend);
    let mut c = client(&app, "acme", "alice").await;

    c.subscribe("open-news").await;
    let r = c.cmd(json!({"op": "subscribe", "channel": "secret"})).await;
    assert_eq!(Chan::code(&r), "forbidden", "{r}");

    let seen = backend.requests_to("subscribe");
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert!(r.signed_with(HOOK_SECRET), "bad signature on {r:?}");
    }
    let first = &seen[0].json;
    assert_eq!(first["channel"], "open-news");
    assert_eq!(first["listener"], PATH);
    assert_eq!(first["session"]["tenantId"], "acme");
    assert_eq!(first["session"]["subject"], "alice");
    assert_eq!(first["session"]["id"], c.connected["session"]["id"]);

    // The allowed subscription works; the denied one receives nothing.
    let mut p = client(&app, "acme", "bob").await;
    p.publish("open-news", json!(1)).await;
    assert_eq!(c.push().await["data"], 1);

    // A refresh keeps the subscription without asking again.
    let fresh = channels_token("acme", Some("alice"), 7200, json!({}));
    let r = c.cmd(json!({"op": "refresh", "token": fresh})).await;
    assert!(r["result"]["expires_at"].is_u64(), "{r}");
    p.publish("open-news", json!(2)).await;
    assert_eq!(c.push().await["data"], 2);
    assert_eq!(backend.requests_to("subscribe").len(), 2);
}

#[tokio::test]
async fn publish_hook_allows_denies_and_replaces_the_data() {
    let backend = Backend::start(gatekeeper);
    let app = hooked_app(&backend);
    let mut sub = client(&app, "acme", "alice").await;
    sub.subscribe("open-censored").await;
    sub.subscribe("open-plain").await;
    let mut publisher = client(&app, "acme", "bob").await;

    publisher
        .publish("open-censored", json!({"text": "rude"}))
        .await;
    let push = sub.push().await;
    assert_eq!(push["channel"], "open-censored");
    assert_eq!(
        push["data"],
        json!({"text": "***", "was": {"text": "rude"}}),
        "{push}"
    );
    assert_eq!(push["_session"]["subject"], "bob");

    publisher.publish("open-plain", json!("as sent")).await;
    assert_eq!(sub.push().await["data"], "as sent");

    let r = publisher
        .cmd(json!({"op": "publish", "channel": "closed-x", "data": 1}))
        .await;
    assert_eq!(Chan::code(&r), "forbidden", "{r}");
    sub.no_push().await;

    let seen = backend.requests_to("publish");
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].json["data"], json!({"text": "rude"}));
    assert_eq!(seen[0].json["session"]["subject"], "bob");
    assert!(seen.iter().all(|r| r.signed_with(HOOK_SECRET)));
}

#[tokio::test]
async fn publish_hook_calls_reuse_a_kept_alive_connection_until_it_idles_4_s() {
    // One session's calls one after another go over one connection to the
    // backend: a TCP connection per call would cost a handshake and a close
    // per publication. A connection idle for 4 s is dropped, before the 5 s
    // keep-alive of the backend (actix-web's default here) closes it under a
    // call, so the next call opens one. The wait is the behaviour under
    // test, not a synchronisation.
    let backend = Backend::start(gatekeeper);
    let app = hooked_app(&backend);
    let mut publisher = client(&app, "acme", "bob").await;
    for i in 0..20 {
        publisher.publish("open-plain", json!(i)).await;
    }
    assert_eq!(backend.requests_to("publish").len(), 20);
    assert_eq!(backend.connections(), 1);
    tokio::time::sleep(wsplus::hooks::IDLE_CONNECTION + Duration::from_millis(400)).await;
    publisher.publish("open-plain", json!(20)).await;
    assert_eq!(backend.requests_to("publish").len(), 21);
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn pipelined_publications_are_delivered_in_order_over_reused_connections() {
    // 100 publications sent at once run up to the session's depth of calls
    // concurrently, answered in any order, yet reach the subscriber in the
    // order sent, over no more connections than calls at once.
    let backend = Backend::start(gatekeeper);
    let app = hooked_app(&backend);
    let mut sub = client(&app, "acme", "alice").await;
    sub.subscribe("open-seq").await;
    let mut publisher = client(&app, "acme", "bob").await;
    let commands: Vec<String> = (0..100)
        .map(|i| {
            json!({"id": i + 1, "op": "publish", "channel": "open-seq", "data": i}).to_string()
        })
        .collect();
    publisher.send_raw(&commands.join("\n")).await;
    for i in 0..100 {
        assert_eq!(sub.push().await["data"], json!(i));
    }
    assert_eq!(backend.requests_to("publish").len(), 100);
    let opened = backend.connections();
    assert!(
        (1..=wsplus::hooks::SESSION_DEPTH).contains(&opened),
        "{opened} connections"
    );
}

#[tokio::test]
async fn rpc_passes_results_and_errors_through() {
    let backend = Backend::start(gatekeeper);
    let app = hooked_app(&backend);
    let mut c = client(&app, "acme", "alice").await;

    let r = c
        .cmd(json!({"op": "rpc", "method": "sum", "data": [1, 2, 39]}))
        .await;
    assert_eq!(r["result"], json!({"sum": 42, "by": "alice"}), "{r}");
    let r = c
        .cmd(json!({"op": "rpc", "method": "nope", "data": null}))
        .await;
    assert_eq!(
        r["error"],
        json!({"code": "no_such_method", "message": "try \"sum\""}),
        "{r}"
    );
    let seen = backend.requests_to("rpc");
    assert_eq!(seen[0].json["method"], "sum");
    assert_eq!(seen[0].json["data"], json!([1, 2, 39]));
    assert!(seen[0].signed_with(HOOK_SECRET));
}

#[tokio::test]
async fn rpc_is_not_available_without_the_rpc_hook() {
    let backend = Backend::start(gatekeeper);
    let app = spawn(settings(
        &backend,
        ChannelAccess::Hook,
        ChannelAccess::Any,
        &[HookName::Subscribe],
    ));
    let mut c = client(&app, "acme", "alice").await;
    let r = c
        .cmd(json!({"op": "rpc", "method": "sum", "data": [1]}))
        .await;
    assert_eq!(Chan::code(&r), "not_available", "{r}");
    // publish = "any" never asks.
    c.publish("anything", json!(1)).await;
    assert!(backend.requests_to("rpc").is_empty());
    assert!(backend.requests_to("publish").is_empty());
}

#[tokio::test]
async fn no_usable_answer_is_unavailable_and_counted() {
    let mut backend = Backend::start(gatekeeper);
    let app = hooked_app(&backend);
    let mut c = client(&app, "acme", "alice").await;
    let answers = [
        Answer::raw(500, "{\"allow\": true}"),
        Answer::raw(200, "{\"allow\": \"yes\"}"),
        Answer::raw(200, "not json"),
        // Slower than timeout_ms (1 s).
        Answer::json(json!({"allow": true, "result": 1})).after(Duration::from_secs(2)),
    ];
    for (i, a) in answers.into_iter().enumerate() {
        backend.respond(move |_| a.clone());
        for cmd in [
            json!({"op": "subscribe", "channel": "open-a"}),
            json!({"op": "publish", "channel": "open-a", "data": 1}),
            json!({"op": "rpc", "method": "sum", "data": 1}),
        ] {
            let r = c.cmd(cmd.clone()).await;
            assert_eq!(Chan::code(&r), "unavailable", "answer {i}, {cmd}: {r}");
        }
    }
    backend.down();
    let r = c
        .cmd(json!({"op": "publish", "channel": "open-a", "data": 1}))
        .await;
    assert_eq!(Chan::code(&r), "unavailable", "backend down: {r}");
    c.no_push().await;

    let m = metrics::scrape(app.admin).await;
    let failures = |hook: &str, kind: &str| {
        m.value(
            "wsplus_hook_failures_total",
            &[("listener", PATH), ("hook", hook), ("kind", kind)],
        )
    };
    for hook in ["subscribe", "publish", "rpc"] {
        assert_eq!(failures(hook, "status"), Some(1.0), "{hook}");
        assert_eq!(failures(hook, "timeout"), Some(1.0), "{hook}");
        assert!(failures(hook, "malformed") >= Some(1.0), "{hook}");
    }
    assert_eq!(failures("publish", "connect"), Some(1.0));
    assert!(
        m.value(
            "wsplus_hook_calls_total",
            &[("listener", PATH), ("hook", "subscribe")]
        ) >= Some(4.0)
    );
}

#[tokio::test]
async fn commands_reach_the_hub_in_order_while_the_backend_is_slow() {
    // Subscriptions take 300 ms to allow, publications are allowed at once:
    // a publish sent right after a subscribe must still be applied after it,
    // so the publisher (subscribed by then) receives its own publication.
    let backend = Backend::start(|r| match r.hook.as_str() {
        "subscribe" => Answer::json(json!({"allow": true})).after(Duration::from_millis(300)),
        _ => Answer::json(json!({"allow": true})),
    });
    let app = hooked_app(&backend);
    let mut c = client(&app, "acme", "alice").await;
    c.send_raw(concat!(
        r#"{"id":1,"op":"subscribe","channel":"room"}"#,
        "\n",
        r#"{"id":2,"op":"publish","channel":"room","data":"first"}"#,
        "\n",
        r#"{"id":3,"op":"unsubscribe","channel":"room"}"#,
        "\n",
        r#"{"id":4,"op":"publish","channel":"room","data":"after"}"#
    ))
    .await;
    // An error here (`unavailable`) would be the timeout (1 s) under load.
    let subscribed = c.reply(json!(1)).await;
    assert_eq!(subscribed["result"]["channel"], "room", "{subscribed}");
    assert_eq!(c.reply(json!(2)).await["result"], json!({}));
    assert_eq!(c.reply(json!(3)).await["result"], json!({}));
    assert_eq!(c.reply(json!(4)).await["result"], json!({}));
    let push = c.push().await;
    assert_eq!(
        (push["channel"].clone(), push["data"].clone()),
        (json!("room"), json!("first"))
    );
    c.no_push().await;
}

#[tokio::test]
async fn connect_hook_channels_become_server_side_subscriptions() {
    let backend = Backend::start(|r| match r.hook.as_str() {
        "connect" => Answer::json(json!({
            "allow": true,
            "channels": [format!("user:{}", r.json["session"]["subject"].as_str().unwrap()), "bad name"]
        })),
        _ => Answer::json(json!({"allow": false})),
    });
    let mut s = settings(
        &backend,
        ChannelAccess::Hook,
        ChannelAccess::Any,
        &[HookName::Connect, HookName::Subscribe],
    );
    // Server-side subscriptions ignore max_per_session.
    s.listeners[0].channels.as_mut().unwrap().max_per_session = 1;
    let app = spawn(s);
    let mut alice = client(&app, "acme", "alice").await;
    let push = alice.push().await;
    assert_eq!(push, json!({"push": "subscribe", "channel": "user:alice"}));
    // The invalid name was skipped; the subscribe hook was never asked.
    assert!(backend.requests_to("subscribe").is_empty());

    let mut bob = client(&app, "acme", "bob").await;
    assert_eq!(bob.push().await["channel"], "user:bob");
    bob.publish("user:alice", json!("hi alice")).await;
    let got = alice.push().await;
    assert_eq!(
        (got["channel"].clone(), got["data"].clone()),
        (json!("user:alice"), json!("hi alice"))
    );
    bob.no_push().await;

    // Another tenant's user:alice is another channel.
    let mut eve = client(&app, "other", "eve").await;
    eve.publish("user:alice", json!("from other")).await;
    alice.no_push().await;
}

#[tokio::test]
async fn history_asks_the_subscribe_hook() {
    let backend = Backend::start(gatekeeper);
    let mut s = settings(
        &backend,
        ChannelAccess::Hook,
        ChannelAccess::Any,
        &[HookName::Subscribe],
    );
    let channels = s.listeners[0].channels.as_mut().unwrap();
    channels.history_size = 10;
    channels.history_ttl_s = 60;
    let app = spawn(s);
    let mut c = client(&app, "acme", "alice").await;
    c.subscribe("open-log").await;
    let r = c
        .cmd(json!({"op": "publish", "channel": "open-log", "data": "kept"}))
        .await;
    assert_eq!(r["result"]["offset"], 1, "{r}");
    let r = c.cmd(json!({"op": "history", "channel": "open-log"})).await;
    assert_eq!(r["result"]["publications"][0]["data"], "kept", "{r}");
    let r = c.cmd(json!({"op": "history", "channel": "secret"})).await;
    assert_eq!(Chan::code(&r), "forbidden", "{r}");
    assert_eq!(
        channels_asked(&backend),
        [json!("open-log"), json!("open-log"), json!("secret")]
    );
}

#[tokio::test]
async fn presence_asks_the_subscribe_hook() {
    let backend = Backend::start(gatekeeper);
    let mut s = settings(
        &backend,
        ChannelAccess::Hook,
        ChannelAccess::Any,
        &[HookName::Subscribe],
    );
    s.listeners[0].channels.as_mut().unwrap().presence = true;
    let app = spawn(s);
    let mut c = client(&app, "acme", "alice").await;
    c.subscribe("open-room").await;
    let r = c
        .cmd(json!({"op": "presence", "channel": "open-room"}))
        .await;
    assert_eq!(
        r["result"]["clients"],
        json!([{"id": c.connected["session"]["id"], "subject": "alice"}]),
        "{r}"
    );
    let r = c.cmd(json!({"op": "presence", "channel": "secret"})).await;
    assert_eq!(Chan::code(&r), "forbidden", "{r}");
    assert_eq!(
        channels_asked(&backend),
        [json!("open-room"), json!("open-room"), json!("secret")]
    );
}

#[tokio::test]
async fn one_pipelining_session_cannot_take_the_listeners_whole_capacity() {
    // Publications take 300 ms to allow and the listener may have 64 calls in
    // flight. A client that pipelines 100 publishes holds itself back at its
    // own share, so another session's publish is still asked and allowed,
    // and none of the 100 is refused as unavailable.
    let backend =
        Backend::start(|_| Answer::json(json!({"allow": true})).after(Duration::from_millis(300)));
    let mut s = settings(
        &backend,
        ChannelAccess::Any,
        ChannelAccess::Hook,
        &[HookName::Publish],
    );
    s.listeners[0].hooks.as_mut().unwrap().max_in_flight = 64;
    s.listeners[0].hooks.as_mut().unwrap().timeout_ms = 5000;
    let app = spawn(s);
    let mut greedy = client(&app, "acme", "alice").await;
    let mut other = client(&app, "acme", "bob").await;
    for i in 1..=100 {
        greedy
            .send_raw(&json!({"id": i, "op": "publish", "channel": "c", "data": i}).to_string())
            .await;
    }
    backend.wait_requests(16, WAIT).await;
    let r = other
        .cmd(json!({"op": "publish", "channel": "c", "data": "other"}))
        .await;
    let m = metrics::scrape(app.admin).await;
    let fails: Vec<_> = ["overloaded", "timeout", "connect", "status", "malformed"]
        .iter()
        .map(|k| {
            (
                k,
                m.value(
                    "wsplus_hook_failures_total",
                    &[("listener", PATH), ("hook", "publish"), ("kind", k)],
                ),
            )
        })
        .collect();
    assert_eq!(
        r["result"],
        json!({}),
        "{r} {fails:?} sent {}",
        backend.requests_to("publish").len()
    );
    for i in 1..=100 {
        let r = greedy.reply(json!(i)).await;
        assert_eq!(r["result"], json!({}), "command {i}: {r}");
    }
}
