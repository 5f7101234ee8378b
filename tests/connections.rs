//! No connection held for free: one request per connection on both ports (no
//! keep-alive, no pipelining, no request bodies on the client port), the
//! socket closed as soon as a refusal or a close reply is written, the admin
//! request body bounded by `request_timeout_ms`, and a shutdown with no grace
//! that does not linger. All without a token.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::limits::{client_frame, open, path_for, try_open};
use common::*;
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATH: &str = "/ws/events";

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Reads until the server closes the connection; what it sent and how long
/// that took. A reset counts as closed.
async fn read_until_closed(s: &mut TcpStream) -> (String, Duration) {
    let (bytes, took) = read_bytes_until_closed(s).await;
    (String::from_utf8_lossy(&bytes).into_owned(), took)
}

/// [`read_until_closed`], as bytes.
async fn read_bytes_until_closed(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("the server kept the connection open")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    (got, t0.elapsed())
}

/// A request answered, then the first byte of another: before, actix kept
/// such a connection open for as long as the second request took.
async fn idle_after_one_request(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = connect(addr).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\nG");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn idle_connections_after_a_request_do_not_lock_clients_out() {
    let mut s = base_settings();
    s.limits.max_tcp_connections = 60;
    s.limits.request_timeout_ms = 30_000;
    let app = TestApp::spawn(s);
    let mut idle = Vec::new();
    for i in 0..60 {
        let mut c = idle_after_one_request(app.http, "/nope").await;
        if i % 2 == 0 {
            // Half of them also drip a chunked body after their request.
            c.write_all(
                b"POST /ws/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            )
            .await
            .unwrap();
        }
        idle.push(c);
    }
    let t0 = Instant::now();
    let ws = try_open(app.http, &path_for(PATH, "acme"), &[]).await;
    assert!(ws.is_ok(), "{:?}", ws.err());
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "upgrade answered after {:?}",
        t0.elapsed()
    );
    // Each of them got its one answer and was closed.
    for mut c in idle {
        let (text, _) = read_until_closed(&mut c).await;
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
        assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    }
}

#[tokio::test]
async fn the_admin_port_answers_one_request_per_connection_and_bounds_bodies() {
    let mut s = base_settings();
    // Above actix's clock granularity (its "now" is updated every 500 ms).
    s.limits.request_timeout_ms = 1000;
    let app = TestApp::spawn(s);
    let mut c = idle_after_one_request(app.admin, "/admin/v1/nope").await;
    let (text, _) = read_until_closed(&mut c).await;
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    // A body that never completes is cut off after request_timeout_ms.
    let mut c = connect(app.admin).await;
    let head = format!(
        "POST /admin/v1/publish HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"a\""
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let (text, took) = read_until_closed(&mut c).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(!text.starts_with("HTTP/1.1 2"), "{text}");
    // The same with a dripped chunked body.
    let mut c = connect(app.admin).await;
    let head = format!(
        "POST /admin/v1/publish HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let (_, took) = read_until_closed(&mut c).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    // A complete request is still served.
    let (status, _) = http_get(app.admin, "/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn pipelined_requests_get_one_answer_and_the_connection_closes() {
    let app = TestApp::spawn(base_settings());
    let mut c = connect(app.http).await;
    let one = format!("GET /nope HTTP/1.1\r\nHost: {}\r\n\r\n", app.http);
    let many = one.repeat(1000);
    // Written without reading: the server must neither answer nor buffer them.
    let _ = c.write_all(many.as_bytes()).await;
    let (text, _) = read_until_closed(&mut c).await;
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
}

#[tokio::test]
async fn a_refused_handshake_is_closed_as_soon_as_it_is_answered() {
    let app = TestApp::spawn(base_settings());
    for (what, req) in [
        ("401", format!("GET {PATH} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")),
        ("404", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".to_string()),
        ("404", "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc".to_string()),
    ] {
        let mut c = connect(app.http).await;
        c.write_all(req.as_bytes()).await.unwrap();
        let (text, took) = read_until_closed(&mut c).await;
        assert!(text.starts_with(&format!("HTTP/1.1 {what}")), "{text}");
        assert!(took < Duration::from_millis(500), "{what}: closed after {took:?}");
    }
}

#[tokio::test]
async fn a_hundred_proper_closes_complete_within_a_second() {
    let app = TestApp::spawn(base_settings());
    let mut socks = Vec::new();
    for _ in 0..100 {
        socks.push(open(&app, PATH, "acme").await);
    }
    let t0 = Instant::now();
    join_all(socks.into_iter().map(|mut ws| async move {
        // Written raw, and read raw: the client neither half-closes nor
        // closes its side, it waits for the server to close TCP first
        // (RFC 6455 §7.1.1).
        let tcp = ws.get_mut();
        tcp.write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
            .await
            .unwrap();
        let (reply, took) = read_bytes_until_closed(tcp).await;
        assert!(reply.starts_with(&[0x88, 2, 0x03, 0xe8]), "{reply:?}");
        // actix-http used to linger up to a second (0.5 s at least, its
        // clock being coarse) for the client to close first.
        assert!(took < Duration::from_millis(400), "one close took {took:?}");
    }))
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "100 closes took {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn shutdown_without_grace_finishes_at_once() {
    let mut s = base_settings();
    s.server.shutdown_grace_s = 0;
    let app = TestApp::spawn(s);
    let mut socks = Vec::new();
    for _ in 0..10 {
        socks.push(open(&app, PATH, "acme").await);
    }
    let handle = app.shutdown_handle();
    let t0 = Instant::now();
    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown finished");
    assert!(
        t0.elapsed() < Duration::from_millis(200),
        "shutdown took {:?}",
        t0.elapsed()
    );
}
