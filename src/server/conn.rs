//! One request per connection, read no further than that request.
//!
//! actix-http's HTTP/1 dispatcher reads whatever a peer sends: after the first
//! request it parses pipelined ones into a queue and answers them into its
//! write buffer even when the peer never reads (memory grows with every
//! request), and only a connection's *first* request head is bounded in time.
//! [`OneRequest`] sits between the socket and the dispatcher and lets the
//! dispatcher see exactly one request:
//!
//! - the client port: the request head, and nothing after it until the
//!   response begins. A `101` hands the connection over to the WebSocket
//!   (bytes the client sent early are delivered first); any other response
//!   ends the input, so the dispatcher closes the connection as soon as the
//!   response is written. No keep-alive, no pipelining, no request bodies.
//! - the admin port: the head and its `Content-Length` body (a chunked body
//!   up to the response), then nothing more; every byte must arrive within
//!   `request_timeout_ms` of the connection's start, or the read fails and the
//!   connection is dropped.
//!
//! The dispatcher itself bounds the head's size and, for the one request
//! there is, its time (`client_request_timeout`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{sleep, Sleep};

/// The connections open on one port, so that shutdown can wait for them to
/// end instead of polling (actix-server checks once a second).
#[derive(Debug, Clone, Default)]
pub struct Connections(Arc<ConnectionCount>);

#[derive(Debug, Default)]
struct ConnectionCount {
    open: AtomicUsize,
    idle: Notify,
}

impl Connections {
    /// How many are open.
    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    /// Resolves once no connection is open.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.0.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn track(&self) -> Tracked {
        self.0.open.fetch_add(1, Ordering::AcqRel);
        Tracked(self.clone())
    }
}

/// Counts one open connection until dropped.
#[derive(Debug)]
struct Tracked(Connections);

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0 .0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0 .0.idle.notify_waiters();
        }
    }
}

/// Which port a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Client traffic: upgrades and static files, no bodies.
    Client,
    /// The admin API: a body is read.
    Admin,
}

/// Longest request head scanned for `Content-Length` (the dispatcher refuses
/// longer heads anyway).
const MAX_SCAN: usize = 64 * 1024;

/// The interim response actix-http writes for `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Where the request stands, as far as reading is concerned.
#[derive(Debug)]
enum Input {
    /// Receiving the head; the bytes seen so far (admin: kept to find the
    /// body length; client: only the tail needed to find `\r\n\r\n`).
    Head(Vec<u8>),
    /// Admin: this many body bytes still to pass (`None`: chunked, until the
    /// response begins).
    Body(Option<u64>),
    /// The request is in; nothing more is read until the response begins.
    Held,
    /// A `101` was sent: the WebSocket's bytes flow through.
    Upgraded,
    /// The response began: the input is over.
    Ended,
}

/// A connection that carries one HTTP request (see the module header).
pub struct OneRequest<T> {
    io: T,
    port: Port,
    input: Input,
    /// Bytes read past the end of the request, delivered after a `101`.
    early: Vec<u8>,
    /// The first bytes of the response, until its status is known.
    status_line: Option<Vec<u8>>,
    /// Bytes of an interim `100 Continue` still to be written.
    interim_left: usize,
    /// The reader waiting while the input is held.
    reader: Option<Waker>,
    /// Admin: the whole request must be in by then.
    deadline: Option<Pin<Box<Sleep>>>,
    _open: Tracked,
}

impl<T> OneRequest<T> {
    /// Wraps a freshly accepted connection, counted in `open` until dropped;
    /// `request_timeout` bounds the admin port's request (zero: no bound).
    pub fn new(io: T, port: Port, request_timeout: Duration, open: &Connections) -> Self {
        Self {
            _open: open.track(),
            io,
            port,
            input: Input::Head(Vec::new()),
            early: Vec::new(),
            status_line: Some(Vec::with_capacity(12)),
            interim_left: 0,
            reader: None,
            deadline: (port == Port::Admin && !request_timeout.is_zero())
                .then(|| Box::pin(sleep(request_timeout))),
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Called with each chunk the response writes until its status is known.
    fn saw_response(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let Some(line) = self.status_line.as_mut() else {
                return;
            };
            if self.interim_left > 0 {
                // The rest of a `100 Continue`: the real response follows.
                let n = self.interim_left.min(bytes.len());
                self.interim_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = bytes.len().min(12 - line.len());
            line.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if line.len() < 12 {
                return;
            }
            let status = [line[9], line[10], line[11]];
            if status == *b"100" {
                line.clear();
                self.interim_left = CONTINUE.len() - 12;
            } else {
                return self.response_began(status == *b"101");
            }
        }
    }

    fn response_began(&mut self, upgraded: bool) {
        self.status_line = None;
        self.input = if upgraded && self.port == Port::Client {
            Input::Upgraded
        } else {
            self.early = Vec::new();
            Input::Ended
        };
        self.deadline = None;
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Accounts for `new` bytes just read in the `Head`/`Body` states;
    /// returns how many of them belong to the request.
    fn take_request_bytes(&mut self, new: &[u8]) -> usize {
        let mut used = 0;
        while used < new.len() {
            match &mut self.input {
                Input::Head(seen) => {
                    let start = seen.len();
                    let rest = &new[used..];
                    seen.extend_from_slice(rest);
                    // The terminator may straddle reads: look from 3 bytes back.
                    let from = start.saturating_sub(3);
                    match find(&seen[from..], b"\r\n\r\n") {
                        Some(at) => {
                            let end = from + at + 4;
                            used += end - start;
                            let head = std::mem::take(seen);
                            self.input = match self.port {
                                Port::Client => Input::Held,
                                Port::Admin => body_after(&head[..end]),
                            };
                        }
                        None => {
                            used = new.len();
                            if self.port == Port::Client || seen.len() > MAX_SCAN {
                                // Only the tail is needed to find the end.
                                let keep = seen.len().min(3);
                                seen.drain(..seen.len() - keep);
                            }
                        }
                    }
                }
                Input::Body(Some(0)) => self.input = Input::Held,
                Input::Body(Some(left)) => {
                    let n = (*left).min((new.len() - used) as u64);
                    *left -= n;
                    used += n as usize;
                }
                Input::Body(None) | Input::Upgraded => return new.len(),
                Input::Held | Input::Ended => break,
            }
        }
        if matches!(self.input, Input::Body(Some(0))) {
            self.input = Input::Held;
        }
        used
    }
}

/// What follows an admin request head: its body by `Content-Length`, a
/// chunked body, or nothing.
fn body_after(head: &[u8]) -> Input {
    let text = String::from_utf8_lossy(head);
    let mut length = None;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Input::Body(None);
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<u64>().ok();
        }
    }
    match length {
        Some(n) if n > 0 => Input::Body(Some(n)),
        _ => Input::Held,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl<T: AsyncRead + Unpin> AsyncRead for OneRequest<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.input {
            Input::Ended => return Poll::Ready(Ok(())),
            Input::Held => {
                this.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Input::Upgraded if !this.early.is_empty() => {
                let n = this.early.len().min(buf.remaining());
                buf.put_slice(&this.early[..n]);
                this.early.drain(..n);
                if this.early.is_empty() {
                    this.early = Vec::new();
                }
                return Poll::Ready(Ok(()));
            }
            Input::Upgraded => return Pin::new(&mut this.io).poll_read(cx, buf),
            Input::Head(_) | Input::Body(_) => {}
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request not received within limits.request_timeout_ms",
                        )));
                    }
                }
                return Poll::Pending;
            }
            err => return err,
        }
        let new = buf.filled()[before..].to_vec();
        let used = this.take_request_bytes(&new);
        if used < new.len() {
            // Past the request: kept for a WebSocket, dropped otherwise.
            if this.port == Port::Client {
                this.early.extend_from_slice(&new[used..]);
            }
            buf.set_filled(before + used);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for OneRequest<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = res {
            this.saw_response(&data[..n]);
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(port: Port) -> (OneRequest<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let open = Connections::default();
        let c = OneRequest::new(a, port, Duration::from_millis(200), &open);
        assert_eq!(open.open(), 1);
        (c, b)
    }

    async fn read_now(c: &mut OneRequest<tokio::io::DuplexStream>) -> Option<Vec<u8>> {
        let mut buf = vec![0; 4096];
        match tokio::time::timeout(Duration::from_millis(50), c.read(&mut buf)).await {
            Ok(Ok(n)) => Some(buf[..n].to_vec()),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn the_client_port_sees_one_head_then_the_websocket_or_the_end() {
        let (mut c, mut peer) = pair(Port::Client).await;
        peer.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            read_now(&mut c).await.unwrap(),
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        assert_eq!(read_now(&mut c).await, None, "a pipelined request was read");
        c.write_all(b"HTTP/1.1 404 Not Found\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_now(&mut c).await.unwrap(), b"", "input not ended");

        let (mut c, mut peer) = pair(Port::Client).await;
        // A head split in the middle of its terminator, and an early frame.
        peer.write_all(b"GET /ws HTTP/1.1\r\n\r").await.unwrap();
        assert_eq!(read_now(&mut c).await.unwrap(), b"GET /ws HTTP/1.1\r\n\r");
        peer.write_all(b"\nFRAME").await.unwrap();
        assert_eq!(read_now(&mut c).await.unwrap(), b"\n");
        assert_eq!(read_now(&mut c).await, None);
        c.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_now(&mut c).await.unwrap(), b"FRAME");
        peer.write_all(b"MORE").await.unwrap();
        assert_eq!(read_now(&mut c).await.unwrap(), b"MORE");
    }

    #[tokio::test]
    async fn connections_are_counted_until_dropped() {
        let open = Connections::default();
        open.all_closed().await;
        let (a, _b) = tokio::io::duplex(64);
        let c = OneRequest::new(a, Port::Client, Duration::ZERO, &open);
        assert_eq!(open.open(), 1);
        let waiter = tokio::spawn({
            let open = open.clone();
            async move { open.all_closed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(c);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
    }

    #[tokio::test]
    async fn the_admin_port_reads_the_body_then_nothing() {
        let (mut c, mut peer) = pair(Port::Admin).await;
        peer.write_all(b"POST /p HTTP/1.1\r\ncontent-length: 4\r\n\r\nbodyGET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let got = read_now(&mut c).await.unwrap();
        assert!(got.ends_with(b"\r\n\r\nbody"), "{got:?}");
        assert_eq!(read_now(&mut c).await, None);
        c.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert_eq!(read_now(&mut c).await.unwrap(), b"");
        // `Expect: 100-continue`: the interim answer does not end the input.
        let (mut c, mut peer) = pair(Port::Admin).await;
        peer.write_all(b"POST /p HTTP/1.1\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
            .await
            .unwrap();
        assert!(read_now(&mut c).await.is_some());
        c.write_all(CONTINUE).await.unwrap();
        peer.write_all(b"body").await.unwrap();
        assert_eq!(read_now(&mut c).await.unwrap(), b"body");
        c.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert_eq!(read_now(&mut c).await.unwrap(), b"");
        // A 101 on the admin port hands nothing over.
        let (mut c, _peer) = pair(Port::Admin).await;
        c.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_now(&mut c).await.unwrap(), b"");
    }

    #[tokio::test]
    async fn an_admin_body_must_arrive_within_the_request_timeout() {
        let (mut c, mut peer) = pair(Port::Admin).await;
        peer.write_all(b"POST /p HTTP/1.1\r\ncontent-length: 10\r\n\r\nab")
            .await
            .unwrap();
        let mut buf = vec![0; 4096];
        let n = c.read(&mut buf).await.unwrap();
        assert!(buf[..n].ends_with(b"ab"));
        let err = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
            .await
            .expect("deadline not applied")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
