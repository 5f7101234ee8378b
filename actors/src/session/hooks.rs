//! What a Session asks of the application's backend, injected by the server as
//! a trait object: the actors know nothing of HTTP, URLs or signatures.
//!
//! * [`SessionHooks::message`] — a listener with the `message` hook hands every
//!   inbound message to the backend instead of routing it by scope; the answer
//!   may carry a reply (to the sender) and a publication (to the scope).
//! * [`SessionHooks::opened`] / [`SessionHooks::closed`] — the session's start
//!   and end, with its close code (webhooks).
//!
//! Order per session is kept by pipelining: up to
//! [`SessionHooks::message_depth`] of a session's calls run at once (so a slow
//! backend does not serialise a busy session to one round trip per message),
//! and the answers are applied in arrival order of the messages. Beyond that
//! depth a message waits in the session, not yet asked, and the socket is not
//! read until places free (`stage.rs`): nothing is dropped.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::delivery::Delivery;
use crate::info::SessionInfo;
use crate::protocol::Frame;

/// A call to the backend, started when first polled (it may wait in the
/// session's stage first); it runs on the session's own thread.
pub type HookCall = Pin<Box<dyn Future<Output = HookAnswer>>>;

/// What the backend asked the session to send. Empty when the hook failed (the
/// hook counted the failure; the sender gets nothing).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HookAnswer {
    /// To the sender only.
    pub reply: Option<Delivery>,
    /// To the listener's scope, from the sender's position.
    pub publish: Option<Delivery>,
}

/// The backend side of a session. Implemented by the server; one per listener,
/// shared by its sessions across workers.
pub trait SessionHooks: Debug + Send + Sync {
    /// How many of one session's messages may be with the backend at once
    /// (its share of the listener's `max_in_flight`); `None`: the listener
    /// has no `message` hook and routes by scope.
    fn message_depth(&self) -> Option<usize>;

    /// The call handing `frame` to the backend. Called only when
    /// [`SessionHooks::message_depth`] is `Some`; the call takes its place
    /// among the listener's `max_in_flight` when first polled (a message
    /// waiting in its session does not count).
    fn message(&self, info: &Arc<SessionInfo>, frame: Frame) -> HookCall;

    /// The session's socket is open.
    fn opened(&self, info: &Arc<SessionInfo>);

    /// The session ended with close `code` (1006 when the socket went away
    /// without a close frame, 1005 for a close frame without a code).
    fn closed(&self, info: &Arc<SessionInfo>, code: u16);
}
