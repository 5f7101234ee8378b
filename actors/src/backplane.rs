//! The backplane seam: how one node's Broker and rooms reach the other nodes of a
//! cluster, without knowing how (Redis, or nothing at all for a single node).
//!
//! Outbound, the Broker and rooms call a [`Backplane`] *after* local delivery:
//! a tenant message a room fanned out to its own sessions, a global message the
//! Broker fanned out to its rooms, room and session life-cycle events (for
//! subscriptions and the session registry), tenant slot accounting, and admin
//! requests to other nodes. Every call returns at once: an implementation queues
//! its work (bounded, dropping and counting when full) and never makes an actor
//! wait on the network. Calls that need an answer return a future the Broker
//! awaits *outside* its message handling (`ActorResponse`), bounded by the
//! implementation's timeout.
//!
//! Inbound, an implementation hands the Broker `RemoteDeliver` (a message from
//! another node, delivered to local sessions only) and `NodeCall` (an admin
//! request from another node, answered from local state only); both are
//! declared with the Broker's other messages (`broker::messages`). This module
//! sits below the Broker and rooms and knows neither.
//!
//! [`LocalBackplane`] is the single-node implementation: every call is a no-op,
//! so a node without a cluster behaves exactly as if the seam were not there.
//! The Session actor never sees this seam.

use std::fmt;

use futures_core::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::channels::codec::StreamPosition;
use crate::channels::history::HistoryLimits;
use crate::channels::presence::ChannelFacts;
use crate::channels::ChannelName;
use crate::delivery::Delivery;
use crate::ids::{ListenerId, SessionId, TenantId};
use crate::info::SessionInfo;
use crate::views::{SessionView, TenantView};

/// A channel's stream as the cluster keeps it (history in the cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStream {
    /// The stream's epoch.
    pub epoch: String,
    /// Its last offset (0 before the first publication).
    pub offset: u64,
    /// The kept `pub` pushes after the offset asked for, with their
    /// offsets, oldest first (expired ones left out).
    pub publications: Vec<(u64, bytestring::ByteString)>,
}

/// Why the cluster's history could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The cluster store did not answer (down, slow, or its queue is full).
    #[error("history store unavailable")]
    Unavailable,
}

/// What a cluster-wide tenant slot request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotDecision {
    /// The cluster had room; the slot is held until released.
    Granted,
    /// The tenant is at `max_connections_per_tenant` cluster-wide.
    Full,
    /// The cluster could not be asked (backplane down or slow): the Broker falls
    /// back to its local count. The slot is still accounted, and written to the
    /// cluster once it is reachable again.
    Unavailable,
}

/// The cluster side of a Broker. Implementations must never block the caller.
pub trait Backplane: Send + Sync + fmt::Debug {
    /// True when other nodes exist (the Broker then consults them); false for
    /// [`LocalBackplane`], which makes every other method a no-op.
    fn is_clustered(&self) -> bool {
        false
    }

    /// This node's id (empty for a single node).
    fn node_id(&self) -> &str {
        ""
    }

    /// A tenant message of one of this node's sessions, already delivered to
    /// this node's sessions of the tenant: hand it to the other nodes.
    fn publish_tenant(&self, _listener: ListenerId, _tenant: &TenantId, _delivery: &Delivery) {}

    /// A global message of one of this node's sessions, already delivered to
    /// this node's sessions of the listener: hand it to the other nodes.
    fn publish_global(&self, _listener: ListenerId, _delivery: &Delivery) {}

    /// This node is about to hold sessions of `(listener, tenant)`: start
    /// receiving the tenant's messages from other nodes. The future resolves once
    /// they will arrive (or once that is known not to be possible right now).
    fn room_opened(&self, _listener: ListenerId, _tenant: &TenantId) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }

    /// This node no longer holds sessions of `(listener, tenant)`.
    fn room_closed(&self, _listener: ListenerId, _tenant: &TenantId) {}

    /// A channel publication (the `pub` push) made on this node, already
    /// delivered to this node's subscribers: hand it to the other nodes.
    /// `tenant` is `None` on a global-scope channels listener.
    fn publish_channel(
        &self,
        _listener: ListenerId,
        _tenant: Option<&TenantId>,
        _channel: &ChannelName,
        _delivery: &Delivery,
    ) {
    }

    /// A push to a channel's subscribers that is not a publication (a
    /// presence `join`/`leave`), already delivered here: hand it to the other
    /// nodes' subscribers. Never kept in history, carries no offset.
    fn push_channel(
        &self,
        _listener: ListenerId,
        _tenant: Option<&TenantId>,
        _channel: &ChannelName,
        _delivery: &Delivery,
    ) {
    }

    /// This node has a first subscriber of the channel: start receiving its
    /// publications from other nodes.
    fn channel_opened(
        &self,
        _listener: ListenerId,
        _tenant: Option<&TenantId>,
        _channel: &ChannelName,
    ) {
    }

    /// This node's last subscriber of the channel left.
    fn channel_closed(
        &self,
        _listener: ListenerId,
        _tenant: Option<&TenantId>,
        _channel: &ChannelName,
    ) {
    }

    /// Resolves once publications of the channel made on other nodes reach
    /// this node (the channel has a subscriber here); at once when that is
    /// not possible right now.
    fn channel_ready(
        &self,
        _listener: ListenerId,
        _tenant: Option<&TenantId>,
        _channel: &ChannelName,
    ) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }

    /// True when channel history lives in the cluster: publications are
    /// numbered by [`Backplane::append_history`], which also delivers them to
    /// every node (this one included), and streams are read with
    /// [`Backplane::read_history`].
    fn keeps_history(&self) -> bool {
        false
    }

    /// Numbers a publication (the `pub` push without offset), keeps it in
    /// the channel's stream and delivers it to every node with its position.
    fn append_history(
        &self,
        _listener: ListenerId,
        _tenant: Option<&TenantId>,
        _channel: &ChannelName,
        _push: &Delivery,
        _limits: HistoryLimits,
    ) -> BoxFuture<'static, Result<StreamPosition, HistoryError>> {
        Box::pin(std::future::ready(Err(HistoryError::Unavailable)))
    }

    /// The channel's stream: its position and, with `after`, the kept
    /// publications after that offset (the stream starts with a new epoch if
    /// the cluster has none for the channel).
    fn read_history(
        &self,
        _listener: ListenerId,
        _tenant: Option<&TenantId>,
        _channel: &ChannelName,
        _limits: HistoryLimits,
        _after: Option<u64>,
    ) -> BoxFuture<'static, Result<ClusterStream, HistoryError>> {
        Box::pin(std::future::ready(Err(HistoryError::Unavailable)))
    }

    /// A session joined this node (session registry).
    fn session_joined(&self, _info: &SessionInfo) {}

    /// A session left this node (session registry).
    fn session_left(&self, _info: &SessionInfo) {}

    /// Takes one of the tenant's `cap` connection slots, cluster-wide.
    fn acquire_slot(
        &self,
        _listener: ListenerId,
        _tenant: &TenantId,
        _cap: usize,
    ) -> BoxFuture<'static, SlotDecision> {
        Box::pin(std::future::ready(SlotDecision::Granted))
    }

    /// Gives back a slot taken with [`Backplane::acquire_slot`] (whatever its
    /// decision was, except `Full`).
    fn release_slot(&self, _listener: ListenerId, _tenant: &TenantId) {}

    /// Takes one of the tenant's `cap` connection slots on every listener,
    /// cluster-wide (a tenant record's `max_connections`).
    fn acquire_tenant_slot(
        &self,
        _tenant: &TenantId,
        _cap: usize,
    ) -> BoxFuture<'static, SlotDecision> {
        Box::pin(std::future::ready(SlotDecision::Granted))
    }

    /// Gives back a slot taken with [`Backplane::acquire_tenant_slot`].
    fn release_tenant_slot(&self, _tenant: &TenantId) {}

    /// The node holding a session that is not on this node, if any.
    fn locate(&self, _session: &SessionId) -> BoxFuture<'static, Option<String>> {
        Box::pin(std::future::ready(None))
    }

    /// Sends an admin request to one other node (`Some(id)`) or to every other
    /// live node (`None`) and collects the replies that arrive within the
    /// implementation's timeout.
    fn call(
        &self,
        _node: Option<String>,
        _request: NodeRequest,
    ) -> BoxFuture<'static, Vec<NodeReply>> {
        Box::pin(std::future::ready(Vec::new()))
    }
}

/// The single-node backplane: nothing to tell anyone.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalBackplane;

impl Backplane for LocalBackplane {}

/// A message body on the wire between nodes (admin publishes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireDelivery {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

impl From<&Delivery> for WireDelivery {
    fn from(d: &Delivery) -> Self {
        match d {
            Delivery::Text(s) => WireDelivery::Text(s.to_string()),
            Delivery::Binary(b) => WireDelivery::Binary(b.to_vec()),
        }
    }
}

impl From<WireDelivery> for Delivery {
    fn from(d: WireDelivery) -> Self {
        match d {
            WireDelivery::Text(s) => Delivery::Text(s.into()),
            WireDelivery::Binary(b) => Delivery::Binary(b.into()),
        }
    }
}

/// Whom an admin publish on another node is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireTarget {
    /// One session (on the receiving node).
    Session(String),
    /// The receiving node's sessions of a tenant.
    Tenant(String),
    /// The receiving node's sessions of the listener.
    Global,
}

/// An admin request from another node, answered from this node's state only.
/// Listeners are named by path: nodes of a cluster share their listener table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NodeRequest {
    /// Local figures.
    Stats,
    /// Local (listener, tenant) rows.
    ListTenants,
    /// Local sessions of a tenant.
    ListSessions {
        /// The tenant.
        tenant: String,
    },
    /// One local session.
    GetSession {
        /// Session id.
        id: String,
    },
    /// Close one local session.
    Kick {
        /// Session id.
        id: String,
        /// Close code.
        code: u16,
    },
    /// Close a tenant's local sessions.
    KickTenant {
        /// The tenant.
        tenant: String,
        /// Only on this listener (path).
        listener: Option<String>,
        /// Only this user's sessions (`sub`).
        subject: Option<String>,
        /// Close code.
        code: u16,
    },
    /// Deliver an admin message to local sessions.
    Publish {
        /// Listener path.
        listener: String,
        /// Recipients.
        target: WireTarget,
        /// The message.
        delivery: WireDelivery,
    },
    /// The channels of a channel space with subscribers on this node.
    ListChannels {
        /// Listener path (a channels-mode listener).
        listener: String,
        /// The tenant (`None` on a global-scope listener).
        tenant: Option<String>,
    },
    /// This node's subscribers (and, with presence, present clients) of a
    /// channel.
    Channel {
        /// Listener path.
        listener: String,
        /// The tenant (`None` on a global-scope listener).
        tenant: Option<String>,
        /// The channel name.
        channel: String,
    },
    /// Subscribe one local session to a channel on the server's initiative,
    /// or end one of its subscriptions (push `unsubscribe`, reason `admin`).
    Subscription {
        /// Session id.
        id: String,
        /// The channel name.
        channel: String,
        /// End the subscription rather than add it.
        unsubscribe: bool,
    },
}

/// One row of a channel listing: a channel and its subscribers on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCount {
    /// The channel name.
    pub channel: String,
    /// Its subscribers.
    pub subscribers: usize,
}

/// One node's part of a cluster-wide figure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Open connections.
    pub connections: usize,
    /// Distinct tenant ids with a connection.
    pub tenants: Vec<String>,
    /// Messages accepted from clients.
    pub messages_in: u64,
    /// Messages written to clients.
    pub messages_out: u64,
    /// Messages dropped.
    pub dropped: u64,
}

/// A node's answer to a [`NodeRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", content = "value", rename_all = "snake_case")]
pub enum NodeReply {
    /// To `Stats`.
    Stats(NodeStats),
    /// To `ListTenants`.
    Tenants(Vec<TenantView>),
    /// To `ListSessions` and `GetSession`.
    Sessions(Vec<SessionView>),
    /// To `Kick`, `KickTenant`, `Publish` and `Subscription`: how many
    /// sessions it applied to.
    Count(usize),
    /// To `ListChannels`.
    Channels(Vec<ChannelCount>),
    /// To `Channel`.
    Channel(ChannelFacts),
    /// The node could not apply the request (it names something this node does
    /// not know); counts as nothing in merged answers.
    Refused(NodeError),
}

/// Why a node refused another node's admin request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", content = "value", rename_all = "snake_case")]
pub enum NodeError {
    /// No listener at this path here (nodes' listener tables differ).
    #[error("unknown listener {0:?}")]
    UnknownListener(String),
    /// A server-side subscription would open a channel beyond the tenant's
    /// `max_channels` on the node holding the session.
    #[error("the tenant's max_channels is reached")]
    MaxChannels,
    /// A channel name this node does not accept.
    #[error("invalid channel name {0:?}")]
    InvalidChannel(String),
    /// A close code this node does not send (nodes run different versions).
    #[error("unknown close code {0}")]
    UnknownCloseCode(u16),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip_as_json() {
        let reqs = [
            NodeRequest::Stats,
            NodeRequest::KickTenant {
                tenant: "t".into(),
                listener: Some("/ws".into()),
                subject: Some("alice".into()),
                code: 4003,
            },
            NodeRequest::Publish {
                listener: "/ws".into(),
                target: WireTarget::Session("id".into()),
                delivery: WireDelivery::Binary(vec![0, 255]),
            },
        ];
        for r in reqs {
            let s = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<NodeRequest>(&s).unwrap(), r, "{s}");
        }
        let rep = NodeReply::Stats(NodeStats {
            connections: 2,
            tenants: vec!["a".into()],
            ..Default::default()
        });
        let s = serde_json::to_string(&rep).unwrap();
        assert_eq!(serde_json::from_str::<NodeReply>(&s).unwrap(), rep);
        let rep = NodeReply::Refused(NodeError::UnknownListener("/x".into()));
        let s = serde_json::to_string(&rep).unwrap();
        assert_eq!(serde_json::from_str::<NodeReply>(&s).unwrap(), rep);
    }

    #[test]
    fn wire_delivery_keeps_the_frame_type() {
        for d in [
            Delivery::Text("héllo".into()),
            Delivery::Binary(vec![1, 2].into()),
        ] {
            assert_eq!(Delivery::from(WireDelivery::from(&d)), d);
        }
    }
}

/// A recording backplane for unit tests: clustered, with scripted answers.
#[cfg(test)]
pub(crate) mod probe {
    use std::sync::Mutex;

    use super::*;

    /// What the probe was told, in order.
    #[derive(Debug, Default)]
    pub struct Probe {
        /// Calls, as short strings (`publish_tenant L0 a x`...).
        pub calls: Mutex<Vec<String>>,
        /// Answer to `acquire_slot`.
        pub slot: Mutex<Option<SlotDecision>>,
        /// Answer to `call`.
        pub replies: Mutex<Vec<NodeReply>>,
        /// Answer to `locate`.
        pub owner: Mutex<Option<String>>,
    }

    impl Probe {
        fn log(&self, s: String) {
            self.calls.lock().unwrap().push(s);
        }

        /// Calls recorded so far, starting with `prefix`.
        pub fn seen(&self, prefix: &str) -> Vec<String> {
            let calls = self.calls.lock().unwrap();
            calls
                .iter()
                .filter(|c| c.starts_with(prefix))
                .cloned()
                .collect()
        }
    }

    fn text(d: &Delivery) -> String {
        match d {
            Delivery::Text(s) => s.to_string(),
            Delivery::Binary(b) => format!("{b:?}"),
        }
    }

    impl Backplane for Probe {
        fn is_clustered(&self) -> bool {
            true
        }
        fn publish_tenant(&self, l: ListenerId, t: &TenantId, d: &Delivery) {
            self.log(format!("publish_tenant {} {t} {}", l.0, text(d)));
        }
        fn publish_global(&self, l: ListenerId, d: &Delivery) {
            self.log(format!("publish_global {} {}", l.0, text(d)));
        }
        fn room_opened(&self, l: ListenerId, t: &TenantId) -> BoxFuture<'static, ()> {
            self.log(format!("room_opened {} {t}", l.0));
            Box::pin(std::future::ready(()))
        }
        fn room_closed(&self, l: ListenerId, t: &TenantId) {
            self.log(format!("room_closed {} {t}", l.0));
        }
        fn session_joined(&self, info: &SessionInfo) {
            self.log(format!("session_joined {}", info.tenant));
        }
        fn session_left(&self, info: &SessionInfo) {
            self.log(format!("session_left {}", info.tenant));
        }
        fn acquire_slot(
            &self,
            l: ListenerId,
            t: &TenantId,
            cap: usize,
        ) -> BoxFuture<'static, SlotDecision> {
            self.log(format!("acquire_slot {} {t} {cap}", l.0));
            let d = self.slot.lock().unwrap().unwrap_or(SlotDecision::Granted);
            Box::pin(std::future::ready(d))
        }
        fn release_slot(&self, l: ListenerId, t: &TenantId) {
            self.log(format!("release_slot {} {t}", l.0));
        }
        fn locate(&self, s: &SessionId) -> BoxFuture<'static, Option<String>> {
            self.log(format!("locate {s}"));
            Box::pin(std::future::ready(self.owner.lock().unwrap().clone()))
        }
        fn call(&self, node: Option<String>, r: NodeRequest) -> BoxFuture<'static, Vec<NodeReply>> {
            self.log(format!(
                "call {node:?} {}",
                serde_json::to_string(&r).unwrap()
            ));
            Box::pin(std::future::ready(self.replies.lock().unwrap().clone()))
        }
    }
}
