//! The hook stage of a channels session: commands the backend must decide
//! (`subscribe = "hook"` for `subscribe`, `history` and `presence`;
//! `publish = "hook"`; `rpc`) wait here for its answer, and every command
//! reaches the hub in the order the client sent it.
//!
//! Ordering: the calls go through the session's [`Stage`] (`stage.rs`),
//! which runs several at once (so a slow backend does not serialise a busy
//! session to one round trip per command) and gives their outcomes back in
//! command order. While anything is pending there, every later operation for
//! the hub queues behind it, hook or not, so the hub applies the session's
//! operations in command order: a `publish` sent after a `subscribe` on the
//! same channel is applied after it. Replies still carry their command's id
//! and may reach the client in another order (a `ping` is answered at once,
//! a `subscribe` waiting for its hook later).
//!
//! Bounds: the listener's `max_in_flight` counts every running call of the
//! listener (a call beyond it is `unavailable` without asking); a session has
//! at most [`ChannelHooks::depth`] calls running (its share of the listener's
//! capacity) and at most that many places taken before its socket stops
//! being read — operations queued behind a pending call included.

use std::future::ready;
use std::sync::Arc;

use actix_web_actors::ws::WebsocketContext;
use serde_json::Value;

use crate::channels::codec::{self, CommandId};
use crate::channels::hooks::{ChannelHooks, HookVerdict, RpcOutcome};
use crate::channels::space::ChannelOp;
use crate::channels::{Access, ChannelError, ChannelName, ErrorCode};

use super::stage::{Stage, Staging};
use super::Session;

/// A command once the backend decided: an operation for the hub, or a reply.
#[derive(Debug)]
pub(super) enum Staged {
    /// Hand this to the hub (in order).
    Forward(ChannelOp),
    /// Answer the client with this (the command ends here).
    Reply(String),
}

/// A stage for a channels session asking `hooks`: as deep as the hooks'
/// [`ChannelHooks::depth`] (1 without hooks: nothing is ever asked then).
pub(super) fn stage(hooks: Option<&Arc<dyn ChannelHooks>>) -> Stage<Staged> {
    Stage::new(hooks.map_or(1, |h| h.depth()))
}

fn error(id: CommandId, code: ErrorCode) -> String {
    codec::reply_err(Some(id), &ChannelError::new(code))
}

/// The reply or operation a verdict comes to: `Allow` goes on, `Deny` is
/// `forbidden`, anything else `unavailable`.
fn decided<T>(id: CommandId, verdict: HookVerdict<T>, then: impl FnOnce(T) -> ChannelOp) -> Staged {
    match verdict {
        HookVerdict::Allow(v) => Staged::Forward(then(v)),
        HookVerdict::Deny => Staged::Reply(error(id, ErrorCode::Forbidden)),
        HookVerdict::Unavailable => Staged::Reply(error(id, ErrorCode::Unavailable)),
    }
}

impl Staging<Staged> for Session {
    fn stage_of(&mut self) -> &mut Stage<Staged> {
        &mut self.ch().stage
    }

    fn apply(&mut self, staged: Staged, ctx: &mut WebsocketContext<Session>) {
        match staged {
            Staged::Forward(op) => self.hand_to_hub(op, ctx),
            Staged::Reply(text) => self.reply(text, ctx),
        }
    }
}

impl Session {
    /// Hands `op` to the hub in command order; one that needs subscribe
    /// permission on a `subscribe = "hook"` listener goes once the backend
    /// allowed it.
    pub(super) fn send_to_hub(&mut self, op: ChannelOp, ctx: &mut WebsocketContext<Self>) {
        let asks_hook = self.ch().policy.access.subscribe == Access::Hook;
        if let Some((channel, id)) = op.needs_subscribe_permission().filter(|_| asks_hook) {
            let info = self.guard.info.clone();
            let call = match &self.ch().hooks {
                Some(h) => h.subscribe(&info, channel),
                None => Box::pin(ready(HookVerdict::Unavailable)),
            };
            let outcome = async move { decided(id, call.await, |()| op) };
            return self.stage_call(Box::pin(outcome), ctx);
        }
        let stage = &mut self.ch().stage;
        if stage.is_empty() {
            self.hand_to_hub(op, ctx);
        } else {
            stage.push_ready(Staged::Forward(op));
        }
    }

    /// A `publish` on a `publish = "hook"` listener: the backend allows it
    /// (with its replacement data, if any) or not.
    pub(super) fn publish_with_hook(
        &mut self,
        id: CommandId,
        channel: ChannelName,
        data: Value,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let info = self.guard.info.clone();
        let call = match &self.ch().hooks {
            Some(h) => h.publish(&info, &channel, &data),
            None => Box::pin(ready(HookVerdict::Unavailable)),
        };
        let stamp = self.stamp.clone();
        let session = self.guard.info.id.clone();
        let outbox = self.ch().outbox.clone();
        let outcome = async move {
            decided(id, call.await, |replacement| {
                let data = replacement.unwrap_or(data);
                ChannelOp::Publish {
                    delivery: codec::push_pub(&channel, &data, None, &stamp),
                    channel,
                    reply: Some((session, outbox, id)),
                }
            })
        };
        self.stage_call(Box::pin(outcome), ctx);
    }

    /// An `rpc` command: the backend's result or error, passed through;
    /// `not_available` when the listener's `rpc` hook is off.
    pub(super) fn rpc(
        &mut self,
        id: CommandId,
        method: &str,
        data: &Value,
        ctx: &mut WebsocketContext<Self>,
    ) -> Option<String> {
        let info = self.guard.info.clone();
        let call = self
            .ch()
            .hooks
            .as_ref()
            .and_then(|h| h.rpc(&info, method, data));
        let Some(call) = call else {
            return Some(error(id, ErrorCode::NotAvailable));
        };
        let outcome = async move {
            Staged::Reply(match call.await {
                RpcOutcome::Result(v) => codec::reply_ok(id, &v),
                RpcOutcome::Error { code, message } => {
                    codec::reply_backend_err(id, &code, &message)
                }
                RpcOutcome::Unavailable => error(id, ErrorCode::Unavailable),
            })
        };
        self.stage_call(Box::pin(outcome), ctx);
        None
    }
}
