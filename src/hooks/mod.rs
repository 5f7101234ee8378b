//! The bridge to the application's backend over HTTP (awc).
//!
//! * Hooks (`[listeners.hooks]`): the backend decides and answers, while the
//!   client waits. [`HookClient`] makes the calls (signed, bounded, timed
//!   out, classified); [`wire`] holds each hook's JSON; [`ListenerHooks`] is
//!   what a Session is given to hand its messages over and report its start
//!   and end; [`ChannelBackend`] is what a channels-mode session is given to
//!   ask `subscribe`, `publish` and `rpc`.
//! * Webhooks (`[[webhooks]]`): the backend hears what happened, afterwards,
//!   at least once ([`webhooks`]).
//!
//! Fail closed: a hook that times out, cannot be reached, answers non-2xx or
//! answers JSON of the wrong shape is a refusal ([`HookError`]), never a pass.
//! docs/hooks.md is the backend author's view of the same.

mod channels;
mod client;
mod session;
mod sign;
pub mod stats;
pub mod webhooks;
pub mod wire;

pub use channels::ChannelBackend;
pub use client::{session_depth, HookClient, Permit, IDLE_CONNECTION, SESSION_DEPTH};
pub use session::ListenerHooks;
pub use sign::{Signer, SIGNATURE_HEADER};
pub use webhooks::Webhooks;

/// Why a hook call did not produce a usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// `max_in_flight` calls were already in flight: not sent.
    #[error("too many hook calls in flight")]
    Overloaded,
    /// No complete answer within `timeout_ms`.
    #[error("timed out")]
    Timeout,
    /// The backend could not be reached or the connection broke.
    #[error("backend unreachable")]
    Connect,
    /// A non-2xx status.
    #[error("backend answered HTTP {0}")]
    Status(u16),
    /// A 2xx whose body is not the documented JSON.
    #[error("malformed answer")]
    Malformed,
}

impl HookError {
    /// Every kind's metric label, in counter order.
    pub const KINDS: [&'static str; 5] =
        ["overloaded", "timeout", "connect", "status", "malformed"];

    /// Position of this kind in [`HookError::KINDS`].
    pub fn index(self) -> usize {
        match self {
            HookError::Overloaded => 0,
            HookError::Timeout => 1,
            HookError::Connect => 2,
            HookError::Status(_) => 3,
            HookError::Malformed => 4,
        }
    }

    /// The metric label of this kind.
    pub fn kind(self) -> &'static str {
        Self::KINDS[self.index()]
    }
}

/// Why the hooks or webhooks of a configuration cannot start. Never holds a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum HooksSetupError {
    /// A signing secret is missing.
    #[error("{key}: {problem}")]
    Secret {
        /// The settings key (`listeners[0].hooks`, `webhooks[1]`).
        key: String,
        /// What is wrong with it.
        problem: crate::auth::secret::SecretError,
    },
}

/// Every hook and webhook secret of `settings` that cannot be read (the
/// pre-start checks of `serve` and `check-config`).
pub fn secret_problems(
    settings: &crate::settings::Settings,
    env: &crate::env::Env,
) -> Vec<HooksSetupError> {
    let hooks = settings
        .listeners
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Some((format!("listeners[{i}].hooks"), l.hooks.as_ref()?)))
        .map(|(key, h)| (key, h.secret_env.as_deref(), h.secret_file.as_deref()));
    let webhooks = settings.webhooks.iter().enumerate().map(|(i, w)| {
        (
            format!("webhooks[{i}]"),
            w.secret_env.as_deref(),
            w.secret_file.as_deref(),
        )
    });
    hooks
        .chain(webhooks)
        .filter_map(|(key, var, file)| {
            Signer::from_source(var, file, env)
                .err()
                .map(|problem| HooksSetupError::Secret { key, problem })
        })
        .collect()
}

/// A session of tenant `acme`, subject `u1`, on listener `/ws` (unit tests).
#[cfg(test)]
pub(crate) fn test_info() -> wsplus_actors::SessionInfo {
    use wsplus_actors::{AuthStatus, ListenerId, Scope, SessionId, TenantId};
    wsplus_actors::SessionInfo {
        id: SessionId::random(),
        listener: ListenerId(0),
        listener_path: "/ws".into(),
        tenant: TenantId::new("acme"),
        subject: Some("u1".into()),
        auth: AuthStatus::Verified,
        scope: Scope::Tenant,
        remote: None,
        connected_at: std::time::SystemTime::now(),
        expires_at: None,
    }
}

/// Runs `call` as a task on the current thread (no thread hop), started when
/// the returned future is first polled (so a call a session holds back takes
/// no `max_in_flight` slot until then), and waits for its outcome; `lost` if
/// the task ended without one (it panicked). A call whose session is gone
/// still runs to its answer or timeout (holding its slot), so its connection
/// is kept.
pub(crate) async fn detached<T: 'static>(
    call: impl std::future::Future<Output = T> + 'static,
    lost: T,
) -> T {
    // Dropping the handle (the session is gone) detaches the task.
    actix_rt::spawn(call).await.unwrap_or(lost)
}
