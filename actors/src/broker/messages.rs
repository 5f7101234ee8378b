//! Every message the Broker accepts, and their replies, in one place: from
//! the server (joins, leaves, shutdown), from and operators (publishes, queries, kicks), from metrics scrapes
//! (load) and from other nodes through the backplane (remote deliveries and
//! admin requests). The handlers live beside the Broker (`mod.rs`, `admin.rs`,
//! `origin.rs`, `load.rs`, `remote.rs`).

use std::sync::Arc;

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::backplane::{NodeReply, NodeRequest};
use crate::close::CloseCode;
use crate::counters::SessionStats;
use crate::delivery::Delivery;
use crate::gate::Gate;
use crate::ids::{ListenerId, SessionId, TenantId};
use crate::info::SessionInfo;
use crate::outbox::Outbox;
use crate::room::TenantRoom;
use crate::router::GlobalRouter;

pub use crate::views::{SessionView, StatsView, TenantView};

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
    /// The tenant record's `max_connections`: `None` = the listener's
    /// `max_connections_per_tenant` applies; `Some(n)` replaces it and counts
    /// the tenant's sessions on every listener (and node); `Some(0)` = no cap.
    pub tenant_cap: Option<usize>,
}

/// Where a joined session sends its messages.
#[derive(Debug, Clone)]
pub enum Route {
    /// Session scope: back to the sender only.
    Own,
    /// Tenant scope: the tenant's room.
    Room {
        /// The room.
        room: Addr<TenantRoom>,
        /// Closed while the room holds its publishers back.
        gate: Gate,
    },
    /// Global scope: the listener's router fans out to every room of it.
    Global {
        /// The router.
        router: Addr<GlobalRouter>,
        /// Closed while the router waits for a busy room.
        gate: Gate,
    },
}

/// A successful join.
#[derive(Debug)]
pub struct Joined {
    /// How the session publishes.
    pub route: Route,
    /// Channels mode: the hub of the session's own channel space.
    pub channels: Option<crate::channels::hub::HubRoute>,
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
    /// The session names a listener the Broker was not built with (the server
    /// builds both from one table, so this is a bug, refused rather than guessed).
    #[error("unknown listener {0:?}")]
    UnknownListener(ListenerId),
}

/// A session ended (its actor dropped); frees its slot, room membership and timer.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SessionClosed {
    /// The session.
    pub id: SessionId,
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

/// Tenants with connections.
#[derive(Message, Debug)]
#[rtype(result = "Vec<TenantView>")]
pub struct ListTenants;

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

/// A tenant message from `origin` (e.g. a bridge): delivered to every local
/// session of the tenant except `origin`, and handed to the other nodes.
/// Replies with the number of local queues that took it.
#[derive(Message, Debug)]
#[rtype(result = "usize")]
pub struct PublishFrom {
    /// The listener.
    pub listener: ListenerId,
    /// The tenant.
    pub tenant: TenantId,
    /// The serialized message.
    pub delivery: Delivery,
    /// Who published it (skipped in the fan-out).
    pub origin: SessionId,
}

/// Asks the Broker for this node's [`Load`].
#[derive(Message, Debug, Clone, Copy, Default)]
#[rtype(result = "Load")]
pub struct GetLoad {
    /// `Some(n)`: also the `n` (listener, tenant) pairs with the most
    /// connections (ties by listener, then tenant, so the choice is stable).
    pub top_tenants: Option<usize>,
}

/// One listener's live figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLoad {
    /// Listener path.
    pub path: String,
    /// Open connections.
    pub connections: usize,
    /// Live rooms (tenants with at least one connection).
    pub rooms: usize,
    /// Connections of the tenants left out of [`Load::tenants`] (0 unless
    /// tenants were asked for).
    pub other_tenants: usize,
}

/// Reply to [`GetLoad`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    /// Every listener, by id.
    pub listeners: Vec<ListenerLoad>,
    /// The busiest (listener, tenant) pairs, busiest first; empty unless asked.
    pub tenants: Vec<TenantView>,
}

/// Whom a remote delivery is for on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteTarget {
    /// This node's sessions of one tenant of the listener.
    Tenant(TenantId),
    /// Every session of the listener on this node.
    Global,
    /// The subscribers on this node of a channel of a channels-mode listener
    /// (`tenant` `None` on a global-scope one).
    Channel {
        /// The tenant of the channel space.
        tenant: Option<TenantId>,
        /// The channel.
        channel: crate::channels::ChannelName,
        /// Its position in the cluster's stream (history in the cluster).
        position: Option<crate::channels::codec::StreamPosition>,
    },
}

/// A message published on another node, for this node's sessions only (it is
/// never handed back to the backplane).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct RemoteDeliver {
    /// The listener.
    pub listener: ListenerId,
    /// Recipients.
    pub target: RemoteTarget,
    /// The message, as serialized by the origin node.
    pub delivery: Delivery,
}

/// An admin request from another node, for the Broker to answer from local
/// state. A request this node cannot apply (unknown listener or close code) is
/// answered with [`NodeReply::Refused`].
#[derive(Message, Debug)]
#[rtype(result = "NodeReply")]
pub struct NodeCall {
    /// What the other node asks.
    pub request: NodeRequest,
}
