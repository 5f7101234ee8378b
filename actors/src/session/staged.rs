//! The hook stage of a channels session: commands the backend must decide
//! (`subscribe = "hook"` for `subscribe`, `history` and `presence`;
//! `publish = "hook"`; `rpc`) wait here for its answer, and every command
//! reaches the hub in the order the client sent it.
//!
//! Ordering: each hook call starts at once (several may be pending for one
//! session, so a slow backend does not serialise a busy session to one round
//! trip per command), and its outcome takes its place in an [`Ordered`]
//! queue. While anything is pending there, every later operation for the hub
//! queues behind it, hook or not, so the hub applies the session's
//! operations in command order: a `publish` sent after a `subscribe` on the
//! same channel is applied after it. Replies still carry their command's id
//! and may reach the client in another order (a `ping` is answered at once,
//! a `subscribe` waiting for its hook later).
//!
//! Bounds: the listener's `max_in_flight` counts every pending call of the
//! listener (a call beyond it is `unavailable` without asking); a session has
//! at most [`ChannelHooks::depth`] calls running (its share of the listener's
//! capacity). Once that many places are taken its socket is not read until
//! they drain; commands already read meanwhile (the decoder's bounded
//! read-ahead) wait, not yet asked, and their calls start as places free, so
//! one client pipelining commands cannot take the listener's whole
//! `max_in_flight` from the others.

use std::collections::VecDeque;
use std::future::ready;
use std::sync::Arc;

use actix::prelude::*;
use actix_web_actors::ws::WebsocketContext;
use serde_json::Value;

use crate::channels::codec::{self, CommandId};
use crate::channels::hooks::{ChannelHooks, HookFuture, HookVerdict, RpcOutcome};
use crate::channels::space::ChannelOp;
use crate::channels::{Access, ChannelError, ChannelName, ErrorCode};

use super::ordered::{Ordered, Ticket};
use super::Session;

/// A command once the backend decided: an operation for the hub, or a reply.
#[derive(Debug)]
pub(super) enum Staged {
    /// Hand this to the hub (in order).
    Forward(ChannelOp),
    /// Answer the client with this (the command ends here).
    Reply(String),
}

/// The stage's state inside a channels session.
#[derive(Default)]
pub(super) struct Stage {
    /// The listener's channel hooks, when it has any.
    pub(super) hooks: Option<Arc<dyn ChannelHooks>>,
    /// Outcomes in command order.
    queue: Ordered<Staged>,
    /// Calls running now (at most [`ChannelHooks::depth`]).
    running: usize,
    /// Calls not started yet because `running` is at the depth, oldest first
    /// (bounded by what the decoder read before the gate closed).
    deferred: VecDeque<(Ticket, HookFuture<Staged>)>,
    /// Closed while [`ChannelHooks::depth`] places are taken.
    pub(super) gate: crate::gate::Gate,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("hooks", &self.hooks)
            .field("queue", &self.queue)
            .field("running", &self.running)
            .field("deferred", &self.deferred.len())
            .field("gate", &self.gate)
            .finish()
    }
}

impl Stage {
    /// A stage asking `hooks`.
    pub(super) fn new(hooks: Option<Arc<dyn ChannelHooks>>) -> Self {
        Self {
            hooks,
            ..Self::default()
        }
    }

    fn depth(&self) -> usize {
        self.hooks.as_ref().map_or(1, |h| h.depth().max(1))
    }
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

impl Session {
    fn stage(&mut self) -> &mut Stage {
        &mut self.ch().stage
    }

    /// Hands `op` to the hub in command order; one that needs subscribe
    /// permission on a `subscribe = "hook"` listener goes once the backend
    /// allowed it.
    pub(super) fn send_to_hub(&mut self, op: ChannelOp, ctx: &mut WebsocketContext<Self>) {
        let asks_hook = self.ch().policy.access.subscribe == Access::Hook;
        if let Some((channel, id)) = op.needs_subscribe_permission().filter(|_| asks_hook) {
            let info = self.guard.info.clone();
            let call = match &self.stage().hooks {
                Some(h) => h.subscribe(&info, channel),
                None => Box::pin(ready(HookVerdict::Unavailable)),
            };
            let outcome = async move { decided(id, call.await, |()| op) };
            return self.await_backend(Box::pin(outcome), ctx);
        }
        let stage = self.stage();
        if stage.queue.is_empty() {
            self.hand_to_hub(op, ctx);
        } else {
            stage.queue.push_ready(Staged::Forward(op));
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
        let call = match &self.stage().hooks {
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
        self.await_backend(Box::pin(outcome), ctx);
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
            .stage()
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
        self.await_backend(Box::pin(outcome), ctx);
        None
    }

    /// Takes a place for `outcome` and runs it, or keeps it until a running
    /// call ends when the session already has its depth running; the socket
    /// stops being read while the stage is full.
    fn await_backend(&mut self, outcome: HookFuture<Staged>, ctx: &mut WebsocketContext<Self>) {
        let stage = self.stage();
        let ticket = stage.queue.reserve();
        if stage.queue.len() >= stage.depth() {
            stage.gate.close();
        }
        if stage.running >= stage.depth() {
            stage.deferred.push_back((ticket, outcome));
            return;
        }
        self.run_call(ticket, outcome, ctx);
    }

    /// Starts one call (a hook future takes its `max_in_flight` slot when
    /// first polled, i.e. here).
    fn run_call(
        &mut self,
        ticket: Ticket,
        outcome: HookFuture<Staged>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        self.stage().running += 1;
        ctx.spawn(
            outcome
                .into_actor(self)
                .map(move |staged, act, ctx| act.backend_answered(ticket, staged, ctx)),
        );
    }

    /// Files an answer, then applies every outcome now at the front, in order.
    fn backend_answered(
        &mut self,
        ticket: Ticket,
        staged: Staged,
        ctx: &mut WebsocketContext<Self>,
    ) {
        let stage = self.stage();
        stage.running -= 1;
        stage.queue.fill(ticket, staged);
        if let Some((ticket, outcome)) = stage.deferred.pop_front() {
            self.run_call(ticket, outcome, ctx);
        }
        while let Some(next) = self.stage().queue.pop_ready() {
            if self.closing {
                return;
            }
            match next {
                Staged::Forward(op) => self.hand_to_hub(op, ctx),
                Staged::Reply(text) => self.reply(text, ctx),
            }
        }
        let stage = self.stage();
        if stage.queue.len() < stage.depth() && stage.deferred.is_empty() {
            stage.gate.open();
        }
    }
}
