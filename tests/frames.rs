//! Hostile and malformed frames: size limits (1009), invalid UTF-8 (1007),
//! protocol errors (1002), fragmentation — the broker closes the offender and
//! keeps serving everyone else, leaking nothing.

use std::time::{Duration, Instant};

use common::limits::{client_frame, open, recv_close, write_raw};
use common::*;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use wsplus_actors::broker::Snapshot;

const MAX: usize = 1024;

fn app() -> TestApp {
    let mut s = base_settings();
    s.listeners[0].max_message_bytes = MAX;
    TestApp::spawn(s)
}

fn raw(payload: Vec<u8>, opcode: Data, fin: bool) -> Message {
    Message::Frame(Frame::message(payload, OpCode::Data(opcode), fin))
}

/// A bystander in the same tenant proves the broker still serves others.
async fn still_serving(app: &TestApp, bystander: &mut Ws) {
    bystander.send_text("still here").await;
    assert_eq!(bystander.recv_text().await, "still here");
    let mut fresh = app.connect("/ws/events", "acme").await;
    fresh.send_text("fresh").await;
    assert_eq!(fresh.recv_text().await, "fresh");
    assert_eq!(bystander.recv_text().await, "fresh");
}

#[tokio::test]
async fn frame_of_exactly_max_bytes_is_accepted_one_more_closes_1009() {
    let app = app();
    let mut by = app.connect("/ws/events", "acme").await;
    let mut a = app.connect("/ws/events", "acme").await;
    let exact = "x".repeat(MAX);
    a.send_text(&exact).await;
    assert_eq!(a.recv_text().await, exact);
    assert_eq!(by.recv_text().await, exact);
    a.send_text(&"y".repeat(MAX + 1)).await;
    let (code, _) = a.recv_close().await;
    assert_eq!(code, 1009);
    still_serving(&app, &mut by).await;
}

#[tokio::test]
async fn binary_over_the_limit_closes_1009() {
    let app = app();
    let mut a = app.connect("/ws/events", "acme").await;
    a.send_binary(&vec![7u8; MAX + 1]).await;
    assert_eq!(a.recv_close().await.0, 1009);
}

#[tokio::test]
async fn invalid_utf8_text_closes_1007() {
    let app = app();
    let mut by = app.connect("/ws/events", "acme").await;
    let mut a = app.connect("/ws/events", "acme").await;
    a.send(raw(vec![b'o', b'k', 0xff, 0xfe], Data::Text, true))
        .await;
    assert_eq!(a.recv_close().await.0, 1007);
    still_serving(&app, &mut by).await;
}

#[tokio::test]
async fn fragmented_messages_are_reassembled_within_the_limit() {
    let app = app();
    let mut a = app.connect("/ws/events", "acme").await;
    a.send(raw(b"hel".to_vec(), Data::Text, false)).await;
    a.send(raw(b"lo".to_vec(), Data::Continue, true)).await;
    assert_eq!(a.recv_text().await, "hello");
    // Fragments adding up to more than the limit close with 1009.
    a.send(raw(vec![b'a'; MAX / 2 + 1], Data::Text, false))
        .await;
    a.send(raw(vec![b'b'; MAX / 2 + 1], Data::Continue, true))
        .await;
    assert_eq!(a.recv_close().await.0, 1009);
}

#[tokio::test]
async fn fragmented_invalid_utf8_closes_1007() {
    let app = app();
    let mut a = app.connect("/ws/events", "acme").await;
    a.send(raw(vec![0xe2, 0x82], Data::Text, false)).await;
    a.send(raw(vec![0x28], Data::Continue, true)).await;
    assert_eq!(a.recv_close().await.0, 1007);
}

#[tokio::test]
async fn reserved_opcode_and_stray_continuation_close_1002() {
    let app = app();
    let mut by = app.connect("/ws/events", "acme").await;
    let mut a = app.connect("/ws/events", "acme").await;
    a.send(raw(b"?".to_vec(), Data::Reserved(3), true)).await;
    assert_eq!(a.recv_close().await.0, 1002);
    let mut b = app.connect("/ws/events", "acme").await;
    b.send(raw(b"orphan".to_vec(), Data::Continue, true)).await;
    assert_eq!(b.recv_close().await.0, 1002);
    still_serving(&app, &mut by).await;
}

/// A control frame may carry 125 bytes (RFC 6455 §5.5). One that declares
/// 200 MB is refused with 1002 at its header: the server does not wait for
/// (nor buffer) a byte of its payload, whatever `max_message_bytes` is.
#[tokio::test]
async fn a_control_frame_declaring_more_than_125_bytes_closes_1002_at_its_header() {
    let mut s = base_settings();
    s.listeners[0].max_message_bytes = 16 << 20;
    s.listeners[0].heartbeat_s = 0;
    let app = TestApp::spawn(s);
    for first in [0x89u8, 0x8a, 0x88] {
        let mut ws = open(&app, "/ws/events", "acme").await;
        // The header of a ping/pong/close declaring 200 MB, and 1 KiB of it.
        let mut bytes = client_frame(first, &[]);
        bytes[1] = 0x80 | 127;
        bytes.splice(2..2, 200_000_000u64.to_be_bytes());
        bytes.extend_from_slice(&[0u8; 1024]);
        let t0 = Instant::now();
        write_raw(&mut ws, &bytes).await;
        assert_eq!(recv_close(&mut ws).await, 1002, "opcode {first:#x}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }
    // 126 bytes, all sent: refused the same way.
    let mut ws = open(&app, "/ws/events", "acme").await;
    write_raw(&mut ws, &client_frame(0x89, &[7; 126])).await;
    assert_eq!(recv_close(&mut ws).await, 1002);
    let mut ok = app.connect("/ws/events", "acme").await;
    ok.send(tokio_tungstenite::tungstenite::Message::Ping(
        vec![1; 125].into(),
    ))
    .await;
    ok.send_text("after a 125-byte ping").await;
    assert_eq!(ok.recv_text().await, "after a 125-byte ping");
}

/// RFC 6455 §8.1: a close frame's reason that is not UTF-8 fails the
/// connection with 1007, like any other text that is not UTF-8.
#[tokio::test]
async fn a_close_reason_that_is_not_utf8_closes_1007() {
    let app = app();
    let mut ws = open(&app, "/ws/events", "acme").await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[b'b', b'y', 0xff, 0xfe]);
    write_raw(&mut ws, &client_frame(0x88, &payload)).await;
    assert_eq!(recv_close(&mut ws).await, 1007);
    // A valid reason is echoed with the normal code.
    let mut ws = open(&app, "/ws/events", "acme").await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice("bye ✓".as_bytes());
    write_raw(&mut ws, &client_frame(0x88, &payload)).await;
    assert_eq!(recv_close(&mut ws).await, 1000);
}

#[tokio::test]
async fn offenders_leave_no_sessions_rooms_or_timers_behind() {
    let app = app();
    for i in 0..12 {
        let mut a = app.connect("/ws/events", &format!("t{i}")).await;
        let want = match i % 3 {
            0 => {
                a.send_text(&"z".repeat(MAX + 1)).await;
                1009
            }
            1 => {
                a.send(raw(vec![0xff], Data::Text, true)).await;
                1007
            }
            _ => {
                a.send(raw(vec![1], Data::Reserved(4), true)).await;
                1002
            }
        };
        assert_eq!(a.recv_close().await.0, want);
    }
    app.wait_snapshot(Snapshot::default()).await;
}
