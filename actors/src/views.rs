//! What operators see of the broker's state: the rows the admin API returns
//! and nodes of a cluster exchange. Plain data, below both the Broker (which
//! builds them) and the backplane (which carries them between nodes).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Process-wide figures (reply to [`GetStats`](crate::broker::GetStats)).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatsView {
    /// Open connections.
    pub connections: usize,
    /// Distinct tenants with at least one connection.
    pub tenants: usize,
    /// Messages accepted from clients.
    pub messages_in: u64,
    /// Messages written to clients.
    pub messages_out: u64,
    /// Messages dropped, all reasons.
    pub dropped: u64,
    /// Seconds since start.
    pub uptime_s: u64,
}

/// One (listener, tenant) row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantView {
    /// Listener path.
    pub listener: String,
    /// Tenant id.
    pub tenant: String,
    /// Open connections.
    pub connections: usize,
}

/// What the admin API shows of a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionView {
    /// Connection id.
    pub id: String,
    /// Listener path.
    pub listener: String,
    /// Tenant.
    pub tenant: String,
    /// JWT `sub`.
    pub subject: Option<String>,
    /// Peer address.
    pub remote: Option<String>,
    /// Unix seconds.
    pub connected_at: u64,
    /// Unix seconds of the token's `exp`.
    pub expires_at: Option<u64>,
    /// Messages received from the client.
    pub messages_in: u64,
    /// Messages written to the client.
    pub messages_out: u64,
}

/// Whole seconds since the Unix epoch (0 for an earlier time).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
