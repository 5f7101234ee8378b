//! Messages the Broker accepts, and their replies.

use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::close::CloseCode;
use crate::counters::SessionStats;
use crate::delivery::Delivery;
use crate::ids::{ListenerId, SessionId, TenantId};
use crate::info::SessionInfo;
use crate::outbox::Outbox;
use crate::room::TenantRoom;

use super::Broker;

/// Registers a verified session and joins it to its room. Sent by the server
/// before it answers the upgrade with 101.
#[derive(Message, Debug)]
#[rtype(result = "Result<Joined, JoinError>")]
pub struct Join {
    /// Verified identity.
    pub info: Arc<SessionInfo>,
    /// The session's outbound queue.
    pub outbox: Outbox,
    /// Counters the session updates and admin queries read.
    pub stats: Arc<SessionStats>,
}

/// Where a joined session sends its messages.
#[derive(Debug, Clone)]
pub enum Route {
    /// Session scope: back to the sender only.
    Own,
    /// Tenant scope: the tenant's room.
    Room(Addr<TenantRoom>),
    /// Global scope: the Broker fans out to every room of the listener.
    Global(Addr<Broker>),
}

/// A successful join.
#[derive(Debug)]
pub struct Joined {
    /// How the session publishes.
    pub route: Route,
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// `max_connections_per_tenant` reached.
    #[error("tenant connection limit reached")]
    TenantLimit,
    /// The process-wide session cap is reached.
    #[error("server connection limit reached")]
    ServerFull,
    /// The broker is shutting down.
    #[error("server shutting down")]
    ShuttingDown,
    /// The id is already registered (never expected with 128-bit random ids).
    #[error("duplicate session id")]
    DuplicateId,
}

/// A session ended (its actor dropped); frees its slot, room membership and timer.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SessionClosed {
    /// The session.
    pub id: SessionId,
}

/// A client message on a global-scope listener.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct PublishGlobal {
    /// The listener.
    pub listener: ListenerId,
    /// The serialized message.
    pub delivery: Delivery,
}

/// Who an admin publish goes to.
#[derive(Debug, Clone)]
pub enum Target {
    /// One session.
    Session(SessionId),
    /// Every session of a tenant on the listener.
    Tenant(TenantId),
    /// Every session on the listener.
    Global,
}

/// An operator's publish; replies with the number of queues that accepted it.
#[derive(Message, Debug)]
#[rtype(result = "usize")]
pub struct Publish {
    /// The listener.
    pub listener: ListenerId,
    /// Recipients.
    pub target: Target,
    /// The serialized message.
    pub delivery: Delivery,
}

/// Process-wide figures.
#[derive(Message, Debug)]
#[rtype(result = "StatsView")]
pub struct GetStats;

/// Reply to [`GetStats`].
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

/// Tenants with connections.
#[derive(Message, Debug)]
#[rtype(result = "Vec<TenantView>")]
pub struct ListTenants;

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

/// Sessions of one tenant (all listeners).
#[derive(Message, Debug)]
#[rtype(result = "Vec<SessionView>")]
pub struct ListSessions {
    /// The tenant.
    pub tenant: TenantId,
}

/// One session by id.
#[derive(Message, Debug)]
#[rtype(result = "Option<SessionView>")]
pub struct GetSession {
    /// The session.
    pub id: SessionId,
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

/// Closes one session with `code`; replies whether it existed.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct Kick {
    /// The session.
    pub id: SessionId,
    /// Close code (4003 for administrators).
    pub code: CloseCode,
}

/// Closes every session of a tenant (optionally on one listener, optionally
/// only one user's); replies with how many were asked to close.
#[derive(Message, Debug)]
#[rtype(result = "usize")]
pub struct KickTenant {
    /// The tenant.
    pub tenant: TenantId,
    /// Limit to one listener.
    pub listener: Option<ListenerId>,
    /// Limit to the sessions whose `sub` is this (one user's sessions).
    pub subject: Option<String>,
    /// Close code.
    pub code: CloseCode,
}

/// Internal sizes, for leak checks in tests and the admin API.
#[derive(Message, Debug)]
#[rtype(result = "Snapshot")]
pub struct GetSnapshot;

/// Reply to [`GetSnapshot`].
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Registered sessions.
    pub sessions: usize,
    /// Live rooms.
    pub rooms: usize,
    /// Pending expiry/timeout timers.
    pub timers: usize,
}

/// Starts a graceful shutdown: refuse new joins, close every session with 1001.
/// The reply receiver fires when the last session has left.
#[derive(Message, Debug)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct Shutdown;

pub(super) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
