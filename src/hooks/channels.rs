//! [`ChannelBackend`]: the channel hooks of one channels-mode listener, as
//! the actors' [`ChannelHooks`] seam sees them — `subscribe`, `publish` and
//! `rpc` over the listener's [`HookClient`]. Every failure the client reports
//! (overloaded, timeout, refused connection, non-2xx, malformed answer) comes
//! out as `Unavailable`: fail closed.
//!
//! Each call runs as a task of its own on the session's thread (`detached`),
//! and the session's future only waits for its outcome: a session polls every
//! future it holds each time it wakes (each answer, each frame), and with up
//! to its depth of calls pending, polling each HTTP call down through awc on
//! every wake-up cost more than the calls themselves.

use std::sync::Arc;

use serde_json::Value;
use wsplus_actors::channels::hooks::{ChannelHooks, HookFuture, HookVerdict, RpcOutcome};
use wsplus_actors::channels::ChannelName;
use wsplus_actors::SessionInfo;

use super::wire::{RpcAnswer, Verdict};
use super::{detached, HookClient, HookError};
use crate::settings::HookName;

/// One listener's channel hooks.
#[derive(Debug)]
pub struct ChannelBackend {
    client: Arc<HookClient>,
}

impl ChannelBackend {
    /// The channel hooks of `client`'s listener; `None` when none of
    /// `subscribe`, `publish` and `rpc` is on.
    pub fn new(client: &Arc<HookClient>) -> Option<Self> {
        [HookName::Subscribe, HookName::Publish, HookName::Rpc]
            .into_iter()
            .any(|h| client.has(h))
            .then(|| Self {
                client: client.clone(),
            })
    }
}

fn verdict<T>(answer: Result<Verdict<T>, HookError>) -> HookVerdict<T> {
    match answer {
        Ok(Verdict::Allow(v)) => HookVerdict::Allow(v),
        Ok(Verdict::Deny) => HookVerdict::Deny,
        Err(_) => HookVerdict::Unavailable,
    }
}

impl ChannelHooks for ChannelBackend {
    fn depth(&self) -> usize {
        self.client.session_depth()
    }

    fn subscribe(
        &self,
        info: &Arc<SessionInfo>,
        channel: &ChannelName,
    ) -> HookFuture<HookVerdict<()>> {
        let (client, info, channel) = (self.client.clone(), info.clone(), channel.clone());
        let call = async move { verdict(client.subscribe(&info, channel.as_str()).await) };
        Box::pin(detached(call, HookVerdict::Unavailable))
    }

    fn publish(
        &self,
        info: &Arc<SessionInfo>,
        channel: &ChannelName,
        data: &Value,
    ) -> HookFuture<HookVerdict<Option<Value>>> {
        // Serialized here: the call owns its bytes, not a copy of `data`.
        let request = HookClient::publish_request(info, channel.as_str(), data);
        let (client, info) = (self.client.clone(), info.clone());
        let call = async move { verdict(client.publish(&info, request).await) };
        Box::pin(detached(call, HookVerdict::Unavailable))
    }

    fn rpc(
        &self,
        info: &Arc<SessionInfo>,
        method: &str,
        data: &Value,
    ) -> Option<HookFuture<RpcOutcome>> {
        if !self.client.has(HookName::Rpc) {
            return None;
        }
        let (client, info) = (self.client.clone(), info.clone());
        let (method, data) = (method.to_owned(), data.clone());
        let call = async move {
            match client.rpc(&info, &method, &data).await {
                Ok(RpcAnswer::Result(v)) => RpcOutcome::Result(v),
                Ok(RpcAnswer::Error(e)) => RpcOutcome::Error {
                    code: e.code,
                    message: e.message,
                },
                Err(_) => RpcOutcome::Unavailable,
            }
        };
        Some(Box::pin(detached(call, RpcOutcome::Unavailable)))
    }
}
