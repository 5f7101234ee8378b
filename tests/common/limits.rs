//! Helpers for the limits and resilience tests: WebSocket clients on sockets the
//! test owns (so it can reset them, stop reading, or write raw bytes), bounded
//! polling, the process's resident memory and its open-file limit.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::{token, TestApp, WAIT};

/// A client WebSocket over a plain TCP stream the test can reach.
pub type Sock = WebSocketStream<TcpStream>;

/// Raises the soft open-file limit to the hard one: the resilience tests hold
/// 1,000+ sockets on each side of the loopback.
pub fn raise_fd_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

/// The resident set size of this process (client and in-process server), KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// A refused handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub body: String,
}

/// `/path?token=<fresh token for tenant>`.
pub fn path_for(path: &str, tenant: &str) -> String {
    format!("{path}?token={}", token(tenant, Some("user"), 3600))
}

/// Performs the WebSocket handshake for `path_query` on a new TCP connection,
/// with `headers` added to the request.
pub async fn try_open(
    addr: SocketAddr,
    path_query: &str,
    headers: &[(&str, &str)],
) -> Result<Sock, Refusal> {
    let mut req = format!("ws://{addr}{path_query}")
        .into_client_request()
        .expect("valid url");
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            v.parse().expect("header value"),
        );
    }
    let tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("tcp connect timed out")
        .expect("tcp connect");
    match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tcp))
        .await
        .expect("handshake timed out")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err(Refusal {
            status: resp.status().as_u16(),
            body: String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        }),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// Opens a session for `tenant` on `path` or panics.
pub async fn open(app: &TestApp, path: &str, tenant: &str) -> Sock {
    try_open(app.http, &path_for(path, tenant), &[])
        .await
        .unwrap_or_else(|r| panic!("handshake refused: {r:?}"))
}

/// Sends a text frame.
pub async fn send_text(ws: &mut Sock, s: &str) {
    ws.send(Message::text(s)).await.expect("send");
}

/// Queues every text in one write (they reach the server back to back).
pub async fn send_burst(ws: &mut Sock, texts: impl IntoIterator<Item = String>) {
    for t in texts {
        ws.feed(Message::text(t)).await.expect("feed");
    }
    ws.flush().await.expect("flush");
}

/// The next data or close message; pings are answered by the library and skipped.
pub async fn next(ws: &mut Sock) -> Message {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a message")
            .expect("stream ended")
            .expect("read error");
        if !matches!(m, Message::Ping(_) | Message::Pong(_)) {
            return m;
        }
    }
}

/// The next text message.
pub async fn recv_text(ws: &mut Sock) -> String {
    match next(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads until the close frame and returns its code (1005 for none). Data read
/// before it is returned too.
pub async fn recv_until_close(ws: &mut Sock) -> (Vec<Message>, u16) {
    let mut before = Vec::new();
    loop {
        match next(ws).await {
            Message::Close(Some(f)) => return (before, u16::from(f.code)),
            Message::Close(None) => return (before, 1005),
            m => before.push(m),
        }
    }
}

/// The close code the server sends next, failing on any data before it.
pub async fn recv_close(ws: &mut Sock) -> u16 {
    let (before, code) = recv_until_close(ws).await;
    assert!(before.is_empty(), "data before the close: {before:?}");
    code
}

/// Reads until the connection ends (close, EOF, reset); fails after [`WAIT`].
pub async fn wait_end(ws: &mut Sock) {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("connection still open")
        {
            Some(Ok(_)) => continue,
            _ => return,
        }
    }
}

/// Ends the connection with a TCP reset (SO_LINGER 0, no close frame, no FIN).
pub fn reset(ws: Sock) {
    ws.get_ref().set_zero_linger().expect("SO_LINGER");
    drop(ws);
}

/// Writes raw bytes on the connection, bypassing the WebSocket encoder.
pub async fn write_raw(ws: &mut Sock, bytes: &[u8]) {
    ws.get_mut().write_all(bytes).await.expect("raw write");
}

/// A masked client frame (RFC 6455 §5.2) with the given first byte (FIN, RSV,
/// opcode), whatever it says: tungstenite's encoder writes it without checking
/// that the opcode exists or that a control frame is short enough.
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    use tungstenite::protocol::frame::{Frame, FrameHeader};
    let bit = |n: u8| first & (1 << n) != 0;
    let header = FrameHeader {
        is_final: bit(7),
        rsv1: bit(6),
        rsv2: bit(5),
        rsv3: bit(4),
        opcode: (first & 0x0f).into(),
        mask: Some([0x37, 0xfa, 0x21, 0x3d]),
    };
    let mut out = Vec::with_capacity(payload.len() + 14);
    Frame::from_payload(header, tungstenite::Bytes::copy_from_slice(payload))
        .format(&mut out)
        .expect("writing to a Vec cannot fail");
    out
}
