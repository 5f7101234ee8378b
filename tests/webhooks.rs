//! `[[webhooks]]` against a real backend on loopback: session events arrive
//! batched and signed, in order per tenant, and survive a backend outage; a
//! full queue drops and counts.

use std::collections::HashMap;
use std::time::Duration;

use common::hooks::*;
use common::metrics;
use common::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use wsplus::settings::{Settings, WebhookEvent, WebhookSettings};

/// How long the backend stays down in the outage test; 30 s must be
/// survived, the test uses less unless `WSPLUS_TEST_OUTAGE_S` says.
fn outage() -> Duration {
    let s = std::env::var("WSPLUS_TEST_OUTAGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    Duration::from_secs(s)
}

fn with_webhook(backend: &Backend, queue: usize) -> Settings {
    let mut s = base_settings();
    s.webhooks = vec![WebhookSettings {
        url: format!("http://{}/events", backend.addr),
        events: vec![WebhookEvent::SessionOpened, WebhookEvent::SessionClosed],
        secret_env: Some("HOOK_SECRET".into()),
        queue,
        ..Default::default()
    }];
    s
}

fn spawn(s: Settings) -> TestApp {
    TestApp::spawn_with_env(
        s,
        HashMap::from([("HOOK_SECRET".to_owned(), HOOK_SECRET.to_owned())]),
    )
}

/// Every event the backend received, in arrival order (batches flattened).
fn events(backend: &Backend) -> Vec<Value> {
    backend
        .requests()
        .iter()
        .filter(|r| r.hook == "events")
        .flat_map(|r| r.json["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

async fn wait_events(backend: &Backend, n: usize, limit: Duration) -> Vec<Value> {
    poll_within(
        limit,
        &format!("{n} webhook events"),
        async || events(backend),
        |e| e.len() >= n,
    )
    .await
}

#[tokio::test]
async fn session_events_are_batched_signed_and_carry_the_close_code() {
    let backend = Backend::start(|_| Answer::json(json!({})));
    let app = spawn(with_webhook(&backend, 100));
    let mut ws = app.connect("/ws/events", "acme").await;
    // A close handshake seen through (the server's echo awaited), so the
    // server reads the client's code before the TCP connection ends.
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    })))
    .await;
    ws.wait_end().await;
    let got = wait_events(&backend, 2, WAIT).await;
    assert_eq!(got.len(), 2, "{got:#?}");
    let (opened, closed) = (&got[0], &got[1]);
    assert_eq!(opened["event"], "session.opened");
    assert_eq!(opened["listener"], "/ws/events");
    assert_eq!(opened["tenantId"], "acme");
    assert_eq!(opened["session"]["subject"], "user");
    assert!(opened["time_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(closed["event"], "session.closed");
    assert_eq!(closed["session"]["id"], opened["session"]["id"]);
    assert_eq!(closed["code"], 1000);
    assert!(opened.get("code").is_none());
    for r in backend.requests() {
        assert!(r.signed_with(HOOK_SECRET), "{r:?}");
    }
}

#[tokio::test]
async fn events_survive_an_outage_and_arrive_in_order_per_tenant() {
    let mut backend = Backend::start(|_| Answer::json(json!({})));
    let app = spawn(with_webhook(&backend, 1000));
    backend.down();
    let mut expected: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for _ in 0..3 {
        for tenant in ["acme", "globex"] {
            app.connect("/ws/events", tenant).await.close().await;
        }
    }
    // 12 events queued while the backend is away (each session's close
    // reaches the queue asynchronously).
    metrics::wait_value(app.admin, "wsplus_webhook_queue", &[("webhook", "0")], 12.0).await;
    tokio::time::sleep(outage()).await;
    backend.up();
    let got = wait_events(&backend, 12, WAIT + outage()).await;
    for e in &got {
        expected
            .entry(if e["tenantId"] == "acme" {
                "acme"
            } else {
                "globex"
            })
            .or_default()
            .push((
                e["event"].as_str().unwrap().to_owned(),
                e["session"]["id"].as_str().unwrap().to_owned(),
            ));
    }
    assert_eq!(got.len(), 12, "nothing lost, nothing doubled: {got:#?}");
    // Queued during the outage, they travel as one batch (at most 100 each).
    assert_eq!(backend.requests().len(), 1, "one POST with the backlog");
    for (tenant, seq) in expected {
        assert_eq!(seq.len(), 6, "{tenant}");
        for pair in seq.chunks(2) {
            assert_eq!(pair[0].0, "session.opened", "{tenant}: {seq:?}");
            assert_eq!(pair[1].0, "session.closed", "{tenant}: {seq:?}");
            assert_eq!(pair[0].1, pair[1].1, "{tenant}: {seq:?}");
        }
    }
    let m = metrics::wait_until(app.admin, "queue drained", |m| {
        m.value("wsplus_webhook_queue", &[("webhook", "0")]) == Some(0.0)
    })
    .await;
    assert_eq!(
        m.value("wsplus_webhook_delivered_total", &[("webhook", "0")]),
        Some(12.0)
    );
    assert!(
        m.value("wsplus_webhook_failed_posts_total", &[("webhook", "0")])
            .unwrap()
            >= 1.0
    );
    assert_eq!(
        m.value("wsplus_webhook_dropped_total", &[("webhook", "0")]),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_full_queue_drops_new_events_and_counts_them() {
    let mut backend = Backend::start(|_| Answer::json(json!({})));
    let app = spawn(with_webhook(&backend, 3));
    backend.down();
    for _ in 0..3 {
        app.connect("/ws/events", "acme").await.close().await;
    }
    metrics::wait_value(
        app.admin,
        "wsplus_webhook_dropped_total",
        &[("webhook", "0")],
        3.0,
    )
    .await;
    backend.up();
    let got = wait_events(&backend, 3, WAIT + Duration::from_secs(4)).await;
    // The first three events, in order; the later ones were dropped.
    let kinds: Vec<&str> = got.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["session.opened", "session.closed", "session.opened"]
    );
}
