//! The channel hooks seam: what a channels-mode session asks the
//! application's backend — may it subscribe (`subscribe = "hook"`, also for
//! `history` and `presence`), may it publish and with which data (`publish =
//! "hook"`), and what does an `rpc` call answer. Implemented by the server
//! over HTTP; the actors know nothing of URLs, signatures or timeouts, as
//! with the [`super::refresh::TokenVerifier`] seam.
//!
//! Every call is fail closed: an implementation that cannot get a documented
//! answer (timeout, refused connection, non-2xx, malformed JSON, too many
//! calls in flight) returns `Unavailable`, never a pass.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use super::name::ChannelName;
use crate::info::SessionInfo;

/// A hook call in progress; it runs on the session's own thread.
pub type HookFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// What a `subscribe` or `publish` hook decided.
#[derive(Debug, Clone, PartialEq)]
pub enum HookVerdict<T> {
    /// `"allow": true`, with what the allow carries.
    Allow(T),
    /// `"allow": false` → `forbidden`.
    Deny,
    /// No usable answer → `unavailable`.
    Unavailable,
}

/// What an `rpc` call came to.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcOutcome {
    /// `{"result": ...}`: the reply's result, as the backend gave it.
    Result(Value),
    /// `{"error": {"code", "message"}}`: passed through as the backend gave it.
    Error {
        /// The backend's code.
        code: String,
        /// The backend's message.
        message: String,
    },
    /// No usable answer → `unavailable`.
    Unavailable,
}

/// The backend side of a channels-mode listener; one per listener, shared by
/// its sessions across workers. A call counts against the listener's
/// `max_in_flight` from the moment it is made.
pub trait ChannelHooks: Debug + Send + Sync {
    /// How many of one session's hook calls may be pending at once before
    /// its socket stops being read (its share of the listener's
    /// `max_in_flight`, so one session cannot take all of it).
    fn depth(&self) -> usize;

    /// May the session subscribe to `channel` (or read its history or
    /// presence)?
    fn subscribe(
        &self,
        info: &Arc<SessionInfo>,
        channel: &ChannelName,
    ) -> HookFuture<HookVerdict<()>>;

    /// May the session publish `data` to `channel`; `Allow(Some(v))` replaces
    /// the data with `v`.
    fn publish(
        &self,
        info: &Arc<SessionInfo>,
        channel: &ChannelName,
        data: &Value,
    ) -> HookFuture<HookVerdict<Option<Value>>>;

    /// Calls `method` with `data`; `None` when the listener's `rpc` hook is
    /// off (the command is then `not_available`).
    fn rpc(
        &self,
        info: &Arc<SessionInfo>,
        method: &str,
        data: &Value,
    ) -> Option<HookFuture<RpcOutcome>>;
}
