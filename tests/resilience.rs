//! Resilience under load, faults and hostile clients (issue 5), loopback only,
//! bounded in count and time: 1,000 concurrent connections across 50 tenants,
//! 5,000 connect/disconnect cycles with abrupt endings, peers that stop
//! answering pings or vanish, invalid frames mid-stream, and a flood of failed
//! handshakes next to live sessions. (The slow consumer under a flood is in
//! `limits_backpressure.rs`.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::limits::*;
use common::*;
use futures_util::stream::{self, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsplus_actors::broker::Snapshot;

const PATH: &str = "/ws/events";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_across_fifty_tenants_get_exactly_their_tenants_messages() {
    const TENANTS: usize = 50;
    const PER_TENANT: usize = 20;
    const SENDS: usize = 3;
    raise_fd_limit();
    let mut s = base_settings();
    s.server.workers = 2;
    let app = TestApp::spawn(s);
    let clients: Vec<(usize, usize, Sock)> = stream::iter(0..TENANTS * PER_TENANT)
        .map(|i| {
            let app = &app;
            async move {
                let (t, c) = (i % TENANTS, i / TENANTS);
                (t, c, open(app, PATH, &format!("tenant-{t}")).await)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(app.snapshot().await.sessions, TENANTS * PER_TENANT);
    assert_eq!(app.snapshot().await.rooms, TENANTS);

    let t0 = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(t, c, mut ws)| {
            tokio::spawn(async move {
                send_burst(&mut ws, (0..SENDS).map(|k| format!("tenant-{t}|{c}|{k}"))).await;
                // Per sender of its tenant, the messages seen so far.
                let mut seen: HashMap<usize, usize> = HashMap::new();
                for _ in 0..PER_TENANT * SENDS {
                    let text = recv_text(&mut ws).await;
                    let mut parts = text.split('|');
                    let tenant = parts.next().unwrap();
                    assert_eq!(tenant, format!("tenant-{t}"), "cross-tenant delivery");
                    let sender: usize = parts.next().unwrap().parse().unwrap();
                    let k: usize = parts.next().unwrap().parse().unwrap();
                    let n = seen.entry(sender).or_default();
                    assert_eq!(k, *n, "sender {sender}'s messages out of order");
                    *n += 1;
                }
                assert_eq!(seen.len(), PER_TENANT);
                ws
            })
        })
        .collect();
    let mut done = Vec::new();
    for task in tasks {
        done.push(task.await.expect("client"));
    }
    let elapsed = t0.elapsed();
    // Exactly what was sent, and nothing more queued for anyone.
    let total = (TENANTS * PER_TENANT) as u64;
    assert_eq!(app.counters.messages_in(), total * SENDS as u64);
    let deliveries = app
        .counters
        .listener(wsplus_actors::ListenerId(0))
        .deliveries
        .get();
    assert_eq!(deliveries, total * (PER_TENANT * SENDS) as u64);
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    for ws in done {
        reset(ws);
    }
    app.wait_snapshot(Snapshot::default()).await;
}

/// How cycle `i` of [`connect_disconnect_cycles_leave_nothing_behind`] ends.
async fn one_cycle(app: &TestApp, i: usize) {
    let tenant = format!("t{}", i % 10);
    match i % 6 {
        0 => {
            let mut ws = open(app, PATH, &tenant).await;
            ws.close(None).await.expect("close");
        }
        1 => drop(open(app, PATH, &tenant).await), // FIN, no close frame
        2 => reset(open(app, PATH, &tenant).await),
        3 => {
            let mut ws = open(app, PATH, &tenant).await;
            send_text(&mut ws, "bye").await;
            reset(ws);
        }
        4 => {
            // Gone before reading the 101: the session may be joined already.
            let mut tcp = TcpStream::connect(app.http).await.expect("connect");
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                path_for(PATH, &tenant),
                app.http
            );
            tcp.write_all(req.as_bytes()).await.expect("write");
            if i % 12 == 4 {
                tcp.set_zero_linger().expect("linger");
            }
            drop(tcp);
        }
        _ => {
            // Half a fragmented message, then gone.
            let mut ws = open(app, PATH, &tenant).await;
            write_raw(&mut ws, &client_frame(0x01, b"half of a")).await;
            reset(ws);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disconnect_cycles_leave_nothing_behind() {
    const CYCLES: usize = 5000;
    const CAP: usize = 40;
    raise_fd_limit();
    let mut s = base_settings();
    s.server.workers = 2;
    s.listeners[0].session.timeout_s = 3600; // a timer per session as well as exp
    s.listeners[0].session.max_connections_per_tenant = CAP;
    let app = TestApp::spawn(s);
    let t0 = Instant::now();
    stream::iter(0..CYCLES)
        .for_each_concurrent(32, |i| one_cycle(&app, i))
        .await;
    app.wait_snapshot(Snapshot::default()).await;
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    assert_eq!(app.rejected("tenant_limit"), 0);
    // Every tenant slot came back: the cap can be filled again, exactly.
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(open(&app, PATH, "t0").await);
    }
    let refused = try_open(app.http, &path_for(PATH, "t0"), &[])
        .await
        .expect_err("cap reached");
    assert_eq!(refused.status, 429);
    let snap = app.snapshot().await;
    assert_eq!((snap.sessions, snap.rooms, snap.timers), (CAP, 1, CAP));
}

#[tokio::test]
async fn peers_that_vanish_or_never_answer_pings_are_dropped_and_others_stay() {
    let mut s = base_settings();
    s.listeners[0].heartbeat_s = 1;
    let app = TestApp::spawn(s);
    // Half-open: after the handshake it neither reads nor writes, as if the
    // host had gone without a FIN.
    let _vanished = open(&app, PATH, "acme").await;
    // Reads every byte (raw, so nothing answers the pings) but never writes.
    let mut mute = open(&app, PATH, "acme").await;
    let mute_reader = tokio::spawn(async move {
        let t0 = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match mute.get_mut().read(&mut buf).await {
                Ok(0) | Err(_) => return t0.elapsed(),
                Ok(_) => {}
            }
        }
    });
    let mut alive = open(&app, PATH, "acme").await;
    assert_eq!(app.snapshot().await.sessions, 3);
    // The live client reads, so its library answers pings; it is never dropped.
    let deadline = Instant::now() + WAIT;
    while app.snapshot().await.sessions != 1 {
        assert!(Instant::now() < deadline, "silent peers never dropped");
        send_text(&mut alive, "tick").await;
        assert_eq!(recv_text(&mut alive).await, "tick");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The mute reader saw its connection closed (no close frame: a drop) within
    // two intervals and a tick of the heartbeat.
    let gone_after = tokio::time::timeout(WAIT, mute_reader)
        .await
        .expect("mute peer's socket never closed")
        .unwrap();
    assert!(gone_after < Duration::from_secs(5), "{gone_after:?}");
    // Several more intervals later the live one, still talking, is still there.
    for i in 0..12 {
        send_text(&mut alive, &format!("still-{i}")).await;
        assert_eq!(recv_text(&mut alive).await, format!("still-{i}"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let snap = app.snapshot().await;
    assert_eq!((snap.sessions, snap.rooms), (1, 1));
}

/// Raw frames that break the protocol, each after valid traffic, and the close
/// code the broker answers with.
fn invalid_frames() -> Vec<(&'static str, Vec<u8>, u16)> {
    let unmasked = {
        let mut f = vec![0x81, 5];
        f.extend_from_slice(b"plain");
        f
    };
    let huge_length = {
        // Claims 2^40 bytes; nothing of it is ever sent or buffered.
        let mut f = vec![0x82, 0x80 | 127];
        f.extend_from_slice(&(1u64 << 40).to_be_bytes());
        f.extend_from_slice(&[1, 2, 3, 4]);
        f
    };
    vec![
        ("unmasked frame", unmasked, 1002),
        (
            "rsv1 without an extension",
            client_frame(0xC1, b"rsv"),
            1002,
        ),
        ("reserved opcode", client_frame(0x83, b"op3"), 1002),
        (
            "invalid utf-8",
            client_frame(0x81, &[b'a', 0xc3, 0x28]),
            1007,
        ),
        ("length over max_message_bytes", huge_length, 1009),
        (
            "control frame over 125 bytes",
            client_frame(0x89, &[0; 200]),
            1002,
        ),
        (
            "fragmented control frame",
            client_frame(0x09, b"ping"),
            1002,
        ),
        (
            "continuation without a start",
            client_frame(0x80, b"cont"),
            1002,
        ),
        (
            "new message inside a fragmented one",
            [client_frame(0x01, b"first"), client_frame(0x81, b"second")].concat(),
            1002,
        ),
    ]
}

#[tokio::test]
async fn invalid_frames_mid_stream_close_the_offender_only() {
    let mut s = base_settings();
    s.listeners[0].max_message_bytes = 4096;
    let app = TestApp::spawn(s);
    let mut bystander = open(&app, PATH, "acme").await;
    for (round, (what, frame, want)) in invalid_frames().into_iter().enumerate() {
        let mut a = open(&app, PATH, "acme").await;
        // Valid traffic, the bad frame, and more valid traffic in one write.
        let mut bytes = Vec::new();
        for k in 0..3 {
            bytes.extend(client_frame(0x81, format!("{round}-{k}").as_bytes()));
        }
        bytes.extend(frame);
        bytes.extend(client_frame(0x81, b"after the bad frame"));
        write_raw(&mut a, &bytes).await;
        let (before, code) = recv_until_close(&mut a).await;
        assert_eq!(code, want, "{what}");
        // Its own echoes may be cut short: it is closing by the time the room
        // hands them back. What it gets is an in-order prefix.
        for (k, m) in before.iter().enumerate() {
            assert_eq!(m.to_text().unwrap(), format!("{round}-{k}"), "{what}");
        }
        // The bystander got exactly the valid part, in order, nothing after.
        for k in 0..3 {
            assert_eq!(
                recv_text(&mut bystander).await,
                format!("{round}-{k}"),
                "{what}"
            );
        }
        send_text(&mut bystander, "check").await;
        assert_eq!(recv_text(&mut bystander).await, "check", "{what}");
        drop(a);
    }
    app.wait_snapshot(Snapshot {
        sessions: 1,
        rooms: 1,
        timers: 1,
    })
    .await;
}

/// Round trips of one echo each (tenant scope, sole member), in milliseconds.
async fn round_trips(ws: &mut Sock, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        send_text(ws, &format!("rtt-{i}")).await;
        assert_eq!(recv_text(ws).await, format!("rtt-{i}"));
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out.sort_by(f64::total_cmp);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_failed_handshakes_leaves_live_sessions_their_latency() {
    const FLOODERS: usize = 8;
    const MAX_ATTEMPTS: usize = 4000;
    raise_fd_limit();
    let app = TestApp::spawn(base_settings());
    let mut ws = open(&app, PATH, "acme").await;
    let before = round_trips(&mut ws, 40).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Well-formed tokens signed with the wrong secret: each costs the server a
    // full signature check.
    let forged = wsplus::auth::mint::hs256(
        "not-the-secret-at-all-0123456789",
        &wsplus::auth::mint::Claims::new("acme", Some("mallory"), 3600, "tenant_id"),
    )
    .unwrap();
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let (stop, attempts) = (stop.clone(), attempts.clone());
            let (addr, url) = (app.http, format!("{PATH}?token={forged}"));
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < MAX_ATTEMPTS
                {
                    let r = try_open(addr, &url, &[]).await;
                    assert_eq!(r.expect_err("forged token accepted").status, 401);
                }
            })
        })
        .collect();
    // Let the flood build up, then measure beside it.
    eventually("flood under way", async || {
        app.rejected("invalid_signature") >= 100
    })
    .await;
    let during = round_trips(&mut ws, 40).await;
    let rejected_during_measure = app.rejected("invalid_signature");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flooders {
        f.await.expect("flooder");
    }
    let p50 = |v: &[f64]| v[v.len() / 2];
    let p90 = |v: &[f64]| v[v.len() * 9 / 10];
    eprintln!(
        "rtt ms before p50 {:.2} p90 {:.2}; during p50 {:.2} p90 {:.2}; refused {}",
        p50(&before),
        p90(&before),
        p50(&during),
        p90(&during),
        rejected_during_measure
    );
    assert!(
        rejected_during_measure >= 200,
        "the flood was too thin to mean anything"
    );
    // Generous bounds for two shared cores, where the flood runs too.
    assert!(p50(&during) < p50(&before) * 20.0 + 50.0, "{during:?}");
    assert!(p90(&during) < 250.0, "{during:?}");
    // The session was never at risk.
    assert_eq!(app.snapshot().await.sessions, 1);
    let total = attempts
        .load(std::sync::atomic::Ordering::Relaxed)
        .min(MAX_ATTEMPTS) as u64;
    eventually("every forged handshake counted", async || {
        app.rejected("invalid_signature") >= total.saturating_sub(FLOODERS as u64)
    })
    .await;
}
