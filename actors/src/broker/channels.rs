//! The Broker's part in channels mode: it starts the channel hubs (one beside
//! each room of a tenant-scope channels listener, on the room's arbiter; one
//! per global-scope channels listener), hands a joining session its own hub,
//! answers the admin API's channel queries and commands, and moves a
//! session's deadline when it refreshed its token.
//!
//! A tenant hub with history outlives its room: when the room closes the hub
//! is parked (it keeps its streams; admin publications still reach it), a
//! new room takes it back, and it is stopped once it reports it went idle
//! while parked. A hub without history stops with its room.
//!
//! In a cluster the admin queries are cluster-wide: this node's hub answers
//! for its subscribers and every other node for its own (a
//! [`NodeRequest`] through the backplane), and the answers are summed; a
//! server-side subscription of a session on another node is applied there.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix::prelude::*;
use futures_core::future::BoxFuture;

use super::Broker;
use crate::backplane::{ChannelCount, HistoryError, NodeError, NodeReply, NodeRequest};
use crate::channels::codec::{StreamPosition, UnsubscribeReason};
use crate::channels::history::Page;
use crate::channels::hub::{ChannelHub, HubRoute, HubWentIdle, StopHub};
use crate::channels::name::ChannelName;
use crate::channels::presence::ChannelFacts;
use crate::channels::space::{
    ChannelSpace, ListChannels, LocalFacts, PublishLocal, Published, ReadHistory, ServerSubscribe,
    ServerUnsubscribe, StreamStatus,
};
use crate::delivery::Delivery;
use crate::ids::{ListenerId, Mode, Scope, SessionId, TenantId};

/// Names a channel space: a listener, and the tenant on a tenant-scope one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelSpaceKey {
    /// The channels-mode listener.
    pub listener: ListenerId,
    /// The tenant (`None` on a global-scope listener).
    pub tenant: Option<TenantId>,
}

/// An admin publication to a channel; returns how many queues took it here
/// plus, in a cluster, how many subscribers the other nodes have (the
/// publication itself reaches them on the channel's Redis channel, in order
/// with the clients' publications), and its offset (history on), or why the
/// cluster's history refused it.
#[derive(Message, Debug)]
#[rtype(result = "Result<Published, HistoryError>")]
pub struct PublishToChannel {
    /// The space.
    pub space: ChannelSpaceKey,
    /// The channel.
    pub channel: ChannelName,
    /// The `pub` push, serialized once.
    pub delivery: Delivery,
}

/// The channels of a space with their subscriber counts, cluster-wide.
#[derive(Message, Debug)]
#[rtype(result = "Vec<(ChannelName, usize)>")]
pub struct ListChannelSpace {
    /// The space.
    pub space: ChannelSpaceKey,
}

/// The subscribers of one channel of a space and, with presence, who they
/// are, cluster-wide (0 and nobody when nobody subscribes).
#[derive(Message, Debug)]
#[rtype(result = "ChannelFacts")]
pub struct ChannelDetail {
    /// The space.
    pub space: ChannelSpaceKey,
    /// The channel.
    pub channel: ChannelName,
}

/// A channel's stream in a space: position and kept count (`None`: history
/// off, or no stream).
#[derive(Message, Debug)]
#[rtype(result = "Option<(StreamPosition, usize)>")]
pub struct ChannelStreamStatus {
    /// The space.
    pub space: ChannelSpaceKey,
    /// The channel.
    pub channel: ChannelName,
}

/// The newest `limit` kept publications of a channel (`None`: history off).
#[derive(Message, Debug)]
#[rtype(result = "Option<Page>")]
pub struct ReadChannelHistory {
    /// The space.
    pub space: ChannelSpaceKey,
    /// The channel.
    pub channel: ChannelName,
    /// How many (all when `None`).
    pub limit: Option<u64>,
}

/// Subscribes a session to a channel on the server's initiative (`end` =
/// `None`), or ends one of its subscriptions (`Some(reason)`).
#[derive(Message, Debug)]
#[rtype(result = "SubscriptionChange")]
pub struct SessionSubscription {
    /// The session.
    pub id: SessionId,
    /// The channel.
    pub channel: ChannelName,
    /// Why the subscription ends, or `None` to subscribe.
    pub end: Option<UnsubscribeReason>,
}

/// What a [`SessionSubscription`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionChange {
    /// Subscribed, or the subscription ended (or there was none).
    Done,
    /// The session is not a channels session of this node.
    NoSession,
    /// The subscribe would open a channel beyond the tenant's
    /// `max_channels`; nothing changed.
    MaxChannels,
}

/// A session refreshed its token: its expiry is now `expires_at`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct TokenRefreshed {
    /// The session.
    pub id: SessionId,
    /// The new token's deadline (`None`: no expiry).
    pub expires_at: Option<SystemTime>,
}

impl Broker {
    /// Whether `listener` speaks the channels protocol.
    fn is_channels(&self, listener: ListenerId) -> bool {
        self.policy(listener)
            .is_some_and(|p| p.mode == Mode::Channels)
    }

    /// The hub for a new room of a tenant-scope channels listener: the
    /// parked one, or one started on `arbiter` (the room's); `None` for any
    /// other room.
    pub(super) fn tenant_hub(
        &mut self,
        listener: ListenerId,
        tenant: &TenantId,
        arbiter: Option<&ArbiterHandle>,
    ) -> Option<HubRoute> {
        let scoped = self
            .policy(listener)
            .is_some_and(|p| p.mode == Mode::Channels && p.scope == Scope::Tenant);
        if !scoped {
            return None;
        }
        let parked = self.parked_hubs.remove(&(listener, tenant.clone()));
        Some(parked.unwrap_or_else(|| self.start_hub(listener, Some(tenant.clone()), arbiter)))
    }

    /// A tenant's room closed: its hub stops, or is parked when it keeps
    /// history.
    pub(super) fn retire_hub(&mut self, key: &(ListenerId, TenantId), hub: Option<HubRoute>) {
        let Some(route) = hub else {
            return;
        };
        if self.policy(key.0).is_some_and(|p| p.history.is_some()) {
            self.parked_hubs.insert(key.clone(), route);
        } else {
            route.hub.do_send(StopHub);
        }
    }

    /// The hub of a space, started (and parked) when the space has none yet
    /// and its listener keeps history: publications to channels nobody
    /// subscribes to here are kept too.
    fn hub_or_park(&mut self, space: &ChannelSpaceKey) -> Option<Addr<ChannelHub>> {
        if let Some(h) = self.hub(space.listener, space.tenant.as_ref()) {
            return Some(h);
        }
        let history = self
            .policy(space.listener)
            .is_some_and(|p| p.mode == Mode::Channels && p.history.is_some());
        let tenant = space.tenant.clone()?;
        if !history {
            return None;
        }
        let arbiter = self.next_arbiter();
        let route = self.start_hub(space.listener, Some(tenant.clone()), arbiter.as_ref());
        let hub = route.hub.clone();
        self.parked_hubs.insert((space.listener, tenant), route);
        Some(hub)
    }

    fn start_hub(
        &self,
        listener: ListenerId,
        tenant: Option<TenantId>,
        arbiter: Option<&ArbiterHandle>,
    ) -> HubRoute {
        let mut space = ChannelSpace::new(listener, tenant.clone(), self.counters.clone())
            .with_backplane(self.config.backplane.clone())
            .with_limits(self.config.channel_limits.clone());
        if let Some(policy) = self.policy(listener) {
            space = space.with_listener(policy);
        }
        if let Some(limits) = self.policy(listener).and_then(|p| p.history) {
            space = space.with_history(limits);
        }
        let mut hub = ChannelHub::new(
            space,
            self.config.room_queue,
            self.config.slow_consumer_timeout,
        )
        .with_prune_every(self.config.history_prune);
        let me = self.me.as_ref().and_then(actix::WeakAddr::upgrade);
        if let (Some(_), Some(me)) = (&tenant, me) {
            hub = hub.with_owner(me.recipient());
        }
        let gate = hub.gate();
        let hub = match arbiter {
            None => hub.start(),
            Some(a) => ChannelHub::start_in_arbiter(a, |_| hub),
        };
        HubRoute { hub, gate }
    }

    /// One hub per global-scope channels listener, for the Broker's life.
    pub(super) fn start_global_hubs(&mut self) {
        let policies = self.policies.clone();
        self.global_hubs = policies
            .iter()
            .map(|p| {
                (p.mode == Mode::Channels && p.scope == Scope::Global).then(|| {
                    let arbiter = self.next_arbiter();
                    self.start_hub(p.id, None, arbiter.as_ref())
                })
            })
            .collect();
    }

    /// The hub of a space, when it exists on this node: a global-scope
    /// listener's own, or the hub beside the tenant's room.
    pub(super) fn hub(
        &self,
        listener: ListenerId,
        tenant: Option<&TenantId>,
    ) -> Option<Addr<ChannelHub>> {
        self.hub_route(listener, tenant).map(|r| r.hub)
    }

    fn hub_route(&self, listener: ListenerId, tenant: Option<&TenantId>) -> Option<HubRoute> {
        if let Some(Some(h)) = self.global_hubs.get(usize::from(listener.0)) {
            return Some(h.clone());
        }
        let key = (listener, tenant?.clone());
        match self.rooms.get(&key) {
            Some(room) => room.hub.clone(),
            None => self.parked_hubs.get(&key).cloned(),
        }
    }

    /// The hub a session of `listener`/`tenant` uses.
    pub(super) fn session_hub(&self, listener: ListenerId, tenant: &TenantId) -> Option<HubRoute> {
        if !self.is_channels(listener) {
            return None;
        }
        self.hub_route(listener, Some(tenant))
    }
}

impl Broker {
    /// Asks every other node, in a cluster; nobody otherwise.
    fn ask_others(&self, request: NodeRequest) -> BoxFuture<'static, Vec<NodeReply>> {
        if !self.backplane().is_clustered() {
            return Box::pin(async { Vec::new() });
        }
        self.backplane().call(None, request)
    }

    /// The space key on the wire: the listener's path and the tenant.
    fn wire_space(&self, space: &ChannelSpaceKey) -> (String, Option<String>) {
        let path = self
            .policy(space.listener)
            .map(|p| p.path.to_string())
            .unwrap_or_default();
        (path, space.tenant.as_ref().map(ToString::to_string))
    }

    /// A space named by another node.
    fn space_named(
        &self,
        listener: String,
        tenant: Option<String>,
    ) -> Result<ChannelSpaceKey, NodeError> {
        Ok(ChannelSpaceKey {
            listener: self.listener_named(listener)?,
            tenant: tenant.map(TenantId::new),
        })
    }

    /// This node's channels of a space.
    fn local_channels(
        &self,
        space: &ChannelSpaceKey,
    ) -> BoxFuture<'static, Vec<(ChannelName, usize)>> {
        let hub = self.hub(space.listener, space.tenant.as_ref());
        Box::pin(async move {
            match hub {
                Some(h) => h.send(ListChannels).await.unwrap_or_default(),
                None => Vec::new(),
            }
        })
    }

    /// This node's facts of a channel.
    fn local_facts(
        &self,
        space: &ChannelSpaceKey,
        channel: ChannelName,
    ) -> BoxFuture<'static, ChannelFacts> {
        let hub = self.hub(space.listener, space.tenant.as_ref());
        Box::pin(async move {
            match hub {
                Some(h) => h.send(LocalFacts { channel }).await.unwrap_or_default(),
                None => ChannelFacts::default(),
            }
        })
    }

    /// Applies a server-side (un)subscription to a session of this node.
    fn local_subscription(
        &self,
        msg: SessionSubscription,
    ) -> BoxFuture<'static, SubscriptionChange> {
        let found = self.sessions.get(&msg.id).and_then(|e| {
            let route = self.session_hub(e.info.listener, &e.info.tenant)?;
            let subject = e.info.subject.as_deref().map(Arc::from);
            Some((route.hub, e.outbox.clone(), subject))
        });
        Box::pin(async move {
            let Some((hub, outbox, subject)) = found else {
                return SubscriptionChange::NoSession;
            };
            // A hub that is gone took its sessions with it.
            let done = match msg.end {
                None => hub
                    .send(ServerSubscribe {
                        session: msg.id,
                        outbox,
                        channel: msg.channel,
                        subject,
                    })
                    .await
                    .map(|subscribed| {
                        if subscribed {
                            SubscriptionChange::Done
                        } else {
                            SubscriptionChange::MaxChannels
                        }
                    }),
                Some(reason) => hub
                    .send(ServerUnsubscribe {
                        session: msg.id,
                        channel: msg.channel,
                        reason,
                    })
                    .await
                    .map(|_| SubscriptionChange::Done),
            };
            done.unwrap_or(SubscriptionChange::NoSession)
        })
    }

    /// Answers another node's `ListChannels` from this node's hub.
    pub(super) fn answer_list_channels(
        &self,
        listener: String,
        tenant: Option<String>,
    ) -> Result<ResponseFuture<NodeReply>, NodeError> {
        let rows = self.local_channels(&self.space_named(listener, tenant)?);
        Ok(Box::pin(async move {
            NodeReply::Channels(
                rows.await
                    .into_iter()
                    .map(|(c, n)| ChannelCount {
                        channel: c.as_str().to_owned(),
                        subscribers: n,
                    })
                    .collect(),
            )
        }))
    }

    /// Answers another node's `Channel` from this node's hub.
    pub(super) fn answer_channel(
        &self,
        listener: String,
        tenant: Option<String>,
        channel: String,
    ) -> Result<ResponseFuture<NodeReply>, NodeError> {
        let facts = self.local_facts(&self.space_named(listener, tenant)?, wire_channel(channel)?);
        Ok(Box::pin(async move { NodeReply::Channel(facts.await) }))
    }

    /// Applies another node's `Subscription` to a session of this node.
    pub(super) fn answer_subscription(
        &self,
        id: String,
        channel: String,
        unsubscribe: bool,
    ) -> Result<ResponseFuture<NodeReply>, NodeError> {
        let done = self.local_subscription(SessionSubscription {
            id: SessionId::from_string(id),
            channel: wire_channel(channel)?,
            end: unsubscribe.then_some(UnsubscribeReason::Admin),
        });
        Ok(Box::pin(async move {
            match done.await {
                SubscriptionChange::Done => NodeReply::Count(1),
                SubscriptionChange::NoSession => NodeReply::Count(0),
                SubscriptionChange::MaxChannels => NodeReply::Refused(NodeError::MaxChannels),
            }
        }))
    }
}

/// A channel name another node sent.
fn wire_channel(c: String) -> Result<ChannelName, NodeError> {
    ChannelName::parse(&c).map_err(|_| NodeError::InvalidChannel(c))
}

impl Handler<PublishToChannel> for Broker {
    type Result = ResponseFuture<Result<Published, HistoryError>>;

    fn handle(&mut self, msg: PublishToChannel, _ctx: &mut Self::Context) -> Self::Result {
        let hub = self.hub_or_park(&msg.space);
        let (listener, tenant) = self.wire_space(&msg.space);
        let remote = self.ask_others(NodeRequest::Channel {
            listener,
            tenant,
            channel: msg.channel.as_str().to_owned(),
        });
        Box::pin(async move {
            let mut published = match hub {
                Some(h) => h
                    .send(PublishLocal {
                        channel: msg.channel,
                        delivery: msg.delivery,
                        forward: true,
                        position: None,
                    })
                    .await
                    .unwrap_or(Ok(Published::default()))?,
                None => Published::default(),
            };
            published.delivered += ChannelFacts::default().sum(remote.await).subscribers;
            Ok(published)
        })
    }
}

impl Handler<ChannelStreamStatus> for Broker {
    type Result = ResponseFuture<Option<(StreamPosition, usize)>>;

    fn handle(&mut self, msg: ChannelStreamStatus, _ctx: &mut Self::Context) -> Self::Result {
        let hub = self.hub(msg.space.listener, msg.space.tenant.as_ref());
        Box::pin(async move {
            let status = StreamStatus {
                channel: msg.channel,
            };
            hub?.send(status).await.ok().flatten()
        })
    }
}

impl Handler<ReadChannelHistory> for Broker {
    type Result = ResponseFuture<Option<Page>>;

    fn handle(&mut self, msg: ReadChannelHistory, _ctx: &mut Self::Context) -> Self::Result {
        let hub = self.hub_or_park(&msg.space);
        Box::pin(async move {
            let read = ReadHistory {
                channel: msg.channel,
                limit: msg.limit,
            };
            hub?.send(read).await.ok().flatten()
        })
    }
}

impl Handler<HubWentIdle> for Broker {
    type Result = ();

    fn handle(&mut self, msg: HubWentIdle, _ctx: &mut Self::Context) {
        // Only a parked hub goes: one beside a live room stays with it.
        let key = (msg.listener, msg.tenant);
        if self.parked_hubs.get(&key).is_some_and(|r| r.hub == msg.hub) {
            self.parked_hubs.remove(&key);
            msg.hub.do_send(StopHub);
        }
    }
}

impl Handler<ListChannelSpace> for Broker {
    type Result = ResponseFuture<Vec<(ChannelName, usize)>>;

    fn handle(&mut self, msg: ListChannelSpace, _ctx: &mut Self::Context) -> Self::Result {
        let local = self.local_channels(&msg.space);
        let (listener, tenant) = self.wire_space(&msg.space);
        let remote = self.ask_others(NodeRequest::ListChannels { listener, tenant });
        Box::pin(async move { merge_channels(local.await, remote.await) })
    }
}

/// Sums this node's and the other nodes' counts per channel, sorted by name.
fn merge_channels(
    local: Vec<(ChannelName, usize)>,
    replies: Vec<NodeReply>,
) -> Vec<(ChannelName, usize)> {
    let mut all: std::collections::BTreeMap<ChannelName, usize> = local.into_iter().collect();
    for r in replies {
        let NodeReply::Channels(rows) = r else {
            continue;
        };
        for row in rows {
            if let Ok(c) = ChannelName::parse(&row.channel) {
                *all.entry(c).or_default() += row.subscribers;
            }
        }
    }
    all.into_iter().collect()
}

impl Handler<ChannelDetail> for Broker {
    type Result = ResponseFuture<ChannelFacts>;

    fn handle(&mut self, msg: ChannelDetail, _ctx: &mut Self::Context) -> Self::Result {
        let local = self.local_facts(&msg.space, msg.channel.clone());
        let (listener, tenant) = self.wire_space(&msg.space);
        let remote = self.ask_others(NodeRequest::Channel {
            listener,
            tenant,
            channel: msg.channel.as_str().to_owned(),
        });
        Box::pin(async move { local.await.sum(remote.await) })
    }
}

impl Handler<SessionSubscription> for Broker {
    type Result = ResponseFuture<SubscriptionChange>;

    fn handle(&mut self, msg: SessionSubscription, _ctx: &mut Self::Context) -> Self::Result {
        if self.sessions.contains_key(&msg.id) {
            return self.local_subscription(msg);
        }
        let request = NodeRequest::Subscription {
            id: msg.id.to_string(),
            channel: msg.channel.as_str().to_owned(),
            unsubscribe: msg.end.is_some(),
        };
        let outcome = |replies: Vec<NodeReply>| {
            if replies
                .iter()
                .any(|r| matches!(r, NodeReply::Count(n) if *n > 0))
            {
                SubscriptionChange::Done
            } else if replies.contains(&NodeReply::Refused(NodeError::MaxChannels)) {
                SubscriptionChange::MaxChannels
            } else {
                SubscriptionChange::NoSession
            }
        };
        let missing = SubscriptionChange::NoSession;
        self.on_owner(&msg.id, request, None, outcome, missing)
    }
}

impl Handler<TokenRefreshed> for Broker {
    type Result = ();

    fn handle(&mut self, msg: TokenRefreshed, ctx: &mut Self::Context) {
        let Some(entry) = self.sessions.get_mut(&msg.id) else {
            return;
        };
        let mut info = (*entry.info).clone();
        info.expires_at = msg.expires_at;
        let info = Arc::new(info);
        entry.info = info.clone();
        if let Some(key) = entry.timer.take() {
            self.deadlines.remove(key);
        }
        let Some(policy) = self.policy(info.listener).cloned() else {
            return;
        };
        let timer = Self::deadline(&policy, &info).map(|(at, code)| {
            let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
            self.deadlines
                .insert(Instant::now() + wait, (info.id.clone(), code))
        });
        if let Some(entry) = self.sessions.get_mut(&msg.id) {
            entry.timer = timer;
        }
        self.arm_alarm(ctx);
    }
}
