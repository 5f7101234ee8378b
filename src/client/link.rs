//! An established outbound WebSocket connection and its single event loop:
//! outgoing items are written, incoming frames handed to a callback, pings
//! answered, heartbeat pings sent, and the close handshake completed. One loop
//! owns the socket, so nothing is lost to a cancelled write.
//!
//! The upstream is no more trusted than a client: its bytes pass through the
//! same [`FrameSizeGuard`] as a session's, so a frame declaring more than
//! `max_message_bytes` (close 1009) or a control frame declaring more than
//! 125 bytes (close 1002) is refused at its header, never buffered.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_codec::{Framed, FramedParts};
use actix_http::ws::{CloseCode as WsCloseCode, CloseReason, Codec, Frame as WsFrame, Message};
use awc::BoxedSocket;
use bytes::{Buf, Bytes};
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{interval_at, sleep_until, Instant};
use wsplus_actors::protocol::Frame;
use wsplus_actors::session::{close_code_for, FrameSizeGuard, Reassembler};
use wsplus_actors::Delivery;

use super::ClientError;

/// How long to wait for the peer's close frame after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Something to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A text or binary frame.
    Frame(Delivery),
    /// Start the close handshake with this code, then end.
    Close(u16),
}

/// How a connection ended after a close handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The peer's close code (`None`: close frame without a code).
    pub code: Option<u16>,
    /// The peer's reason text.
    pub reason: String,
}

impl Closed {
    /// 1000, 1001 or no code: a normal end.
    pub fn is_normal(&self) -> bool {
        matches!(self.code, None | Some(1000) | Some(1001))
    }
}

/// An upgraded connection.
pub struct Link {
    framed: Framed<Guarded, Codec>,
    heartbeat: Option<Duration>,
    max_message_bytes: usize,
    protocol: Option<String>,
}

impl Link {
    pub(super) fn new(
        framed: Framed<BoxedSocket, Codec>,
        heartbeat: Option<Duration>,
        max_message_bytes: usize,
        protocol: Option<String>,
    ) -> Self {
        let parts = framed.into_parts();
        let mut guard = FrameSizeGuard::new(max_message_bytes);
        // Bytes read with the handshake's answer are frames too: filtered and
        // handed over by the first read (Framed reads before decoding what a
        // fresh read buffer holds).
        let early = guard.filter(&parts.read_buf);
        let mut guarded = FramedParts::new(
            Guarded {
                io: parts.io,
                guard,
                pending: early,
            },
            parts.codec,
        );
        guarded.write_buf = parts.write_buf;
        Self {
            framed: Framed::from_parts(guarded),
            heartbeat,
            max_message_bytes,
            protocol,
        }
    }

    /// The subprotocol the server agreed to, if one was requested.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// Runs the connection until it ends. `outgoing` ending counts as
    /// `Outgoing::Close(1000)`. Returns the peer's close on a completed close
    /// handshake; any other end is an error.
    pub async fn run<S, F>(
        mut self,
        mut outgoing: S,
        mut on_frame: F,
    ) -> Result<Closed, ClientError>
    where
        S: Stream<Item = Outgoing> + Unpin,
        F: FnMut(Frame),
    {
        let far_future = Instant::now() + Duration::from_secs(86400 * 365);
        let mut ticker = self
            .heartbeat
            .map(|every| interval_at(Instant::now() + every, every));
        let mut last_heard = Instant::now();
        let mut fragments = Reassembler::default();
        let mut close_deadline: Option<Instant> = None;
        loop {
            let tick = async {
                match ticker.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                incoming = self.framed.next() => {
                    let frame = match incoming {
                        Some(Ok(f)) => f,
                        Some(Err(e)) => {
                            // 1009 for a frame over the limit, 1002 for an
                            // oversized control frame or another protocol error.
                            self.send_close(close_code_for(&e).code()).await;
                            return Err(ClientError::Protocol(e.to_string()));
                        }
                        None => return Err(ClientError::ConnectionLost),
                    };
                    last_heard = Instant::now();
                    match frame {
                        WsFrame::Text(b) => match bytestring::ByteString::try_from(b) {
                            Ok(s) => on_frame(Frame::Text(s)),
                            Err(_) => {
                                self.send_close(1007).await;
                                return Err(ClientError::Protocol("text frame is not UTF-8".into()));
                            }
                        },
                        WsFrame::Binary(b) => on_frame(Frame::Binary(b)),
                        WsFrame::Continuation(item) => {
                            match fragments.push(item, self.max_message_bytes) {
                                Ok(Some(f)) => on_frame(f),
                                Ok(None) => {}
                                Err(code) => {
                                    self.send_close(code.code()).await;
                                    return Err(ClientError::Protocol(format!(
                                        "bad fragmented message (close {})", code.code()
                                    )));
                                }
                            }
                        }
                        WsFrame::Ping(p) => self.send(Message::Pong(p)).await?,
                        WsFrame::Pong(_) => {}
                        WsFrame::Close(reason) => {
                            if close_deadline.is_none() {
                                // Echo the peer's close to complete the handshake.
                                let _ = self.framed.send(Message::Close(reason.clone())).await;
                            }
                            return Ok(Closed {
                                code: reason.as_ref().map(|r| u16::from(r.code)),
                                reason: reason.and_then(|r| r.description).unwrap_or_default(),
                            });
                        }
                    }
                }
                item = outgoing.next(), if close_deadline.is_none() => {
                    match item.unwrap_or(Outgoing::Close(1000)) {
                        Outgoing::Frame(Delivery::Text(s)) => self.send(Message::Text(s)).await?,
                        Outgoing::Frame(Delivery::Binary(b)) => self.send(Message::Binary(b)).await?,
                        Outgoing::Close(code) => {
                            self.send_close(code).await;
                            close_deadline = Some(Instant::now() + CLOSE_WAIT);
                        }
                    }
                }
                () = tick => {
                    let every = self.heartbeat.unwrap_or_default();
                    if last_heard.elapsed() >= every * 2 {
                        return Err(ClientError::HeartbeatTimeout(every));
                    }
                    self.send(Message::Ping(bytes::Bytes::new())).await?;
                }
                () = sleep_until(close_deadline.unwrap_or(far_future)), if close_deadline.is_some() => {
                    return Err(ClientError::CloseTimeout);
                }
            }
        }
    }

    async fn send(&mut self, msg: Message) -> Result<(), ClientError> {
        self.framed
            .send(msg)
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    async fn send_close(&mut self, code: u16) {
        let reason = CloseReason {
            code: WsCloseCode::from(code),
            description: None,
        };
        let _ = self.framed.send(Message::Close(Some(reason))).await;
    }
}

/// The upstream socket seen through a [`FrameSizeGuard`].
pub struct Guarded {
    io: BoxedSocket,
    guard: FrameSizeGuard,
    /// Filtered bytes not yet handed to the reader (a refusing header can be
    /// longer than the bytes it replaces).
    pending: Bytes,
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            if this.guard.tripped() {
                // The refusing header is out: the codec fails on it.
                return Poll::Ready(Ok(()));
            }
            let mut raw = vec![0u8; buf.remaining().max(1)];
            let mut raw_buf = ReadBuf::new(&mut raw);
            std::task::ready!(Pin::new(&mut this.io).poll_read(cx, &mut raw_buf))?;
            if raw_buf.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.pending = this.guard.filter(raw_buf.filled());
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
