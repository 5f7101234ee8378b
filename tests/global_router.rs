//! Global-scope fan-out runs in the listener's GlobalRouter, off the Broker
//! (whose mailbox also carries every handshake's join and the admin calls):
//! while one client floods a global listener as fast as it can, handshakes on
//! another listener and calls to the Broker keep completing, and the flood
//! goes on reaching its subscribers meanwhile. The bounds are generous (a
//! loaded CI machine); `cargo bench --bench broker -- global_flood` measures
//! the latencies (docs/performance.md).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::limits::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wsplus::settings::Scope;
use wsplus_actors::CloseCode;

/// Longest any one handshake or Broker call may take during the flood.
const BOUND: Duration = Duration::from_secs(3);
const SUBSCRIBERS: usize = 20;
const HANDSHAKES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_and_broker_calls_go_on_while_a_global_listener_floods() {
    let mut s = base_settings();
    s.server.workers = 2;
    let mut all = listener("/ws/all");
    all.scope = Scope::Global;
    s.listeners.push(all);
    let app = TestApp::spawn(s);

    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let mut ws = open(&app, "/ws/all", &format!("t{i}")).await;
        let count = received.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let (mut sink, echo) = open(&app, "/ws/all", "flooder").await.split();
    let drain = tokio::spawn(echo.for_each(|_| async {}));
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let flood = tokio::spawn(async move {
        let mut sent = 0u64;
        while !stopped.load(Ordering::Relaxed) {
            let text = format!("flood {sent:08} {}", "x".repeat(100));
            sink.send(Message::text(text)).await.expect("flood");
            sent += 1;
        }
        sent
    });
    eventually("the flood reaches every subscriber", || async {
        received.load(Ordering::Relaxed) >= 50 * SUBSCRIBERS as u64
    })
    .await;

    let before = received.load(Ordering::Relaxed);
    let mut joined = Vec::new();
    for i in 0..HANDSHAKES {
        let ws = tokio::time::timeout(BOUND, open(&app, "/ws/events", &format!("h{i}")))
            .await
            .unwrap_or_else(|_| panic!("handshake {i} took over {BOUND:?} during the flood"));
        joined.push(ws);
        let snap = tokio::time::timeout(BOUND, app.snapshot()).await;
        assert!(
            snap.is_ok(),
            "a Broker call took over {BOUND:?} during the flood"
        );
    }
    let during = received.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    let sent = flood.await.unwrap();

    assert!(
        during >= SUBSCRIBERS as u64,
        "the flood stalled while the handshakes ran ({during} deliveries)"
    );
    assert!(sent > 0);
    // Readers keep up: the flood held its publisher back, it closed no one.
    assert_eq!(app.counters.closes(CloseCode::SlowConsumer), 0);
    let snap = app.snapshot().await;
    assert_eq!(snap.sessions, SUBSCRIBERS + 1 + HANDSHAKES);
    drain.abort();
    for r in readers {
        r.abort();
    }
}
