//! Back-pressure (docs/limits.md): a consumer that stops reading under a flood
//! is closed with 4009 and counted, every other session keeps receiving every
//! message, and the server's memory stays bounded.

use std::time::Duration;

use common::*;
use std::sync::Arc;

use common::limits::*;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use wsplus::settings::Settings;
use wsplus_actors::broker::Snapshot;
use wsplus_actors::counters::DropReason;
use wsplus_actors::CloseCode;

const PATH: &str = "/ws/events";
const MSG_BYTES: usize = 16 * 1024;
const FLOOD: usize = 2000;

/// Small outbound queues (64 messages, 1 MiB), a full queue closed after
/// 200 ms, and the given send timeout.
fn flood_app(send_timeout_s: u64) -> TestApp {
    flood_app_with(send_timeout_s, |_| {})
}

/// [`flood_app`] with further changes to its settings.
fn flood_app_with(send_timeout_s: u64, change: impl FnOnce(&mut Settings)) -> TestApp {
    let mut s = base_settings();
    s.limits.send_timeout_s = send_timeout_s;
    s.listeners[0].session.max_connections_per_tenant = 4;
    s.server.workers = 2;
    s.listeners[0].max_message_bytes = 64 * 1024;
    s.limits.outbound_queue_messages = 64;
    s.limits.outbound_queue_bytes = 1 << 20;
    s.limits.slow_consumer_timeout_ms = 200;
    change(&mut s);
    TestApp::spawn(s)
}

/// `i` padded to `len` bytes, its number first.
fn numbered(i: usize, len: usize) -> String {
    let head = format!("{i:06}-");
    head.clone() + &"x".repeat(len.saturating_sub(head.len()))
}

/// Reads an unbroken prefix of a flood (numbered from 0), then a 4009 close.
async fn recv_a_prefix_then_4009(ws: &mut Sock) {
    let (before, code) = recv_until_close(ws).await;
    assert_eq!(code, 4009);
    assert!(
        !before.is_empty() && before.len() < FLOOD,
        "{}",
        before.len()
    );
    for (i, m) in before.iter().enumerate() {
        assert!(m.to_text().expect("text").starts_with(&format!("{i:06}-")));
    }
}

/// Messages a fast consumer may lag behind the publisher.
const WINDOW: usize = 16;

/// Reads `n` messages, checks they are 0..n in order, and gives the publisher
/// one permit per message read (so it never runs more than WINDOW ahead).
async fn read_all<S>(mut ws: S, n: usize, window: Arc<Semaphore>) -> S
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut i = 0;
    while i < n {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("fast consumer starved")
            .expect("stream ended")
            .expect("read error");
        match m {
            Message::Text(t) => {
                assert_eq!(&t[..6], format!("{i:06}"), "message {i} out of order");
                i += 1;
                window.add_permits(1);
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("fast consumer got {other:?} after {i} messages"),
        }
    }
    ws
}

/// Floods tenant `acme` with FLOOD numbered messages from a publisher while
/// two fast consumers (and the publisher's own echo) keep up; `slow` reads
/// nothing. Returns the growth of resident memory over the flood, in KiB.
async fn flood(app: &TestApp, fast: Vec<Sock>, publisher: Sock) -> i64 {
    let rss0 = rss_kib();
    let (mut sink, echo) = publisher.split();
    let mut windows = Vec::new();
    let mut readers = Vec::new();
    for ws in fast {
        let w = Arc::new(Semaphore::new(WINDOW));
        windows.push(w.clone());
        readers.push(tokio::spawn(async move {
            drop(read_all(ws, FLOOD, w).await);
        }));
    }
    let w = Arc::new(Semaphore::new(WINDOW));
    windows.push(w.clone());
    readers.push(tokio::spawn(async move {
        drop(read_all(echo, FLOOD, w).await);
    }));
    for i in 0..FLOOD {
        for w in &windows {
            w.acquire().await.expect("window").forget();
        }
        sink.send(Message::text(numbered(i, MSG_BYTES)))
            .await
            .expect("publish");
    }
    // Every session that keeps reading got every message, in order.
    for r in readers {
        r.await.expect("fast consumer");
    }
    assert_eq!(app.counters.messages_in(), FLOOD as u64);
    rss_kib() as i64 - rss0 as i64
}

/// The flood is 32 MiB; holding it for the slow consumer would show.
const RSS_BOUND_KIB: i64 = (FLOOD * MSG_BYTES / 1024 / 2) as i64;

/// Connects a consumer that never reads, two that do, and a publisher; floods
/// the tenant; checks the broker's memory stayed bounded. Returns the slow one.
async fn flood_past_a_slow_consumer(app: &TestApp) -> Sock {
    let slow = open(app, PATH, "acme").await;
    let fast = vec![open(app, PATH, "acme").await, open(app, PATH, "acme").await];
    let publisher = open(app, PATH, "acme").await;
    let grown = flood(app, fast, publisher).await;
    assert!(grown < RSS_BOUND_KIB, "RSS grew {grown} KiB over the flood");
    slow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_is_closed_4009_behind_its_backlog() {
    let app = flood_app(60);
    let mut slow = flood_past_a_slow_consumer(&app).await;
    // Its queue overflowed once: counted, and the room stopped feeding it.
    assert_eq!(app.counters.dropped(DropReason::SlowConsumer), 1);
    // What really happens next: with the socket full, the dispatcher stops
    // driving the Session, so the close frame waits behind the backlog and the
    // session keeps its registry entry (and tenant slot) until the socket moves
    // again or `send_timeout_s` aborts it (next test).
    // (The others have hung up; the slow one remains.)
    app.wait_snapshot(Snapshot {
        sessions: 1,
        rooms: 1,
        timers: 1,
    })
    .await;
    assert_eq!(app.counters.closes(CloseCode::SlowConsumer), 0);
    // Reading at last, it gets an unbroken prefix of the flood, then 4009.
    recv_a_prefix_then_4009(&mut slow).await;
    assert_eq!(app.counters.closes(CloseCode::SlowConsumer), 1);
    app.wait_snapshot(Snapshot::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_never_reads_again_is_aborted_after_the_send_timeout() {
    let app = flood_app(1);
    let mut slow = flood_past_a_slow_consumer(&app).await;
    assert_eq!(app.counters.dropped(DropReason::SlowConsumer), 1);
    // Without reading a byte, the slow session is gone within the send
    // timeout (plus the kernel's probe interval): slot, entry and timer freed.
    // (The others hang up when done; only the slow one could remain.)
    let t0 = std::time::Instant::now();
    app.wait_snapshot(Snapshot::default()).await;
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    // The connection was aborted: whatever the client still reads ends in an
    // error or EOF, never in more than a prefix of the flood.
    let mut seen = 0;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(WAIT, slow.next()).await {
        if m.is_text() {
            seen += 1;
        }
    }
    assert!(seen < FLOOD, "{seen}");
    // And the tenant's cap counts it no more.
    let mut again = open(&app, PATH, "acme").await;
    send_text(&mut again, "back").await;
    assert_eq!(recv_text(&mut again).await, "back");
}

/// `server.shutdown_grace_s` bounds the shutdown: a session frozen behind a
/// consumer that stopped reading (its close frame cannot be written) holds it
/// for the grace period, no longer (the send timeout is far away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_frozen_session_at_most_the_grace_period() {
    let app = flood_app_with(60, |s| s.server.shutdown_grace_s = 1);
    let _slow = flood_past_a_slow_consumer(&app).await;
    app.wait_snapshot(Snapshot {
        sessions: 1,
        rooms: 1,
        timers: 1,
    })
    .await;
    let handle = app.shutdown_handle();
    let t0 = std::time::Instant::now();
    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown finished");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "the frozen session did not hold it: {took:?}"
    );
    // One grace for the sessions, at most one more for the HTTP server's own
    // graceful stop; the test support's default grace (5 s) would exceed it.
    assert!(took < Duration::from_millis(4500), "{took:?}");
}

/// Opens `readers` sessions of tenant acme, then a publisher that sends `n`
/// numbered messages of `len` bytes as fast as it can while reading its own
/// copies back; returns every socket (still open) once every session
/// received every message, in order, and the longest any reader waited
/// between two messages.
async fn burst(app: &TestApp, readers: usize, n: usize, len: usize) -> (Vec<Sock>, Duration) {
    let mut tasks = Vec::new();
    for _ in 0..readers {
        let mut ws = open(app, PATH, "acme").await;
        tasks.push(tokio::spawn(async move {
            let gap = read_numbered_stream(&mut ws, n).await;
            (ws, gap)
        }));
    }
    let publisher = open(app, PATH, "acme").await;
    let (mut sink, mut echo) = publisher.split();
    let echo = tokio::spawn(async move {
        read_numbered_stream(&mut echo, n).await;
        echo
    });
    for i in 0..n {
        sink.feed(Message::text(numbered(i, len)))
            .await
            .expect("publish");
    }
    sink.flush().await.expect("flush");
    let echo = echo.await.expect("the publisher lost one of its messages");
    let publisher = sink.reunite(echo).expect("halves of one socket");
    let mut still_open = vec![publisher];
    let mut longest = Duration::ZERO;
    for t in tasks {
        let (ws, gap) = t.await.expect("a reader lost a message");
        still_open.push(ws);
        longest = longest.max(gap);
    }
    (still_open, longest)
}

/// The burst of the reliability report, full size (the old policy closed
/// every subscriber within the first few thousand messages).
const BURST: usize = 20_000;
const SUBSCRIBERS: usize = 100;

/// A burst is not a slow consumer (docs/limits.md). With the default limits,
/// one publisher sending as fast as it can to 100 subscribers that keep reading
/// loses nothing and closes no one: the room holds the publisher back instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaced_burst_to_100_readers_loses_nothing_and_closes_no_one() {
    raise_fd_limit();
    let mut s = base_settings();
    s.server.workers = 2;
    let app = TestApp::spawn(s);
    let _still_open = burst(&app, SUBSCRIBERS, BURST, 128).await;
    assert_eq!(app.counters.dropped(DropReason::SlowConsumer), 0);
    assert_eq!(app.counters.closes(CloseCode::SlowConsumer), 0);
    assert_eq!(app.counters.messages_in(), BURST as u64);
    assert_eq!(app.snapshot().await.sessions, SUBSCRIBERS + 1);
}

/// A subscriber that stops reading holds the room back for at most
/// `slow_consumer_timeout_ms`, is then closed with 4009, and every other
/// subscriber still receives every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_reader_is_closed_4009_within_the_timeout_and_the_others_get_everything() {
    let mut s = base_settings();
    s.server.workers = 2;
    s.limits.slow_consumer_timeout_ms = 1000;
    let app = TestApp::spawn(s);
    let mut stopped = open(&app, PATH, "acme").await;
    let (_others, longest_wait) = burst(&app, 4, FLOOD, MSG_BYTES).await;
    // The stopped reader's queue filled once: the room waited for it (the
    // others received nothing new meanwhile), at most the timeout plus a
    // second, then closed it and went on.
    assert_eq!(app.counters.dropped(DropReason::SlowConsumer), 1);
    let held = app.counters.backpressure_seconds();
    assert!(held >= 1.0, "the room did not wait for it: {held} s");
    assert!(
        longest_wait < Duration::from_secs(2),
        "the others waited {longest_wait:?}"
    );
    // Reading at last, it finds an unbroken prefix of the flood, then 4009.
    recv_a_prefix_then_4009(&mut stopped).await;
}

/// Reads `n` text messages numbered 0..n in order, answering pings; panics
/// on a close or a gap. Returns the longest wait between two messages.
async fn read_numbered_stream<S>(ws: &mut S, n: usize) -> Duration
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut longest = Duration::ZERO;
    let mut last = std::time::Instant::now();
    for i in 0..n {
        let t = loop {
            match tokio::time::timeout(WAIT, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => break t,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                other => panic!("message {i}: {other:?}"),
            }
        };
        assert!(
            t.starts_with(&format!("{i:06}-")),
            "message {i} lost or out of order"
        );
        if i > 0 {
            longest = longest.max(last.elapsed());
        }
        last = std::time::Instant::now();
    }
    longest
}
