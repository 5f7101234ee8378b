//! Connection life cycle: abrupt disconnects, silent clients, dead peers and
//! graceful shutdown leave nothing behind.

use common::*;
use wsplus_actors::broker::Snapshot;

#[tokio::test]
async fn many_abrupt_and_clean_disconnects_leave_no_rooms_sessions_or_timers() {
    let mut s = base_settings();
    s.listeners[0].session.timeout_s = 3600; // every session gets a timer
    let app = TestApp::spawn(s);
    for round in 0..5 {
        let mut open = Vec::new();
        for i in 0..40 {
            open.push(app.connect("/ws/events", &format!("tenant{}", i % 7)).await);
        }
        let snap = app.snapshot().await;
        assert_eq!(
            (snap.sessions, snap.rooms, snap.timers),
            (40, 7, 40),
            "round {round}"
        );
        for (i, ws) in open.into_iter().enumerate() {
            if i % 2 == 0 {
                ws.abort(); // TCP drop, no close frame
            } else {
                ws.close().await;
            }
        }
        app.wait_snapshot(Snapshot::default()).await;
    }
}

#[tokio::test]
async fn a_client_that_connects_and_never_sends_does_not_disturb_others() {
    let app = TestApp::spawn(base_settings());
    let _silent = app.connect("/ws/events", "acme").await;
    let mut a = app.connect("/ws/events", "acme").await;
    a.send_text("hi").await;
    assert_eq!(a.recv_text().await, "hi");
    assert_eq!(app.snapshot().await.sessions, 2);
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    let mut s = base_settings();
    s.listeners[0].heartbeat_s = 1;
    let app = TestApp::spawn(s);
    // tungstenite answers pings only while the stream is read: never reading
    // makes this peer dead to the server.
    let _dead = app.connect("/ws/events", "acme").await;
    let mut alive = app.connect("/ws/events", "acme").await;
    assert_eq!(app.snapshot().await.sessions, 2);
    // The live client keeps reading (and so answers pings) while the dead one is dropped.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        alive.send_text("ping-through").await;
        assert_eq!(alive.recv_text().await, "ping-through");
        if app.snapshot().await.sessions == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead peer never dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let snap = app.snapshot().await;
    assert_eq!((snap.sessions, snap.rooms), (1, 1));
    assert_eq!(app.counters.heartbeat_timeouts(), 1);
}

#[tokio::test]
async fn in_process_shutdown_closes_sessions_with_1001() {
    let app = TestApp::spawn(base_settings());
    let mut a = app.connect("/ws/events", "acme").await;
    let mut b = app.connect("/ws/events", "globex").await;
    let handle = app.shutdown_handle();
    let shutdown = tokio::spawn(async move { handle.shutdown().await });
    assert_eq!(a.recv_close().await.0, 1001);
    assert_eq!(b.recv_close().await.0, 1001);
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown finished")
        .unwrap();
}
