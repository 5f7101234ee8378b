//! History and recovery in channels mode over real sockets, local backend:
//! offsets on publications, the `history` op and its bad input, the size and
//! TTL bounds, recovery on `subscribe` with `since` (including after every
//! session of the tenant left, across an epoch change and a restart), the
//! admin history route and detail, the history metrics, and the atomic
//! hand-over from recovered to live publications while another session
//! publishes continuously.

use std::time::Duration;

use common::admin::*;
use common::channels::*;
use common::metrics::*;
use common::*;
use serde_json::json;
use wsplus::settings::{ChannelAccess, ChannelsSettings, Scope, Settings};
use wsplus_actors::broker::Snapshot;

const PATH: &str = CHANNELS;
const PLAIN: &str = "/ws/plain-channels";

fn settings(size: usize, ttl_s: u64) -> Settings {
    let mut s = base_settings();
    s.listeners = vec![
        channels_listener(
            PATH,
            Scope::Tenant,
            ChannelsSettings {
                subscribe: ChannelAccess::Claim,
                history_size: size,
                history_ttl_s: ttl_s,
                ..Default::default()
            },
        ),
        channels_listener(PLAIN, Scope::Tenant, ChannelsSettings::default()),
    ];
    s
}

fn app(size: usize, ttl_s: u64) -> TestApp {
    TestApp::spawn(settings(size, ttl_s))
}

/// A client of `tenant` allowed to subscribe to `x*` and `y*`.
async fn client(app: &TestApp, tenant: &str) -> Chan {
    let claims = json!({"channels": {"subscribe": ["x*", "y*"]}});
    Chan::connect(app, PATH, &channels_token(tenant, Some("u"), 3600, claims)).await
}

#[tokio::test]
async fn publications_carry_offsets_and_history_returns_them() {
    let app = app(10, 60);
    let mut a = client(&app, "acme").await;
    let mut b = client(&app, "acme").await;
    let r = a.subscribe_since("x", None).await;
    assert_eq!(r["offset"], 0);
    assert!(r.get("recovered").is_none(), "recovered only with since");
    assert_eq!(r["publications"], json!([]));
    let e = epoch(&r);
    assert!(!e.is_empty());
    for n in 1..=3u64 {
        assert_eq!(publish_numbered(&mut b, "x", json!({"n": n})).await, n);
        let p = a.push().await;
        assert_eq!(
            (p["push"].as_str(), p["offset"].as_u64(), &p["data"]),
            (Some("pub"), Some(n), &json!({"n": n}))
        );
    }

    // b never subscribed: history needs the permission, not a subscription.
    let h = b.cmd(json!({"op": "history", "channel": "x"})).await;
    let h = &h["result"];
    assert_eq!((epoch(h), h["offset"].as_u64()), (e.clone(), Some(3)));
    let first = &h["publications"][0];
    assert_eq!(
        first.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["offset", "data", "_session"]
    );
    assert_eq!(first["_session"]["tenantId"], "acme");
    assert_eq!(offsets(&h["publications"]), [1, 2, 3]);
    let cases = [
        (json!({"limit": 2}), Some(vec![2, 3])),
        (json!({"limit": 99}), Some(vec![1, 2, 3])),
        (
            json!({"since": {"epoch": e, "offset": 1}}),
            Some(vec![2, 3]),
        ),
        (
            json!({"since": {"epoch": e, "offset": 1}, "limit": 1}),
            Some(vec![3]),
        ),
        (
            json!({"since": {"epoch": "other", "offset": 2}}),
            Some(vec![1, 2, 3]),
        ),
        (json!({"limit": 0}), None),
    ];
    for (extra, want) in cases {
        let mut cmd = json!({"op": "history", "channel": "x"});
        for (k, v) in extra.as_object().unwrap() {
            cmd[k] = v.clone();
        }
        let r = b.cmd(cmd.clone()).await;
        let res = &r["result"];
        assert_eq!(res["offset"], 3, "{cmd}");
        match want {
            Some(w) => assert_eq!(offsets(&res["publications"]), w, "{cmd}"),
            None => assert_eq!(res, &json!({"epoch": e, "offset": 3}), "{cmd}"),
        }
    }
    // Other tenants' channels are other streams.
    let mut g = client(&app, "globex").await;
    let h = g.cmd(json!({"op": "history", "channel": "x"})).await;
    assert_eq!(h["result"]["offset"], 0);
    assert_ne!(epoch(&h["result"]), e);
    a.no_push().await;
}

#[tokio::test]
async fn bad_history_and_since_input_is_a_bad_request() {
    let app = app(10, 60);
    let mut c = client(&app, "acme").await;
    for bad in [
        json!({"op": "history", "channel": "x", "limit": -1}),
        json!({"op": "history", "channel": "x", "limit": "3"}),
        json!({"op": "history", "channel": "x", "limit": 1.5}),
        json!({"op": "history", "channel": "x", "since": {"epoch": "e"}}),
        json!({"op": "history", "channel": "x", "since": {"epoch": 1, "offset": 1}}),
        json!({"op": "history", "channel": "x", "since": {"epoch": "e", "offset": -1}}),
        json!({"op": "history", "channel": "x", "since": "e:1"}),
        json!({"op": "history", "channel": "bad channel"}),
        json!({"op": "history"}),
        json!({"op": "subscribe", "channel": "x", "since": {"offset": 1}}),
        json!({"op": "subscribe", "channel": "x", "since": [1]}),
    ] {
        let r = c.cmd(bad.clone()).await;
        assert_eq!(Chan::code(&r), "bad_request", "{bad}: {r}");
    }
    // The claim allows x* and y* only.
    let r = c.cmd(json!({"op": "history", "channel": "z"})).await;
    assert_eq!(Chan::code(&r), "forbidden");
    // A listener without history.
    let mut p = Chan::connect(&app, PLAIN, &channels_token("acme", None, 0, json!({}))).await;
    let r = p.cmd(json!({"op": "history", "channel": "x"})).await;
    assert_eq!(Chan::code(&r), "not_available");
    let r = p
        .cmd(json!({"op": "publish", "channel": "x", "data": 1}))
        .await;
    assert_eq!(r["result"], json!({}), "no offset without history");
    c.no_push().await;
}

#[tokio::test]
async fn recovery_needs_the_same_epoch_and_everything_kept() {
    let app = app(3, 60);
    let mut a = client(&app, "acme").await;
    let mut b = client(&app, "acme").await;
    let e = epoch(&a.subscribe_since("x", None).await);
    let r = a.cmd(json!({"op": "unsubscribe", "channel": "x"})).await;
    assert_eq!(r["result"], json!({}));
    for n in 1..=5 {
        publish_numbered(&mut b, "x", json!(n)).await;
    }
    a.no_push().await;
    // 3, 4, 5 are kept (size 3): from 2 recovers, from 1 does not.
    let r = a.subscribe_since("x", Some((&e, 2))).await;
    assert_eq!(r["recovered"], true);
    assert_eq!(offsets(&r["publications"]), [3, 4, 5]);
    assert_eq!((epoch(&r), r["offset"].as_u64()), (e.clone(), Some(5)));
    assert_eq!(r["publications"][0]["data"], 3);
    for (since_epoch, since) in [(e.as_str(), 1), (e.as_str(), 9), ("another", 5)] {
        let r = a.subscribe_since("x", Some((since_epoch, since))).await;
        assert_eq!(r["recovered"], false, "{since_epoch} {since}");
        assert_eq!(r["publications"], json!([]));
        assert_eq!((epoch(&r), r["offset"].as_u64()), (e.clone(), Some(5)));
    }
    // Up to date: recovered with nothing missed.
    let r = a.subscribe_since("x", Some((&e, 5))).await;
    assert_eq!(
        (r["recovered"].as_bool(), offsets(&r["publications"])),
        (Some(true), vec![])
    );
    // Not recovered, but subscribed anyway.
    assert_eq!(publish_numbered(&mut b, "x", json!(6)).await, 6);
    assert_eq!(a.push().await["offset"], 6);
    a.no_push().await;

    let m = scrape(app.admin).await;
    assert_eq!(
        m.value("wsplus_recoveries_total", &[("result", "recovered")]),
        Some(2.0)
    );
    assert_eq!(
        m.value("wsplus_recoveries_total", &[("result", "not_recovered")]),
        Some(3.0)
    );
    assert_eq!(
        m.value("wsplus_history_publications", &[("listener", PATH)]),
        Some(3.0)
    );
    assert_eq!(
        m.value("wsplus_history_publications", &[("listener", PLAIN)]),
        Some(0.0)
    );
}

#[tokio::test]
async fn publications_expire_after_the_ttl() {
    let app = app(10, 1);
    let mut a = client(&app, "acme").await;
    let e = epoch(&a.subscribe_since("x", None).await);
    publish_numbered(&mut a, "x", json!(1)).await;
    publish_numbered(&mut a, "x", json!(2)).await;
    assert_eq!(a.push().await["offset"], 1);
    assert_eq!(a.push().await["offset"], 2);
    let h = a.cmd(json!({"op": "history", "channel": "x"})).await;
    assert_eq!(offsets(&h["result"]["publications"]), [1, 2]);
    // Waiting for the clock, not for an event: the TTL is 1 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let h = a.cmd(json!({"op": "history", "channel": "x"})).await;
    assert_eq!(
        h["result"],
        json!({"epoch": e, "offset": 2, "publications": []})
    );
    let r = a.subscribe_since("x", Some((&e, 1))).await;
    assert_eq!(r["recovered"], false, "2 expired");
    let r = a.subscribe_since("x", Some((&e, 2))).await;
    assert_eq!(r["recovered"], true, "nothing missed");
    // Offsets go on in the same epoch.
    assert_eq!(publish_numbered(&mut a, "x", json!(3)).await, 3);
}

#[tokio::test]
async fn history_outlives_the_tenants_sessions_and_a_restart_changes_the_epoch() {
    let app = app(10, 60);
    let mut a = client(&app, "acme").await;
    let e = epoch(&a.subscribe_since("x", None).await);
    assert_eq!(publish_numbered(&mut a, "x", json!(1)).await, 1);
    assert_eq!(a.push().await["offset"], 1);
    drop(a);
    app.wait_snapshot(Snapshot::default()).await;
    // Nobody of acme is connected: admin publications are kept all the same.
    for n in 2..=3 {
        let body = json!({"listener": PATH, "scope": "tenant", "tenant": "acme",
                          "channel": "x", "payload": n});
        let r = post_json(&app, "/admin/v1/publish", &body)
            .await
            .expect_ok();
        assert_eq!(r, json!({"delivered": 0, "offset": n}));
    }
    let mut a = client(&app, "acme").await;
    let r = a.subscribe_since("x", Some((&e, 1))).await;
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(offsets(&r["publications"]), [2, 3]);
    assert_eq!(r["publications"][0]["_session"]["type"], "admin");
    drop(a);
    app.shutdown().await;

    let app = self::app(10, 60);
    let mut a = client(&app, "acme").await;
    let r = a.subscribe_since("x", Some((&e, 3))).await;
    assert_eq!(r["recovered"], false, "in memory: a restart is a new epoch");
    assert_ne!(epoch(&r), e);
    assert_eq!(r["offset"], 0);
}

#[tokio::test]
async fn admin_history_route_and_channel_detail() {
    let app = app(10, 60);
    let mut a = client(&app, "acme").await;
    let e = epoch(&a.subscribe_since("x", None).await);
    for n in 1..=3 {
        publish_numbered(&mut a, "x", json!(n)).await;
    }
    let q = format!("listener={}&tenant=acme", PATH.replace('/', "%2F"));
    let d = get(&app, &format!("/admin/v1/channels/x?{q}"))
        .await
        .expect_ok();
    assert_eq!(
        d,
        json!({"channel": "x", "subscribers": 1, "history": {"epoch": e, "offset": 3, "size": 3}})
    );
    let h = get(&app, &format!("/admin/v1/channels/x/history?{q}&limit=2"))
        .await
        .expect_ok();
    assert_eq!((epoch(&h), h["offset"].as_u64()), (e.clone(), Some(3)));
    assert_eq!(offsets(&h["publications"]), [2, 3]);
    assert_eq!(h["publications"][1]["data"], 3);
    assert!(h["publications"][1].get("push").is_none());
    let all = get(&app, &format!("/admin/v1/channels/x/history?{q}"))
        .await
        .expect_ok();
    assert_eq!(offsets(&all["publications"]), [1, 2, 3]);
    for bad in [
        format!("/admin/v1/channels/x/history?{q}&limit=-1"),
        format!("/admin/v1/channels/x/history?{q}&limit=a"),
        format!("/admin/v1/channels/x/history?{q}&other=1"),
        format!(
            "/admin/v1/channels/x/history?listener={}",
            PATH.replace('/', "%2F")
        ),
        format!("/admin/v1/channels/bad%20name/history?{q}"),
        format!(
            "/admin/v1/channels/x/history?listener={}&tenant=acme",
            PLAIN.replace('/', "%2F")
        ),
    ] {
        get(&app, &bad).await.expect_error(400);
    }
    get(
        &app,
        "/admin/v1/channels/x/history?listener=%2Fnope&tenant=acme",
    )
    .await
    .expect_error(404);
    // A server-side subscription tells the client where its stream is.
    let mut c = client(&app, "acme").await;
    let id = c.connected["session"]["id"].as_str().unwrap().to_owned();
    post_json(
        &app,
        &format!("/admin/v1/sessions/{id}/subscriptions"),
        &json!({"channel": "x"}),
    )
    .await
    .expect_ok();
    assert_eq!(
        c.push().await,
        json!({"push": "subscribe", "channel": "x", "epoch": e, "offset": 3})
    );
    // No history on the plain listener: no history object in the detail.
    let d = get(
        &app,
        &format!(
            "/admin/v1/channels/x?listener={}&tenant=acme",
            PLAIN.replace('/', "%2F")
        ),
    )
    .await
    .expect_ok();
    assert!(d.get("history").is_none(), "{d}");
}

/// One session publishes continuously while another unsubscribes and
/// resubscribes with `since` again and again: the offsets it sees — recovered
/// or live — are exactly 1, 2, 3, … with no gap and no repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_hands_over_to_live_publications_without_gap_or_repeat() {
    let app = app(1000, 60);
    let publisher = client(&app, "acme").await;
    let subscriber = client(&app, "acme").await;
    recover_while_publishing(publisher, subscriber, "x", 25).await;
}
