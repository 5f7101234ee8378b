//! A Session on a channels-mode listener: the `wsplus.v1` side of the actor.
//!
//! Each text frame is split into command lines ([`codec::lines`]); every line
//! is answered — `bad_request` for a malformed one, the connection stays open.
//! Checks run in the order `bad_request` (parsing), `forbidden` (here, against
//! the token's permissions), `limit_exceeded` (in the channel hub, which owns
//! the subscription table). The replies this session produces itself are
//! batched into one frame per inbound frame and go through the session's own
//! bounded outbox like every delivery, so a client that does not read its
//! replies is a slow consumer like any other, and a batch of bad lines costs
//! one queued frame, not one per line.
//!
//! Operations on channels go to the session's hub in order; one the hub cannot
//! take now waits here (the session's gate closes, its socket is not read)
//! exactly like a publication waiting for its room. Commands the backend
//! decides (channel hooks, `rpc`) wait for it in the hook stage first, in
//! command order (`staged.rs`).
//!
//! Refresh: the new token is verified by the injected [`TokenVerifier`] off
//! the actor (the session keeps running); on success the permissions are
//! replaced, the hub re-checks the client subscriptions, the Broker moves the
//! session's 4001 deadline, and the `expiring` timer is set again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use actix_web_actors::ws::WebsocketContext;
use bytestring::ByteString;

use crate::broker::TokenRefreshed;
use crate::channels::codec::{self, Command, ConnectedSession, Request};
use crate::channels::counters::RefreshResult;
use crate::channels::hooks::ChannelHooks;
use crate::channels::hub::{ChannelHub, HubRoute};
use crate::channels::refresh::{self, TokenVerifier, VerifiedToken};
use crate::channels::space::{ChannelOp, ServerSubscribe};
use crate::channels::{
    Access, ChannelError, ChannelName, ChannelsPolicy, CommandId, ErrorCode, Grants,
};
use crate::close::CloseCode;
use crate::counters::DropReason;
use crate::delivery::Delivery;
use crate::gate::Gate;
use crate::ids::SessionId;
use crate::info::SessionInfo;
use crate::outbox::{Outbox, PushError};
use crate::policy::OnRateLimit;
use crate::protocol::Frame;

use super::stage::Stage;
use super::staged::{self, Staged};
use super::Session;

/// What a channels-mode session needs beyond an ordinary one; built by the
/// server at the upgrade.
#[derive(Debug)]
pub struct ChannelsParts {
    /// The listener's channel settings.
    pub policy: Arc<ChannelsPolicy>,
    /// The hub of the session's own channel space and its gate (from the
    /// Broker's join).
    pub route: HubRoute,
    /// The session's own queue (replies go through it, in order with pushes).
    pub outbox: Outbox,
    /// The permissions of the handshake token.
    pub grants: Grants,
    /// Verifies refresh tokens like the handshake.
    pub verifier: Arc<dyn TokenVerifier>,
    /// The listener's channel hooks (subscribe, publish, rpc), if any.
    pub hooks: Option<Arc<dyn ChannelHooks>>,
    /// Server-side subscriptions made as the session starts (the `connect`
    /// hook's `channels`).
    pub server_channels: Vec<ChannelName>,
}

/// The channels state of a session.
#[derive(Debug)]
pub(super) struct ChannelsSession {
    pub(super) policy: Arc<ChannelsPolicy>,
    hub: Addr<ChannelHub>,
    /// Closed while the hub holds publishers back (the socket is not read).
    pub(super) hub_gate: Gate,
    pub(super) outbox: Outbox,
    grants: Arc<Grants>,
    verifier: Arc<dyn TokenVerifier>,
    /// The current token's deadline (moves on refresh).
    expires_at: Option<SystemTime>,
    /// The pending `expiring` push.
    expiring: Option<SpawnHandle>,
    /// Operations the hub could not take yet, oldest first.
    waiting: VecDeque<ChannelOp>,
    /// The listener's channel hooks (subscribe, publish, rpc), if any.
    pub(super) hooks: Option<Arc<dyn ChannelHooks>>,
    /// Commands waiting for the backend (`staged.rs`).
    pub(super) stage: Stage<Staged>,
    /// Subscribed server-side once the session runs.
    server_channels: Vec<ChannelName>,
    /// The session (its subscriptions are dropped when this state is).
    id: SessionId,
    /// The token's `sub`, shared with the hub's presence entries.
    subject: Option<Arc<str>>,
}

impl ChannelsSession {
    pub(super) fn new(parts: ChannelsParts, info: &SessionInfo) -> Self {
        Self {
            id: info.id.clone(),
            subject: info.subject.as_deref().map(Arc::from),
            expires_at: info.expires_at,
            policy: parts.policy,
            hub: parts.route.hub,
            hub_gate: parts.route.gate,
            outbox: parts.outbox,
            grants: Arc::new(parts.grants),
            verifier: parts.verifier,
            expiring: None,
            waiting: VecDeque::new(),
            stage: staged::stage(parts.hooks.as_ref()),
            hooks: parts.hooks,
            server_channels: parts.server_channels,
        }
    }
}

/// However the session ends, its subscriptions end with it (the hub also
/// drops a subscriber whose queue is closed, should this message be lost to a
/// hub that is itself stopping).
impl Drop for ChannelsSession {
    fn drop(&mut self) {
        self.hub.do_send(ChannelOp::Leave {
            session: self.id.clone(),
        });
    }
}

/// Replies of one inbound frame, sent as one frame.
#[derive(Default)]
struct Batch(String);

impl Batch {
    fn push(&mut self, line: String) {
        if !self.0.is_empty() {
            self.0.push('\n');
        }
        self.0.push_str(&line);
    }
}

impl Session {
    pub(super) fn ch(&mut self) -> &mut ChannelsSession {
        self.channels
            .as_mut()
            .expect("channels state exists in channels mode")
    }

    /// Writes the `connected` push (before anything queued) and arms the
    /// `expiring` timer.
    pub(super) fn channels_started(&mut self, ctx: &mut WebsocketContext<Self>) {
        let info = self.guard.info.clone();
        let expires_at = self.channels.as_ref().and_then(|c| c.expires_at);
        let connected = codec::push_connected(
            ConnectedSession {
                id: info.id.as_str(),
                tenant_id: info.tenant.as_str(),
                subject: info.subject.as_deref(),
            },
            expires_at.map(refresh::unix_seconds),
        );
        self.write(Delivery::Text(ByteString::from(connected)), ctx);
        self.arm_expiring(ctx);
        // Pushed `subscribe` through the outbox, so after `connected`.
        let ch = self.ch();
        for channel in std::mem::take(&mut ch.server_channels) {
            ch.hub.do_send(ServerSubscribe {
                session: info.id.clone(),
                outbox: ch.outbox.clone(),
                channel,
                subject: ch.subject.clone(),
            });
        }
    }

    /// Handles one inbound frame of the channels protocol.
    pub(super) fn on_channels_frame(&mut self, frame: Frame, ctx: &mut WebsocketContext<Self>) {
        let mut batch = Batch::default();
        match frame {
            Frame::Binary(_) => batch.push(codec::binary_frame_reply()),
            Frame::Text(text) => {
                for line in codec::lines(&text) {
                    if self.closing {
                        return;
                    }
                    let request = match codec::parse_line(line) {
                        Ok(r) => r,
                        Err(bad) => {
                            batch.push(bad.reply());
                            continue;
                        }
                    };
                    if !self.take_token(ctx) {
                        if self.closing {
                            return;
                        }
                        batch.push(codec::reply_err(
                            Some(request.id),
                            &ChannelError::new(ErrorCode::RateLimited),
                        ));
                        continue;
                    }
                    if let Some(reply) = self.command(request, ctx) {
                        batch.push(reply);
                    }
                }
            }
        }
        if !batch.0.is_empty() {
            self.reply(batch.0, ctx);
        }
    }

    /// One token of the rate limit, or the policy's answer when none is left.
    fn take_token(&mut self, ctx: &mut WebsocketContext<Self>) -> bool {
        let Some(bucket) = self.bucket.as_mut() else {
            return true;
        };
        if bucket.try_take() {
            return true;
        }
        self.counters.add_dropped(DropReason::RateLimit);
        if self.policy.on_rate_limit == OnRateLimit::Close {
            self.close_with(ctx, CloseCode::RateLimited);
        }
        false
    }

    /// Executes a command; returns the reply when it is immediate (the hub
    /// answers subscribe, unsubscribe, publish and history; refresh and the
    /// hooks answer later).
    fn command(&mut self, req: Request, ctx: &mut WebsocketContext<Self>) -> Option<String> {
        let id = req.id;
        let session = self.guard.info.id.clone();
        let forbidden = || codec::reply_err(Some(id), &ChannelError::new(ErrorCode::Forbidden));
        let not_available =
            || codec::reply_err(Some(id), &ChannelError::new(ErrorCode::NotAvailable));
        let ch = self.ch();
        // `history` and `presence`: served only when on, and need subscribe
        // permission on the channel (not a subscription).
        let refuse_read = |on: bool, channel: &ChannelName| {
            if !on {
                Some(not_available())
            } else if !ch.policy.access.may_subscribe(&ch.grants, channel) {
                Some(forbidden())
            } else {
                None
            }
        };
        match req.command {
            Command::Ping => Some(codec::reply_empty(id)),
            Command::Subscribe { channel, since } => {
                if !ch.policy.access.may_subscribe(&ch.grants, &channel) {
                    return Some(forbidden());
                }
                let op = ChannelOp::Subscribe {
                    session,
                    outbox: ch.outbox.clone(),
                    channel,
                    reply: id,
                    since,
                    max: ch.policy.max_per_session,
                    subject: ch.subject.clone(),
                };
                self.send_to_hub(op, ctx);
                None
            }
            Command::Unsubscribe { channel } => {
                let op = ChannelOp::Unsubscribe {
                    session,
                    outbox: ch.outbox.clone(),
                    channel,
                    reply: id,
                };
                self.send_to_hub(op, ctx);
                None
            }
            Command::Publish { channel, data } => {
                if !ch.policy.access.may_publish(&ch.grants, &channel) {
                    return Some(forbidden());
                }
                let asks_hook = ch.policy.access.publish == Access::Hook;
                self.stats
                    .messages_in
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.counters.listener(self.policy.id).messages_in.add(1);
                if asks_hook {
                    self.publish_with_hook(id, channel, data, ctx);
                    return None;
                }
                let delivery = codec::push_pub(&channel, &data, None, &self.stamp);
                let reply = Some((session, self.ch().outbox.clone(), id));
                self.send_to_hub(
                    ChannelOp::Publish {
                        channel,
                        delivery,
                        reply,
                    },
                    ctx,
                );
                None
            }
            Command::Refresh { token } => {
                self.refresh(id, token, ctx);
                None
            }
            Command::History {
                channel,
                limit,
                since,
            } => {
                if let Some(refusal) = refuse_read(ch.policy.history(), &channel) {
                    return Some(refusal);
                }
                let op = ChannelOp::History {
                    session,
                    outbox: ch.outbox.clone(),
                    channel,
                    reply: id,
                    limit,
                    since,
                };
                self.send_to_hub(op, ctx);
                None
            }
            Command::Presence { channel } => {
                if let Some(refusal) = refuse_read(ch.policy.presence, &channel) {
                    return Some(refusal);
                }
                let op = ChannelOp::Presence {
                    session,
                    outbox: ch.outbox.clone(),
                    channel,
                    reply: id,
                };
                self.send_to_hub(op, ctx);
                None
            }
            Command::Rpc { method, data } => self.rpc(id, &method, &data, ctx),
        }
    }

    /// Queues a reply or push into the session's own outbox.
    pub(super) fn reply(&mut self, text: String, ctx: &mut WebsocketContext<Self>) {
        let outbox = self.ch().outbox.clone();
        if let Err(PushError::Full) = outbox.push(Delivery::Text(ByteString::from(text))) {
            self.counters.add_dropped(DropReason::SlowConsumer);
            self.close_with(ctx, CloseCode::SlowConsumer);
        }
    }

    /// Hands `op` to the hub, in order with those still waiting (callers go
    /// through [`Session::send_to_hub`], which keeps the hook stage's order).
    pub(super) fn hand_to_hub(&mut self, op: ChannelOp, ctx: &mut WebsocketContext<Self>) {
        let ch = self.ch();
        if !ch.waiting.is_empty() {
            ch.waiting.push_back(op);
            return;
        }
        match ch.hub.try_send(op) {
            Ok(()) | Err(SendError::Closed(_)) => {}
            Err(SendError::Full(op)) => {
                ch.waiting.push_back(op);
                self.held.close();
                self.send_next_to_hub(ctx);
            }
        }
    }

    /// Hands the oldest waiting operation over, then the next, then reopens
    /// the session's gate.
    fn send_next_to_hub(&mut self, ctx: &mut WebsocketContext<Self>) {
        let ch = self.ch();
        let Some(op) = ch.waiting.pop_front() else {
            self.held.open();
            return;
        };
        let send = ch.hub.send(op);
        ctx.spawn(
            send.into_actor(self)
                .map(|_, act, ctx| act.send_next_to_hub(ctx)),
        );
    }

    fn refresh(&mut self, id: CommandId, token: String, ctx: &mut WebsocketContext<Self>) {
        let verify = self.ch().verifier.verify(token);
        ctx.spawn(verify.into_actor(self).map(move |result, act, ctx| {
            let reply = act.refreshed(id, result, ctx);
            act.reply(reply, ctx);
        }));
    }

    /// Applies a verified (or refused) refresh token; returns the reply.
    fn refreshed(
        &mut self,
        id: CommandId,
        result: Result<VerifiedToken, &'static str>,
        ctx: &mut WebsocketContext<Self>,
    ) -> String {
        let info = self.guard.info.clone();
        let checked = result.and_then(|t| {
            refresh::same_identity(&t, &info.tenant, info.subject.as_deref()).map(|()| t)
        });
        let token = match checked {
            Ok(t) => t,
            Err(reason) => {
                let result = if reason == refresh::IDENTITY_CHANGED {
                    RefreshResult::IdentityChanged
                } else {
                    RefreshResult::InvalidToken
                };
                self.counters.refreshes.add(result);
                log::debug!(
                    "refresh refused tenant={} session={} reason={}",
                    info.tenant,
                    info.id,
                    reason
                );
                return codec::reply_err(Some(id), &ChannelError::invalid_token(reason));
            }
        };
        self.counters.refreshes.add(RefreshResult::Ok);
        let grants = Arc::new(token.grants);
        let ch = self.ch();
        ch.grants = grants.clone();
        ch.expires_at = token.expires_at;
        let rules = ch.policy.access;
        self.guard.broker.do_send(TokenRefreshed {
            id: info.id.clone(),
            expires_at: token.expires_at,
        });
        self.send_to_hub(
            ChannelOp::Recheck {
                session: info.id.clone(),
                rules,
                grants,
            },
            ctx,
        );
        self.arm_expiring(ctx);
        let expires_at = token.expires_at.map(refresh::unix_seconds);
        codec::reply_ok(id, &serde_json::json!({ "expires_at": expires_at }))
    }

    /// (Re)schedules the `expiring` push: `refresh_notice_s` before `exp`, at
    /// once when less is left, never without `exp`.
    fn arm_expiring(&mut self, ctx: &mut WebsocketContext<Self>) {
        let ch = self.ch();
        if let Some(h) = ch.expiring.take() {
            ctx.cancel_future(h);
        }
        let Some(expires_at) = ch.expires_at else {
            return;
        };
        let Some(delay) = refresh::expiring_in(
            Some(expires_at),
            ch.policy.refresh_notice,
            SystemTime::now(),
        ) else {
            return;
        };
        let push = codec::push_expiring(refresh::unix_seconds(expires_at));
        if delay == Duration::ZERO {
            self.reply(push, ctx);
            return;
        }
        let handle = ctx.run_later(delay, move |act, ctx| {
            act.ch().expiring = None;
            act.reply(push, ctx);
        });
        self.ch().expiring = Some(handle);
    }
}
