//! One bridge's upstream connection: dial, run the link, and on any end other
//! than a stop, wait a backoff delay and dial again.
//!
//! While connected, frames received upstream go (encoded for the `into`
//! listener, stamped as the bridge in message mode) to the bounded `into`
//! queue, and messages from the bounded upstream queue (filled by the `from`
//! membership) are written upstream. A connection that stayed up for
//! `reconnect_max_s` counts as healthy and resets the backoff. On stop, the
//! link is closed with 1001.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use wsplus_actors::protocol::{encode, Frame};
use wsplus_actors::Delivery;

use super::backoff::Backoff;
use super::echo::{EchoFilter, SharedFilter};
use super::local::stopped;
use super::state::{BridgeState, Counter};
use crate::client::{ClientError, Closed, Dialer, Link, Outgoing};
use crate::settings::Mode;

/// Where received frames go.
pub struct IntoEnd {
    /// The `into` listener's mode (decides the encoding).
    pub mode: Mode,
    /// The bridge's `_session` stamp.
    pub stamp: Value,
    /// The bounded queue [`super::local::publish_into`] drains.
    pub queue: mpsc::Sender<Delivery>,
}

/// Everything one bridge's connection loop needs.
pub struct Runner {
    /// The bridge's name (logs).
    pub name: String,
    /// Dials the upstream.
    pub dialer: Dialer,
    /// The bridge's live state.
    pub state: Arc<BridgeState>,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// A connection up this long resets the backoff.
    pub healthy_after: Duration,
    /// Where frames received upstream go; `None` for a `from`-only bridge.
    pub into: Option<IntoEnd>,
    /// Messages waiting to go upstream.
    pub upstream: mpsc::Receiver<Delivery>,
    /// Set when `into` and `from` are the same tenant: the no-echo rule.
    pub echo: Option<EchoFilter>,
    /// Set in a cluster when `into` and `from` are the same tenant: frames
    /// published locally, so the `from` member can recognise a copy of one
    /// that another node's bridge of the same name published.
    pub came_down: Option<SharedFilter>,
    /// Becomes true when the bridge must stop.
    pub stop: watch::Receiver<bool>,
}

impl Runner {
    /// Connects, reconnects, until stopped.
    pub async fn run(self) {
        let Runner {
            name,
            dialer,
            state,
            mut backoff,
            healthy_after,
            into,
            mut upstream,
            echo,
            came_down,
            mut stop,
        } = self;
        let echo = echo.map(RefCell::new);
        let mut first = true;
        loop {
            if !first {
                state.bump(Counter::Reconnects);
            }
            first = false;
            let link = tokio::select! {
                l = dialer.connect() => l,
                () = stopped(&mut stop) => break,
            };
            let ended = match link {
                Err(e) => LinkEnded::from(e),
                Ok(link) => {
                    log::info!("bridge={name} connected url={}", dialer.shown_url());
                    state.set_connected(true);
                    let up = Instant::now();
                    if let Some(f) = &echo {
                        f.borrow_mut().clear();
                    }
                    let session = Session {
                        state: &state,
                        into: into.as_ref(),
                        echo: echo.as_ref(),
                        came_down: came_down.as_ref(),
                    };
                    let result = session.run(link, &mut upstream, stop.clone()).await;
                    state.set_connected(false);
                    if *stop.borrow() {
                        break;
                    }
                    if up.elapsed() >= healthy_after {
                        backoff.reset();
                    }
                    match result {
                        Ok(closed) => LinkEnded::Closed {
                            code: closed.code.unwrap_or(1005),
                            reason: closed.reason,
                        },
                        Err(e) => LinkEnded::from(e),
                    }
                }
            };
            log::warn!("bridge={name} {ended}");
            state.set_error(ended.to_string());
            let delay = backoff.next_delay();
            log::debug!("bridge={name} reconnecting in {}ms", delay.as_millis());
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stopped(&mut stop) => break,
            }
        }
        state.set_connected(false);
        log::info!("bridge={name} stopped");
    }
}

/// Why a bridge's connection attempt or connection ended (its `last_error`).
/// Never holds a secret: client errors show redacted URLs only.
#[derive(Debug, thiserror::Error)]
pub enum LinkEnded {
    /// Dialling, the handshake, or the running connection failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The upstream completed a close handshake.
    #[error("closed by upstream with code {code}{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Closed {
        /// The close code (1005 when the frame had none).
        code: u16,
        /// The close reason.
        reason: String,
    },
}

/// One connection's frame handling.
struct Session<'a> {
    state: &'a BridgeState,
    into: Option<&'a IntoEnd>,
    echo: Option<&'a RefCell<EchoFilter>>,
    came_down: Option<&'a SharedFilter>,
}

impl Session<'_> {
    async fn run(
        &self,
        link: Link,
        upstream: &mut mpsc::Receiver<Delivery>,
        stop: watch::Receiver<bool>,
    ) -> Result<Closed, ClientError> {
        let close_on_stop = stream::once(async move {
            let mut stop = stop;
            stopped(&mut stop).await;
            Outgoing::Close(1001)
        })
        .boxed_local();
        let outgoing = stream::poll_fn(|cx| upstream.poll_recv(cx)).map(|d| {
            if let Some(f) = self.echo {
                f.borrow_mut().remember(&d);
            }
            self.state.bump(Counter::MessagesOut);
            Outgoing::Frame(d)
        });
        let outgoing = stream::select(close_on_stop, outgoing);
        link.run(outgoing, |frame| self.received(frame)).await
    }

    /// A frame from upstream: dropped when it is our own echo, else queued for
    /// the local tenant.
    fn received(&self, frame: Frame) {
        let Some(into) = self.into else {
            return;
        };
        if let Some(f) = self.echo {
            if f.borrow_mut().take(&frame) {
                self.state.bump(Counter::Echoes);
                return;
            }
        }
        if let Some(f) = self.came_down {
            f.borrow_mut().remember(&frame);
        }
        let delivery = encode(into.mode, frame, &into.stamp);
        match into.queue.try_send(delivery) {
            Ok(()) => self.state.bump(Counter::MessagesIn),
            Err(_) => self.state.bump(Counter::Dropped),
        }
    }
}
