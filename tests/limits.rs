//! Enforced limits (issue 5, docs/limits.md): the per-connection rate limit
//! (drop with exact counts, close 4008), `max_connections_per_tenant` under a
//! burst of concurrent handshakes and its release on every kind of end,
//! `allowed_origins`, and `limits.max_connections`.

use std::time::{Duration, Instant};

use common::limits::*;
use common::*;
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsplus::settings::{OnRateLimit, Settings};
use wsplus_actors::broker::{GetStats, Kick, ListSessions, Snapshot};
use wsplus_actors::counters::DropReason;
use wsplus_actors::{CloseCode, SessionId, TenantId};

const PATH: &str = "/ws/events";

fn rate_limited(rate: u32, on: OnRateLimit) -> TestApp {
    let mut s = base_settings();
    s.listeners[0].session.rate_limit_per_s = rate;
    s.listeners[0].session.on_rate_limit = on;
    TestApp::spawn(s)
}

/// A burst of `n` numbered texts, `prefix-0` .. `prefix-(n-1)`, in one write.
fn numbered(prefix: &str, n: usize) -> impl Iterator<Item = String> + '_ {
    (0..n).map(move |i| format!("{prefix}-{i}"))
}

#[tokio::test]
async fn rate_limit_drop_delivers_exactly_the_burst_and_counts_the_rest() {
    const RATE: usize = 10;
    const EXTRA: usize = 7;
    let app = rate_limited(RATE as u32, OnRateLimit::Drop);
    let mut rx = open(&app, PATH, "acme").await;
    let mut tx = open(&app, PATH, "acme").await;
    // The burst reaches the server in one write, far quicker than the 100 ms
    // the bucket needs to earn one more token.
    send_burst(&mut tx, numbered("m", RATE + EXTRA)).await;
    for i in 0..RATE {
        assert_eq!(recv_text(&mut rx).await, format!("m-{i}"));
    }
    eventually("every excess message counted", async || {
        app.counters.dropped(DropReason::RateLimit) == EXTRA as u64
    })
    .await;
    assert_eq!(app.counters.messages_in(), RATE as u64);
    let stats = app.broker.send(GetStats).await.unwrap();
    assert_eq!(
        (stats.messages_in, stats.dropped),
        (RATE as u64, EXTRA as u64)
    );
    // The bucket refills at RATE/s: after a token's worth of time the sender is
    // served again, and nothing of the dropped part arrives before it.
    tokio::time::sleep(Duration::from_millis(1000 / RATE as u64 + 50)).await;
    send_text(&mut tx, "after").await;
    assert_eq!(recv_text(&mut rx).await, "after");
    // The session stayed open throughout: it gets its own messages back too.
    for i in 0..RATE {
        assert_eq!(recv_text(&mut tx).await, format!("m-{i}"));
    }
    assert_eq!(recv_text(&mut tx).await, "after");
    assert_eq!(app.counters.closes(CloseCode::RateLimited), 0);
}

#[tokio::test]
async fn rate_limit_close_sends_4008_after_the_burst() {
    const RATE: usize = 5;
    let app = rate_limited(RATE as u32, OnRateLimit::Close);
    let mut rx = open(&app, PATH, "acme").await;
    let mut tx = open(&app, PATH, "acme").await;
    send_burst(&mut tx, numbered("m", RATE + 3)).await;
    let (before, code) = recv_until_close(&mut tx).await;
    assert_eq!(code, 4008);
    assert!(before.len() <= RATE, "at most its own burst echoed back");
    for i in 0..RATE {
        assert_eq!(recv_text(&mut rx).await, format!("m-{i}"));
    }
    // Only the message that broke the limit is counted: the session reads no
    // further frame once it is closing.
    assert_eq!(app.counters.dropped(DropReason::RateLimit), 1);
    assert_eq!(app.counters.closes(CloseCode::RateLimited), 1);
    // (every session has a timer: its token's exp)
    app.wait_snapshot(Snapshot {
        sessions: 1,
        rooms: 1,
        timers: 1,
    })
    .await;
    // The bystander never saw anything beyond the burst.
    send_text(&mut rx, "still-open").await;
    assert_eq!(recv_text(&mut rx).await, "still-open");
}

fn capped(cap: usize) -> Settings {
    let mut s = base_settings();
    s.server.workers = 2;
    s.listeners[0].session.max_connections_per_tenant = cap;
    s.listeners.push(listener("/ws/other"));
    s.listeners[1].session.max_connections_per_tenant = cap;
    s
}

/// Opens `n` handshakes for `tenant` at once; returns the sockets and refusals.
async fn burst(app: &TestApp, path: &str, tenant: &str, n: usize) -> (Vec<Sock>, Vec<Refusal>) {
    let urls: Vec<String> = (0..n).map(|_| path_for(path, tenant)).collect();
    let attempts = urls.iter().map(|u| try_open(app.http, u, &[]));
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for r in join_all(attempts).await {
        match r {
            Ok(ws) => ok.push(ws),
            Err(e) => refused.push(e),
        }
    }
    (ok, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_cap_holds_under_a_burst_of_concurrent_handshakes() {
    const CAP: usize = 5;
    const TRIES: usize = 60;
    let app = TestApp::spawn(capped(CAP));
    for round in 0..3 {
        let (ok, refused) = burst(&app, PATH, "acme", TRIES).await;
        assert_eq!(ok.len(), CAP, "round {round}");
        assert_eq!(refused.len(), TRIES - CAP);
        for r in &refused {
            assert_eq!(r.status, 429, "{r:?}");
            assert!(r.body.contains("\"reason\":\"tenant_limit\""), "{}", r.body);
        }
        // The cap is per tenant and per listener.
        let (other_tenant, _) = burst(&app, PATH, "globex", CAP).await;
        assert_eq!(other_tenant.len(), CAP);
        let (other_listener, _) = burst(&app, "/ws/other", "acme", CAP).await;
        assert_eq!(other_listener.len(), CAP);
        assert_eq!(app.snapshot().await.sessions, 3 * CAP);
        for ws in ok.into_iter().chain(other_tenant).chain(other_listener) {
            reset(ws);
        }
        app.wait_snapshot(Snapshot::default()).await;
    }
    assert_eq!(app.rejected("tenant_limit"), 3 * (TRIES - CAP) as u64);
}

/// How a capped session ends in [`slot_is_released`].
enum End {
    Close,
    Kick,
    Reset,
    /// Expiry, timeout, heartbeat: the server ends it; the client just waits.
    Server {
        want_close: Option<u16>,
    },
}

/// Fills a cap of one, checks a second handshake gets 429, ends the first
/// session as `end` says, then checks the slot is free again.
async fn slot_is_released(settings: Settings, ttl_s: u64, end: End) {
    let app = TestApp::spawn(settings);
    let first = format!("{PATH}?token={}", token("acme", Some("u"), ttl_s));
    let mut a = try_open(app.http, &first, &[])
        .await
        .expect("first session");
    let refused = try_open(app.http, &path_for(PATH, "acme"), &[])
        .await
        .expect_err("second handshake refused");
    assert_eq!(refused.status, 429);
    match end {
        End::Close => {
            a.close(None).await.expect("close");
            wait_end(&mut a).await;
        }
        End::Kick => {
            let sessions = app
                .broker
                .send(ListSessions {
                    tenant: TenantId::new("acme"),
                })
                .await
                .unwrap();
            assert_eq!(sessions.len(), 1);
            let kicked = app
                .broker
                .send(Kick {
                    id: SessionId::from_string(sessions[0].id.as_str()),
                    code: CloseCode::Kicked,
                })
                .await
                .unwrap();
            assert!(kicked);
            assert_eq!(recv_close(&mut a).await, 4003);
        }
        End::Reset => reset(a),
        End::Server {
            want_close: Some(code),
        } => assert_eq!(recv_close(&mut a).await, code),
        End::Server { want_close: None } => {
            // Never read (so pings go unanswered) until the server has let go.
            app.wait_snapshot(Snapshot::default()).await;
            drop(a);
        }
    }
    app.wait_snapshot(Snapshot::default()).await;
    let mut again = open(&app, PATH, "acme").await;
    send_text(&mut again, "back").await;
    assert_eq!(recv_text(&mut again).await, "back");
}

#[tokio::test]
async fn tenant_slot_is_released_on_close() {
    slot_is_released(capped(1), 3600, End::Close).await;
}

#[tokio::test]
async fn tenant_slot_is_released_on_kick() {
    slot_is_released(capped(1), 3600, End::Kick).await;
}

#[tokio::test]
async fn tenant_slot_is_released_on_tcp_reset() {
    slot_is_released(capped(1), 3600, End::Reset).await;
}

#[tokio::test]
async fn tenant_slot_is_released_on_token_expiry() {
    // exp is whole seconds: the session ends 1–2 s after it starts.
    let end = End::Server {
        want_close: Some(4001),
    };
    slot_is_released(capped(1), 2, end).await;
}

#[tokio::test]
async fn tenant_slot_is_released_on_session_timeout() {
    let mut s = capped(1);
    s.listeners[0].session.timeout_s = 1;
    let end = End::Server {
        want_close: Some(4002),
    };
    slot_is_released(s, 3600, end).await;
}

#[tokio::test]
async fn tenant_slot_is_released_on_heartbeat_drop() {
    let mut s = capped(1);
    s.listeners[0].heartbeat_s = 1;
    slot_is_released(s, 3600, End::Server { want_close: None }).await;
}

fn with_origins() -> TestApp {
    let mut s = base_settings();
    s.listeners[0].allowed_origins = vec![
        "https://app.example.com".into(),
        "http://localhost:3000".into(),
    ];
    s.listeners.push(listener("/ws/any-origin"));
    TestApp::spawn(s)
}

#[tokio::test]
async fn allowed_origins_admit_exact_matches_only() {
    let app = with_origins();
    let good = path_for(PATH, "acme");
    for origin in ["https://app.example.com", "http://localhost:3000"] {
        let mut ws = try_open(app.http, &good, &[("Origin", origin)])
            .await
            .unwrap_or_else(|r| panic!("{origin} refused: {r:?}"));
        send_text(&mut ws, "hi").await;
        assert_eq!(recv_text(&mut ws).await, "hi");
    }
    let refused_origins = [
        "https://evil.example.com",
        "https://app.example.com.evil.net",
        "https://app.example.com:443",
        "HTTPS://APP.EXAMPLE.COM",
        "http://app.example.com",
        "null",
    ];
    for origin in refused_origins {
        let r = try_open(app.http, &good, &[("Origin", origin)])
            .await
            .err()
            .unwrap_or_else(|| panic!("{origin} admitted"));
        assert_eq!(r.status, 403, "{origin}");
        assert!(r.body.contains("\"reason\":\"origin\""), "{}", r.body);
    }
    // No Origin at all is not a browser's request: the list does not apply.
    let mut ws = try_open(app.http, &good, &[])
        .await
        .expect("no Origin header: admitted");
    send_text(&mut ws, "no origin").await;
    assert_eq!(recv_text(&mut ws).await, "no origin");
    // Origin is checked before the token: a hijacking page learns nothing more.
    let r = try_open(app.http, PATH, &[("Origin", "https://evil.example.com")])
        .await
        .expect_err("refused");
    assert_eq!(r.status, 403);
    assert_eq!(app.rejected("origin"), refused_origins.len() as u64 + 1);
    assert_eq!(app.rejected("missing_token"), 0);
    // A listener without the list takes any Origin.
    let mut ws = try_open(
        app.http,
        &path_for("/ws/any-origin", "acme"),
        &[("Origin", "https://evil.example.com")],
    )
    .await
    .expect("no origin list: any origin");
    send_text(&mut ws, "ok").await;
    assert_eq!(recv_text(&mut ws).await, "ok");
    assert_eq!(app.snapshot().await.sessions, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_answers_503_across_listeners() {
    const MAX: usize = 6;
    let mut s = base_settings();
    s.limits.max_connections = MAX;
    s.listeners.push(listener("/ws/other"));
    let app = TestApp::spawn(s);
    let (mut held, _) = burst(&app, PATH, "acme", 4).await;
    let (other, _) = burst(&app, "/ws/other", "globex", 2).await;
    held.extend(other);
    assert_eq!(held.len(), MAX);
    let (extra, refused) = burst(&app, "/ws/other", "initech", 10).await;
    assert!(extra.is_empty());
    for r in &refused {
        assert_eq!(r.status, 503, "{r:?}");
        assert!(r.body.contains("\"reason\":\"server_full\""), "{}", r.body);
    }
    assert_eq!(app.rejected("server_full"), 10);
    // One leaves, one more gets in, and not two.
    reset(held.pop().unwrap());
    app.wait_snapshot(Snapshot {
        sessions: MAX - 1,
        rooms: 2,
        timers: MAX - 1,
    })
    .await;
    let (ok, refused) = burst(&app, "/ws/other", "initech", 3).await;
    assert_eq!((ok.len(), refused.len()), (1, 2));
}

#[tokio::test]
async fn a_connection_that_never_completes_its_request_is_timed_out() {
    let mut s = base_settings();
    s.limits.request_timeout_ms = 300;
    let app = TestApp::spawn(s);
    let mut ws = open(&app, PATH, "acme").await;
    let t0 = Instant::now();
    // One says nothing at all, one stops in the middle of its headers (slowloris).
    let mut silent = TcpStream::connect(app.http).await.unwrap();
    let mut partial = TcpStream::connect(app.http).await.unwrap();
    partial
        .write_all(b"GET /ws/events HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    for (name, sock) in [("silent", &mut silent), ("partial", &mut partial)] {
        let mut got = Vec::new();
        let read = tokio::time::timeout(WAIT, sock.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("{name} connection left open"));
        // Answered 408, then closed by the server.
        assert!(read.is_ok(), "{name}: {read:?}");
        assert!(
            got.starts_with(b"HTTP/1.1 408"),
            "{name}: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // An established session is past its request: the timeout never applies.
    tokio::time::sleep(Duration::from_millis(400)).await;
    send_text(&mut ws, "alive").await;
    assert_eq!(recv_text(&mut ws).await, "alive");
}

/// `request_timeout_ms` counts from the connection's start, to the
/// millisecond: a client that sends its request a little later than at once
/// is upgraded, and a slow one gets its 408 no sooner than the timeout.
/// (actix-http computed the deadline from a clock it updates every 500 ms,
/// so a timeout below 500 ms could expire before the client had a chance.)
#[tokio::test]
async fn the_request_timeout_gives_every_connection_its_whole_time() {
    const TIMEOUT: Duration = Duration::from_millis(400);
    const LATE: Duration = Duration::from_millis(50);
    let mut s = base_settings();
    s.limits.request_timeout_ms = TIMEOUT.as_millis() as u64;
    let app = TestApp::spawn(s);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        path_for(PATH, "acme"),
        app.http
    );
    // Connections spread over more than one tick of that clock.
    for i in 0..24 {
        let mut tcp = TcpStream::connect(app.http).await.unwrap();
        tokio::time::sleep(LATE).await;
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.unwrap();
        assert_eq!(
            &head,
            b"HTTP/1.1 101",
            "connection {i}: {:?}",
            String::from_utf8_lossy(&head)
        );
    }
    for i in 0..6 {
        let t0 = Instant::now();
        let mut silent = TcpStream::connect(app.http).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(WAIT, silent.read_to_end(&mut got))
            .await
            .expect("the silent connection was left open")
            .unwrap();
        let waited = t0.elapsed();
        assert!(got.starts_with(b"HTTP/1.1 408"), "{got:?}");
        assert!(
            waited >= TIMEOUT,
            "silent connection {i}: 408 after {waited:?}"
        );
    }
}

#[tokio::test]
async fn max_tcp_connections_bounds_open_sockets_and_frees_them_on_close() {
    let mut s = base_settings(); // one worker: the cap is exact
    s.limits.max_tcp_connections = 3;
    s.limits.request_timeout_ms = 20_000; // idle sockets stay until closed
    let app = TestApp::spawn(s);
    let mut ws = open(&app, PATH, "acme").await;
    let idle_a = TcpStream::connect(app.http).await.unwrap();
    let _idle_b = TcpStream::connect(app.http).await.unwrap();
    // The fourth connection waits in the listen backlog: no answer at all.
    let (addr, url) = (app.http, path_for(PATH, "acme"));
    let mut attempt = tokio::spawn(async move { try_open(addr, &url, &[]).await.is_ok() });
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut attempt)
            .await
            .is_err(),
        "a fourth connection was served"
    );
    // One socket closes: the waiting one is served at once.
    let t0 = Instant::now();
    drop(idle_a);
    let served = tokio::time::timeout(WAIT, attempt).await.expect("served");
    assert!(served.unwrap(), "handshake refused");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    send_text(&mut ws, "both").await;
    assert_eq!(recv_text(&mut ws).await, "both");
}

/// The request head limits as docs/limits.md states them: a request target of
/// 64 KiB or more is a bare 400, a head over 128 KiB or with more than 96
/// header lines is a bare 431; below them the usual JSON refusal comes.
#[tokio::test]
async fn request_heads_are_bounded_as_documented() {
    let app = TestApp::spawn(base_settings());
    async fn first_line(app: &TestApp, req: String) -> String {
        let mut s = TcpStream::connect(app.http).await.unwrap();
        let _ = s.write_all(req.as_bytes()).await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut got))
            .await
            .expect("the server kept the connection open");
        let text = String::from_utf8_lossy(&got).into_owned();
        text.lines().next().unwrap_or_default().to_owned()
    }
    let target = |kib: usize| format!("{PATH}?x={}", "a".repeat(kib * 1024));
    let get = |target: String, headers: String| {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n")
    };
    assert!(first_line(&app, get(target(63), String::new()))
        .await
        .contains(" 401 "));
    assert!(first_line(&app, get(target(64), String::new()))
        .await
        .contains(" 400 "));
    let header = |kib: usize| format!("X-Big: {}\r\n", "b".repeat(kib * 1024));
    assert!(first_line(&app, get(PATH.into(), header(120)))
        .await
        .contains(" 401 "));
    assert!(first_line(&app, get(PATH.into(), header(129)))
        .await
        .contains(" 431 "));
    let lines = |n: usize| (0..n).map(|i| format!("X-H{i}: v\r\n")).collect::<String>();
    // Host plus 95 more is 96 header lines.
    assert!(first_line(&app, get(PATH.into(), lines(95)))
        .await
        .contains(" 401 "));
    assert!(first_line(&app, get(PATH.into(), lines(96)))
        .await
        .contains(" 431 "));
}
