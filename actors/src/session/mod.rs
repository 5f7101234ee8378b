//! Session: one actor per WebSocket connection.
//!
//! Holds the verified identity, the listener's policy, a heartbeat and the rate
//! limiter. Parses inbound frames, stamps `_session`, hands messages to its
//! route; drains its bounded outbox to the socket. Every use of actix-web-actors'
//! `WebsocketContext` stays in this module, so a move to another WebSocket
//! implementation changes one place.

mod channels;
mod frames;
mod hooks;
mod inbound;
mod ordered;
mod publish;
mod size_guard;
mod stage;
mod staged;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_http::error::PayloadError;
use actix_http::ws::{CloseReason, Codec, Message, ProtocolError};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, WebsocketContext};

use crate::broker::{Broker, Route, SessionClosed};
use crate::close::CloseCode;
use crate::counters::{Counters, DropReason, SessionStats};
use crate::delivery::Delivery;
use crate::gate::{Gate, GatedStream};
use crate::ids::Mode;
use crate::info::SessionInfo;
use crate::outbox::{Control, OutboxReceiver};
use crate::policy::{ListenerPolicy, OnRateLimit};
use crate::protocol::{self, Frame};
use crate::rate::TokenBucket;
use bytes::Bytes;
use stage::{Stage, Staging};

/// The close code of a connection that ended without a close frame (RFC 6455).
const CLOSE_ABNORMAL: u16 = 1006;
/// The close code of a close frame without a status (RFC 6455).
const CLOSE_NO_STATUS: u16 = 1005;

pub use channels::ChannelsParts;
pub use frames::{close_code_for, Reassembler};
pub use hooks::{HookAnswer, HookCall, SessionHooks};
pub use inbound::Inbound;
pub use size_guard::FrameSizeGuard;

/// Tells the Broker a session is gone when dropped. Created by the upgrade
/// handler *before* it sends `Join`, then owned by the Session: whichever way the
/// handshake or the connection ends (client gone while the join was in flight,
/// before the 101 was written, or any close later), the Broker hears of it once.
#[derive(Debug)]
pub struct LeaveGuard {
    broker: Addr<Broker>,
    info: Arc<SessionInfo>,
    armed: bool,
}

impl LeaveGuard {
    /// A guard for the session `info`, reporting to `broker`.
    pub fn new(broker: Addr<Broker>, info: Arc<SessionInfo>) -> Self {
        Self {
            broker,
            info,
            armed: true,
        }
    }

    /// The session's identity.
    pub fn info(&self) -> &Arc<SessionInfo> {
        &self.info
    }

    /// Drops without telling the Broker: for a join the Broker refused, whose id
    /// it never registered for this session.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for LeaveGuard {
    fn drop(&mut self) {
        if self.armed {
            self.broker.do_send(SessionClosed {
                id: self.info.id.clone(),
            });
        }
    }
}

/// What a Session needs, gathered by the server at the upgrade.
#[derive(Debug)]
pub struct SessionParts {
    /// Verified identity, inside the guard that reports the session's end.
    pub guard: LeaveGuard,
    /// The listener's enforced settings.
    pub policy: Arc<ListenerPolicy>,
    /// Where messages go (from the Broker's `Joined`).
    pub route: Route,
    /// Process counters.
    pub counters: Arc<Counters>,
    /// This session's counters (shared with the Broker's registry).
    pub stats: Arc<SessionStats>,
    /// The receiving half of the outbox registered with the Broker.
    pub outbox: OutboxReceiver,
    /// The listener's backend hooks, when it has any.
    pub hooks: Option<Arc<dyn SessionHooks>>,
    /// Channels mode only: the session's hub, permissions and verifier.
    pub channels: Option<ChannelsParts>,
}

/// The per-connection actor.
pub struct Session {
    /// The `_session` object (message mode only; `Null` in payload mode, where
    /// it is never used: about 0.8 KiB per connection saved).
    stamp: serde_json::Value,
    policy: Arc<ListenerPolicy>,
    route: Route,
    counters: Arc<Counters>,
    stats: Arc<SessionStats>,
    outbox: Option<OutboxReceiver>,
    last_seen: Instant,
    bucket: Option<TokenBucket>,
    fragments: Reassembler,
    closing: bool,
    guard: LeaveGuard,
    hooks: Option<Arc<dyn SessionHooks>>,
    /// Messages with the `message` hook, answers applied in the order the
    /// messages came (present when the listener has that hook; `stage.rs`).
    messages: Option<Stage<HookAnswer>>,
    /// The close code the session ends with, for [`SessionHooks::closed`].
    close_code: u16,
    /// Closed while messages wait for the room or router (`publish.rs`).
    held: Gate,
    /// Messages the room or router could not take yet, oldest first.
    waiting: VecDeque<Delivery>,
    /// Channels mode only (`channels.rs`).
    channels: Option<channels::ChannelsSession>,
    /// The socket's messages, from [`Session::start`] until the actor starts.
    inbound: Option<GatedStream<Inbound<web::Payload>>>,
}

impl Session {
    /// Builds the actor; it runs once [`Session::start`] hands it its socket.
    pub fn new(parts: SessionParts) -> Self {
        let bucket = (parts.policy.rate_limit_per_s > 0)
            .then(|| TokenBucket::new(parts.policy.rate_limit_per_s));
        let channels = parts
            .channels
            .map(|c| channels::ChannelsSession::new(c, &parts.guard.info));
        Self {
            stamp: match parts.policy.mode {
                Mode::Message | Mode::Channels => parts.guard.info.stamp(),
                Mode::Payload => serde_json::Value::Null,
            },
            policy: parts.policy,
            route: parts.route,
            counters: parts.counters,
            stats: parts.stats,
            outbox: Some(parts.outbox),
            last_seen: Instant::now(),
            bucket,
            fragments: Reassembler::default(),
            closing: false,
            guard: parts.guard,
            messages: parts
                .hooks
                .as_ref()
                .and_then(|h| h.message_depth())
                .map(Stage::new),
            hooks: parts.hooks,
            close_code: CLOSE_ABNORMAL,
            held: Gate::new(),
            waiting: VecDeque::new(),
            channels,
            inbound: None,
        }
    }

    /// Completes the WebSocket handshake (101) and starts the actor on the
    /// current worker. Its messages come from an [`Inbound`] decoder rather
    /// than actix-web-actors' own (which is given a stream that never yields):
    /// it reads no further than the frame in progress, refuses a frame
    /// declaring more than `max_message_bytes` (1009) at its header, before
    /// its payload is buffered (see [`FrameSizeGuard`]), and lets go of its
    /// buffer once a large message has been decoded.
    pub fn start(
        mut self,
        req: &HttpRequest,
        payload: web::Payload,
    ) -> Result<HttpResponse, actix_web::Error> {
        let max = self.policy.max_message_bytes;
        // Not decoded (nor read) while this session's messages wait, or its
        // room (its router: global scope) holds publishers back (a member's
        // queue is full), or its hook calls are at their depth: the gates
        // stand above the decoder, so what was read stays bytes.
        let mut gates = vec![&self.held];
        if let Route::Room { gate, .. } | Route::Global { gate, .. } = &self.route {
            gates.push(gate);
        }
        if let Some(m) = &self.messages {
            gates.push(m.gate());
        }
        if let Some(c) = &self.channels {
            gates.push(&c.hub_gate);
            gates.push(c.stage.gate());
        }
        self.inbound = Some(GatedStream::new(Inbound::new(payload, max), &gates));
        let channels = self.channels.is_some();
        let unused = futures_util::stream::pending::<Result<Bytes, PayloadError>>();
        let builder =
            ws::WsResponseBuilder::new(self, req, unused).codec(Codec::new().max_size(max));
        // Selected when the client offers it; a client that offers nothing
        // gets no Sec-WebSocket-Protocol.
        let builder = if channels {
            builder.protocols(&[crate::channels::PROTOCOL])
        } else {
            builder
        };
        builder.start()
    }

    fn info(&self) -> &SessionInfo {
        &self.guard.info
    }

    fn close_with(&mut self, ctx: &mut WebsocketContext<Self>, code: CloseCode) {
        if self.closing {
            return;
        }
        self.closing = true;
        log::debug!(
            "closing session tenant={} session={} code={}",
            self.info().tenant,
            self.info().id,
            code.code()
        );
        self.counters.add_close(code);
        self.close_code = code.code();
        ctx.close(Some(CloseReason {
            code: ws::CloseCode::from(code.code()),
            description: Some(code.reason().to_owned()),
        }));
        ctx.stop();
    }

    fn on_message(&mut self, frame: Frame, ctx: &mut WebsocketContext<Self>) {
        if self.policy.mode == Mode::Channels {
            // Never routed like a message, even without channel state (which
            // the Broker gives every session of a channels listener).
            if self.channels.is_some() {
                self.on_channels_frame(frame, ctx);
            }
            return;
        }
        if let Some(bucket) = self.bucket.as_mut() {
            if !bucket.try_take() {
                match self.policy.on_rate_limit {
                    OnRateLimit::Drop => self.counters.add_dropped(DropReason::RateLimit),
                    OnRateLimit::Close => {
                        self.counters.add_dropped(DropReason::RateLimit);
                        self.close_with(ctx, CloseCode::RateLimited);
                    }
                }
                return;
            }
        }
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        self.counters.listener(self.policy.id).messages_in.add(1);
        if let (Some(_), Some(hooks)) = (&self.messages, &self.hooks) {
            let call = hooks.message(&self.guard.info, frame);
            return self.stage_call(call, ctx);
        }
        let delivery = protocol::encode(self.policy.mode, frame, &self.stamp);
        self.route(delivery, ctx);
    }

    /// Sends `delivery` where the listener's scope says, from this session.
    fn route(&mut self, delivery: Delivery, ctx: &mut WebsocketContext<Self>) {
        match &self.route {
            Route::Own => {
                self.counters.listener(self.policy.id).deliveries.add(1);
                self.write(delivery, ctx);
            }
            Route::Room { .. } | Route::Global { .. } => self.publish(delivery, ctx),
        }
    }

    fn write(&mut self, delivery: Delivery, ctx: &mut WebsocketContext<Self>) {
        match delivery {
            Delivery::Text(s) => ctx.text(s),
            Delivery::Binary(b) => ctx.binary(b),
        }
        self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
        self.counters.add_messages_out(1);
    }
}

impl Actor for Session {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.channels.is_some() {
            // Before anything queued: `connected` is always the first message.
            self.channels_started(ctx);
        }
        if let Some(inbound) = self.inbound.take() {
            ctx.add_stream(inbound);
        }
        if let Some(outbox) = self.outbox.take() {
            ctx.add_stream(outbox.data);
            ctx.add_stream(outbox.control);
        }
        if let Some(every) = self.policy.heartbeat {
            ctx.run_interval(every, move |act, ctx| {
                if act.last_seen.elapsed() > every * 2 {
                    log::info!(
                        "heartbeat missed, dropping tenant={} session={}",
                        act.info().tenant,
                        act.info().id
                    );
                    act.counters.add_heartbeat_timeout();
                    ctx.stop();
                } else {
                    ctx.ping(b"");
                }
            });
        }
        if let Some(hooks) = &self.hooks {
            hooks.opened(&self.guard.info);
        }
        log::debug!(
            "session started tenant={} session={}",
            self.info().tenant,
            self.info().id
        );
    }
    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Some(hooks) = &self.hooks {
            hooks.closed(&self.guard.info, self.close_code);
        }
    }
}

/// The `message` hook's answers: the reply to the sender, then the
/// publication to the scope.
impl Staging<HookAnswer> for Session {
    fn stage_of(&mut self) -> &mut Stage<HookAnswer> {
        self.messages
            .as_mut()
            .expect("the message stage exists when the message hook is on")
    }

    fn apply(&mut self, answer: HookAnswer, ctx: &mut WebsocketContext<Session>) {
        if let Some(reply) = answer.reply {
            self.write(reply, ctx);
        }
        if let Some(publish) = answer.publish {
            self.route(publish, ctx);
        }
    }
}

impl StreamHandler<Delivery> for Session {
    fn handle(&mut self, delivery: Delivery, ctx: &mut Self::Context) {
        if !self.closing {
            self.write(delivery, ctx);
        }
    }

    /// The Broker or room dropped its sender: nothing to do, the session lives
    /// on until its socket or a control command ends it.
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl StreamHandler<Control> for Session {
    fn handle(&mut self, control: Control, ctx: &mut Self::Context) {
        match control {
            Control::Close(code) => self.close_with(ctx, code),
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl StreamHandler<Result<Message, ProtocolError>> for Session {
    fn handle(&mut self, msg: Result<Message, ProtocolError>, ctx: &mut Self::Context) {
        if self.closing {
            return;
        }
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                log::debug!(
                    "protocol error tenant={} session={} error={}",
                    self.info().tenant,
                    self.info().id,
                    e
                );
                let code = close_code_for(&e);
                return self.close_with(ctx, code);
            }
        };
        self.last_seen = Instant::now();
        match msg {
            Message::Text(s) if !self.fragments.in_progress() => {
                self.on_message(Frame::Text(s), ctx)
            }
            Message::Binary(b) if !self.fragments.in_progress() => {
                self.on_message(Frame::Binary(b), ctx)
            }
            Message::Text(_) | Message::Binary(_) => self.close_with(ctx, CloseCode::ProtocolError),
            Message::Continuation(item) => {
                match self.fragments.push(item, self.policy.max_message_bytes) {
                    Ok(Some(frame)) => self.on_message(frame, ctx),
                    Ok(None) => {}
                    Err(code) => self.close_with(ctx, code),
                }
            }
            Message::Ping(p) => ctx.pong(&p),
            Message::Pong(_) | Message::Nop => {}
            Message::Close(reason) => {
                self.close_code = reason.as_ref().map_or(CLOSE_NO_STATUS, |r| r.code.into());
                self.closing = true;
                ctx.close(reason);
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
