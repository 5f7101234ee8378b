//! An established outbound WebSocket connection and its single event loop:
//! outgoing items are written, incoming frames handed to a callback, pings
//! answered, heartbeat pings sent, and the close handshake completed. One loop
//! owns the socket, so nothing is lost to a cancelled write.

use std::time::Duration;

use actix_codec::Framed;
use actix_http::ws::{CloseCode as WsCloseCode, CloseReason, Codec, Frame as WsFrame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::time::{interval_at, sleep_until, Instant};
use wsplus_actors::protocol::Frame;
use wsplus_actors::session::Reassembler;
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
    framed: Framed<BoxedSocket, Codec>,
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
        Self {
            framed,
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
                        Some(Err(e)) => return Err(ClientError::Protocol(e.to_string())),
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
