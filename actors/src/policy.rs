//! Per-listener behaviour the actors enforce. Built by the server from validated
//! settings; every duration and limit has its documented default there.

use std::sync::Arc;
use std::time::Duration;

use crate::ids::{ListenerId, Mode, Scope};

/// What happens when a session's token expires.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OnTokenExpiry {
    /// Close with 4001 at `exp`.
    Disconnect,
    /// Keep the connection open.
    AllowStale,
}

/// What happens when a session exceeds its rate limit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OnRateLimit {
    /// Drop the message (counted).
    Drop,
    /// Close with 4008.
    Close,
}

/// The enforced settings of one listener.
#[derive(Clone, Debug)]
pub struct ListenerPolicy {
    /// Index in the listener table.
    pub id: ListenerId,
    /// URL path.
    pub path: Arc<str>,
    /// payload | message.
    pub mode: Mode,
    /// session | tenant | global.
    pub scope: Scope,
    /// Largest accepted frame (and reassembled message), inclusive.
    pub max_message_bytes: usize,
    /// Server ping interval; `None` disables heartbeats.
    pub heartbeat: Option<Duration>,
    /// Session lifetime limit (close 4002); `None` = unlimited.
    pub session_timeout: Option<Duration>,
    /// Token expiry policy.
    pub on_token_expiry: OnTokenExpiry,
    /// Messages per second per connection; 0 = unlimited.
    pub rate_limit_per_s: u32,
    /// Rate limit policy.
    pub on_rate_limit: OnRateLimit,
    /// Connections per tenant on this listener; 0 = unlimited.
    pub max_connections_per_tenant: usize,
    /// Outbound queue bound in messages, per connection.
    pub outbound_queue_messages: usize,
    /// Outbound queue bound in bytes, per connection.
    pub outbound_queue_bytes: usize,
    /// Channels mode with history on: what each channel keeps.
    pub history: Option<crate::channels::history::HistoryLimits>,
    /// Channels mode: whether presence is tracked and joins/leaves pushed.
    pub presence: crate::channels::presence::PresenceMode,
}

impl ListenerPolicy {
    /// A policy with test-friendly defaults (no limits, no heartbeat).
    pub fn for_tests(id: u16, path: &str, mode: Mode, scope: Scope) -> Self {
        Self {
            id: ListenerId(id),
            path: path.into(),
            mode,
            scope,
            max_message_bytes: 65536,
            heartbeat: None,
            session_timeout: None,
            on_token_expiry: OnTokenExpiry::Disconnect,
            rate_limit_per_s: 0,
            on_rate_limit: OnRateLimit::Drop,
            max_connections_per_tenant: 0,
            outbound_queue_messages: 1024,
            outbound_queue_bytes: 4 << 20,
            history: None,
            presence: crate::channels::presence::PresenceMode::Off,
        }
    }
}
