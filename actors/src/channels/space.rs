//! A channel space: the channels of one tenant of a listener (owned by its
//! TenantRoom) or of a whole global-scope listener (owned by the listener's
//! [`super::hub::ChannelHub`]), with the messages that act on it.
//!
//! The owner is the only holder of the space, and every message reaches it
//! through the owner's address, which a session gets from the Broker at join
//! time for its own tenant; so a channel key never leaves the space it was
//! named in, and `news` of tenant A and `news` of tenant B never meet.
//!
//! Replies to `subscribe` and `unsubscribe` are pushed into the session's
//! outbox by the space itself, in the same step that changes the table: no
//! publication of a channel can follow the reply to its `unsubscribe`, and
//! every publication after a `subscribe` reply reaches the subscriber.
//!
//! Presence ([`super::presence`]) rides on the same steps: a subscription
//! added or removed here is a join or a leave, pushed to the channel's other
//! subscribers on this node and, through the backplane, on the others.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytestring::ByteString;
use futures_core::future::BoxFuture;

use super::codec::{self, CommandId, StreamPosition, UnsubscribeReason};
use super::counters::RecoveryResult;
use super::history::{History, HistoryLimits};
use super::limits::{NoChannelLimits, TenantChannelLimits};
use super::name::ChannelName;
use super::permissions::{AccessRules, Grants};
use super::presence::{self, ChannelFacts, Event, Presence, PresenceMode};
use super::recovery::{Answer, Recoveries};
use super::table::{ChannelTable, Subscribed, SubscriptionOrigin, Unsubscribed};
use super::ChannelError;
use super::ErrorCode;
use crate::backplane::{Backplane, LocalBackplane, NodeRequest};
use crate::close::CloseCode;
use crate::counters::{Counters, DropReason};
use crate::delivery::Delivery;
use crate::ids::{ListenerId, SessionId, TenantId};
use crate::outbox::{Outbox, PushError};
use crate::policy::ListenerPolicy;

/// What a session asks of its channel space. Fire-and-forget: the space
/// answers through the session's outbox.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum ChannelOp {
    /// A client `subscribe` (permission already checked by the session).
    Subscribe {
        /// The session.
        session: SessionId,
        /// Its queue.
        outbox: Outbox,
        /// The channel.
        channel: ChannelName,
        /// The command to answer.
        reply: CommandId,
        /// `since`, when given (recovery from history).
        since: Option<StreamPosition>,
        /// `max_per_session`.
        max: usize,
        /// The token's `sub` (presence).
        subject: Option<Arc<str>>,
    },
    /// A client `unsubscribe`.
    Unsubscribe {
        /// The session.
        session: SessionId,
        /// Its queue.
        outbox: Outbox,
        /// The channel.
        channel: ChannelName,
        /// The command to answer.
        reply: CommandId,
    },
    /// A client `presence` (permission checked and presence on: the
    /// session's part). Answered once the other nodes answered, in a cluster.
    Presence {
        /// The session.
        session: SessionId,
        /// Its queue.
        outbox: Outbox,
        /// The channel.
        channel: ChannelName,
        /// The command to answer.
        reply: CommandId,
    },
    /// A client `publish` (permission already checked by the session).
    Publish {
        /// The channel.
        channel: ChannelName,
        /// The `pub` push, serialized once.
        delivery: Delivery,
        /// The publisher, its queue and its command, answered after the fan-out.
        reply: Option<(SessionId, Outbox, CommandId)>,
    },
    /// A client `history` (history on, permission already checked).
    History {
        /// The session.
        session: SessionId,
        /// Its queue.
        outbox: Outbox,
        /// The channel.
        channel: ChannelName,
        /// The command to answer.
        reply: CommandId,
        /// The newest `limit` publications (all when `None`).
        limit: Option<u64>,
        /// Only those after this position (when its epoch is the stream's).
        since: Option<StreamPosition>,
    },
    /// A refresh replaced the session's permissions: end the client
    /// subscriptions they no longer allow (push `unsubscribe`/`forbidden`).
    Recheck {
        /// The session.
        session: SessionId,
        /// The listener's rules.
        rules: AccessRules,
        /// The new token's grants.
        grants: Arc<Grants>,
    },
    /// The session is gone: drop its subscriptions.
    Leave {
        /// The session.
        session: SessionId,
    },
}

/// What a publication came to on this node.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Published {
    /// Queues of this node that took it (or will, once drained).
    pub delivered: usize,
    /// Its offset in the channel's stream (history on).
    pub offset: Option<u64>,
}

impl ChannelOp {
    /// The channel and command of an operation that needs subscribe
    /// permission on its channel (`subscribe`, `history`, `presence`): with
    /// `subscribe = "hook"` the session asks the backend before handing it
    /// to the hub. No catch-all arm: a new operation must say whether it
    /// needs that permission.
    pub fn needs_subscribe_permission(&self) -> Option<(&ChannelName, CommandId)> {
        match self {
            ChannelOp::Subscribe { channel, reply, .. }
            | ChannelOp::History { channel, reply, .. }
            | ChannelOp::Presence { channel, reply, .. } => Some((channel, *reply)),
            ChannelOp::Unsubscribe { .. }
            | ChannelOp::Publish { .. }
            | ChannelOp::Recheck { .. }
            | ChannelOp::Leave { .. } => None,
        }
    }
}

/// Publishes to a channel of this space (admin publish, a publication from
/// another node). Fails only when the cluster's history cannot number it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Published, crate::backplane::HistoryError>")]
pub struct PublishLocal {
    /// The channel.
    pub channel: ChannelName,
    /// The `pub` push.
    pub delivery: Delivery,
    /// Hand it to the other nodes too (false for what came from one).
    pub forward: bool,
    /// Its position in the cluster's stream (a numbered publication from
    /// the cluster).
    pub position: Option<StreamPosition>,
}

/// A server-side subscription (admin API): pushes `{"push": "subscribe"}`,
/// ignores `max_per_session`, survives refreshes. Returns false, and changes
/// nothing, when it would open a channel beyond the tenant's `max_channels`.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct ServerSubscribe {
    /// The session.
    pub session: SessionId,
    /// Its queue.
    pub outbox: Outbox,
    /// The channel.
    pub channel: ChannelName,
    /// The session's `sub` (presence).
    pub subject: Option<Arc<str>>,
}

/// Ends a subscription on the server's initiative (push `unsubscribe` with
/// the reason). Returns whether the session was subscribed.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct ServerUnsubscribe {
    /// The session.
    pub session: SessionId,
    /// The channel.
    pub channel: ChannelName,
    /// Why.
    pub reason: UnsubscribeReason,
}

/// The channels of this space with their subscriber counts.
#[derive(Message, Debug)]
#[rtype(result = "Vec<(ChannelName, usize)>")]
pub struct ListChannels;

/// The subscriber count of one channel (0 when nobody subscribes).
#[derive(Message, Debug)]
#[rtype(result = "usize")]
pub struct CountSubscribers {
    /// The channel.
    pub channel: ChannelName,
}

/// A channel's stream: epoch, last offset and kept publications (`None`
/// when history is off or the channel has no stream here).
#[derive(Message, Debug)]
#[rtype(result = "Option<(StreamPosition, usize)>")]
pub struct StreamStatus {
    /// The channel.
    pub channel: ChannelName,
}

/// The newest `limit` kept publications of a channel (admin API): the
/// position and the `pub` pushes, oldest first; `None` when history is off.
#[derive(Message, Debug)]
#[rtype(result = "Option<super::history::Page>")]
pub struct ReadHistory {
    /// The channel.
    pub channel: ChannelName,
    /// How many (all when `None`).
    pub limit: Option<u64>,
}

/// This node's subscriber count and present clients of one channel.
#[derive(Message, Debug)]
#[rtype(result = "ChannelFacts")]
pub struct LocalFacts {
    /// The channel.
    pub channel: ChannelName,
}

/// A reply that needs other nodes' answers first: the owner awaits it outside
/// its message handling, then hands it to [`ChannelSpace::reply_to`].
pub type LaterReply = BoxFuture<'static, (SessionId, Outbox, String)>;

/// The channels of one tenant (or of a global listener) and their subscribers.
#[derive(Debug)]
pub struct ChannelSpace {
    listener: ListenerId,
    /// The listener's path (names it in requests to other nodes).
    path: Arc<str>,
    /// Who is subscribed, when the listener tracks it.
    presence: Presence,
    /// `None` for a global-scope listener's space.
    tenant: Option<TenantId>,
    table: ChannelTable,
    counters: Arc<Counters>,
    backplane: Arc<dyn Backplane>,
    /// The tenant's `max_channels` (read when a subscribe would open a channel).
    limits: Arc<dyn TenantChannelLimits>,
    /// Pushes waiting for a full queue (see [`ChannelSpace::take_held`]).
    held: Vec<(SessionId, Outbox, Delivery)>,
    /// The channels' streams (history on, kept here).
    history: Option<History>,
    /// History on, kept by the cluster (see [`cluster_history`]).
    cluster: Option<HistoryLimits>,
    /// Subscribers waiting for a stream read in the cluster.
    recoveries: Recoveries,
    /// Cluster round trips to run (see [`ChannelSpace::take_jobs`]).
    jobs: Vec<cluster_history::Job>,
    /// The last numbered publication of each subscribed channel (gaps).
    seen: std::collections::HashMap<ChannelName, StreamPosition>,
}

mod cluster_history;
pub use cluster_history::{Done, Job};

impl ChannelSpace {
    /// An empty space.
    pub fn new(listener: ListenerId, tenant: Option<TenantId>, counters: Arc<Counters>) -> Self {
        Self {
            listener,
            path: Arc::from(""),
            presence: Presence::default(),
            tenant,
            table: ChannelTable::new(),
            counters,
            backplane: Arc::new(LocalBackplane),
            limits: Arc::new(NoChannelLimits),
            held: Vec::new(),
            history: None,
            cluster: None,
            recoveries: Recoveries::new(),
            jobs: Vec::new(),
            seen: std::collections::HashMap::new(),
        }
    }

    /// A client subscribe that would open a channel beyond the tenant's
    /// `max_channels` (as `limits` says at that moment) is `limit_exceeded`.
    pub fn with_limits(mut self, limits: Arc<dyn TenantChannelLimits>) -> Self {
        self.limits = limits;
        self
    }

    /// Whether subscribing to `channel` would open one channel too many for
    /// the tenant: only a channel nobody subscribes to here counts, so the
    /// channels that exist stay joinable at the limit.
    fn beyond_max_channels(&self, channel: &ChannelName) -> bool {
        let Some(tenant) = &self.tenant else {
            return false;
        };
        self.table.subscriber_count(channel) == 0
            && self
                .limits
                .max_channels(tenant)
                .is_some_and(|max| self.table.channel_count() >= max)
    }

    /// Keeps each channel's recent publications (`history_size`,
    /// `history_ttl_s`).
    /// `with_backplane` first: a backplane that keeps history keeps it.
    pub fn with_history(mut self, limits: HistoryLimits) -> Self {
        if self.backplane.keeps_history() {
            self.cluster = Some(limits);
        } else {
            self.history = Some(History::new(limits, self.counters.clone(), self.listener));
        }
        self
    }

    /// Whether history is on (kept here or in the cluster).
    pub fn history_on(&self) -> bool {
        self.history.is_some() || self.cluster.is_some()
    }

    /// The history, when on.
    pub fn history(&mut self) -> Option<&mut History> {
        self.history.as_mut()
    }

    /// Publications cross nodes through `backplane`; a channel is received
    /// from other nodes while it has a subscriber here.
    pub fn with_backplane(mut self, backplane: Arc<dyn Backplane>) -> Self {
        self.backplane = backplane;
        self
    }

    /// Follows the listener's presence settings and names it by its path to
    /// other nodes.
    pub fn with_listener(mut self, policy: &ListenerPolicy) -> Self {
        self.path = policy.path.clone();
        self.presence = Presence::new(policy.presence);
        self
    }

    /// Assigns the publication its offset (history on), delivers it here,
    /// then hands it to the other nodes.
    pub fn publish_everywhere(&mut self, channel: &ChannelName, delivery: &Delivery) -> Published {
        let subscribed = self.table.subscriber_count(channel) > 0;
        let kept = self
            .history
            .as_mut()
            .and_then(|h| h.append(channel, delivery, subscribed, Instant::now()));
        let (offset, delivery) = match &kept {
            Some((offset, d)) => (Some(*offset), d),
            None => (None, delivery),
        };
        let delivered = self.publish(channel, delivery);
        self.backplane
            .publish_channel(self.listener, self.tenant.as_ref(), channel, delivery);
        Published { delivered, offset }
    }

    /// Drops expired publications and unused streams.
    pub fn prune(&mut self) {
        let table = &self.table;
        if let Some(h) = self.history.as_mut() {
            h.prune(Instant::now(), |c| table.subscriber_count(c) > 0);
        }
    }

    /// Nothing left here: no subscription and no stream.
    pub fn is_idle(&self) -> bool {
        self.table.subscription_count() == 0 && self.history.as_ref().is_none_or(History::is_empty)
    }

    /// The table (admin listings, tests).
    pub fn table(&self) -> &ChannelTable {
        &self.table
    }

    /// Applies a session's operation; a reply that waits for other nodes is
    /// returned for the owner to await.
    pub fn apply(&mut self, op: ChannelOp) -> Option<LaterReply> {
        match op {
            ChannelOp::Subscribe {
                session,
                outbox,
                channel,
                reply,
                since,
                max,
                subject,
            } => {
                if self.beyond_max_channels(&channel) {
                    let e = ChannelError {
                        message: "the tenant's max_channels is reached".into(),
                        ..ChannelError::new(ErrorCode::LimitExceeded)
                    };
                    self.answer(&session, &outbox, codec::reply_err(Some(reply), &e));
                    return None;
                }
                let outcome = self.table.subscribe(
                    &session,
                    &outbox,
                    &channel,
                    SubscriptionOrigin::Client,
                    max,
                );
                if let Subscribed::Added { first } = outcome {
                    self.opened(&session, subject.as_ref(), &channel, first);
                }
                let text = match outcome {
                    Subscribed::LimitExceeded => {
                        codec::reply_err(Some(reply), &ChannelError::new(ErrorCode::LimitExceeded))
                    }
                    Subscribed::Added { .. } | Subscribed::Already if self.cluster.is_some() => {
                        self.wait(&channel, &session, &outbox, Answer::Reply(reply), since);
                        return None;
                    }
                    Subscribed::Added { .. } | Subscribed::Already
                        if self.backplane.is_clustered() =>
                    {
                        // Answered once this node receives the channel's
                        // publications from the other nodes (its Redis
                        // SUBSCRIBE is confirmed): one published anywhere
                        // after the reply reaches the subscriber.
                        let text = self.subscribe_reply(reply, &channel, since.as_ref());
                        let ready = self.backplane.channel_ready(
                            self.listener,
                            self.tenant.as_ref(),
                            &channel,
                        );
                        return Some(Box::pin(async move {
                            ready.await;
                            (session, outbox, text)
                        }));
                    }
                    Subscribed::Added { .. } | Subscribed::Already => {
                        self.subscribe_reply(reply, &channel, since.as_ref())
                    }
                };
                self.answer(&session, &outbox, text);
            }
            ChannelOp::Unsubscribe {
                session,
                outbox,
                channel,
                reply,
            } => {
                let outcome = self.table.unsubscribe(&session, &channel);
                self.recoveries.cancel(&channel, &session);
                self.closed(&session, &channel, outcome);
                self.answer(&session, &outbox, codec::reply_empty(reply));
            }
            ChannelOp::Presence {
                session,
                outbox,
                channel,
                reply,
            } => return self.presence(session, outbox, &channel, reply),
            ChannelOp::Publish {
                channel,
                delivery,
                reply,
            } => {
                if self.cluster.is_some() {
                    self.append(&channel, &delivery, reply);
                    return None;
                }
                let published = self.publish_everywhere(&channel, &delivery);
                if let Some((session, outbox, id)) = reply {
                    let text = match published.offset {
                        Some(offset) => {
                            codec::reply_ok(id, &serde_json::json!({ "offset": offset }))
                        }
                        None => codec::reply_empty(id),
                    };
                    self.answer(&session, &outbox, text);
                }
            }
            ChannelOp::History {
                session,
                outbox,
                channel,
                reply,
                limit,
                since,
            } => {
                if self.cluster.is_some() {
                    self.query(channel, session, outbox, reply, limit, since);
                    return None;
                }
                let text = match self.history.as_mut() {
                    Some(h) => {
                        let page = h.query(&channel, limit, since.as_ref(), Instant::now());
                        let p = &page.position;
                        codec::history_reply(
                            reply,
                            &channel,
                            codec::Position {
                                epoch: &p.epoch,
                                offset: p.offset,
                            },
                            page.publications.as_ref().map(|l| l.iter().map(|b| &**b)),
                        )
                    }
                    None => {
                        codec::reply_err(Some(reply), &ChannelError::new(ErrorCode::NotAvailable))
                    }
                };
                self.answer(&session, &outbox, text);
            }
            ChannelOp::Recheck {
                session,
                rules,
                grants,
            } => {
                for channel in self.table.client_channels(&session) {
                    if !rules.may_subscribe(&grants, &channel) {
                        self.end(&session, &channel, UnsubscribeReason::Forbidden);
                    }
                }
            }
            ChannelOp::Leave { session } => self.leave(&session),
        }
        None
    }

    /// This node's facts of `channel`.
    pub fn facts(&self, channel: &ChannelName) -> ChannelFacts {
        ChannelFacts {
            subscribers: self.table.subscriber_count(channel),
            clients: self
                .presence
                .clients(self.table.subscribers(channel).map(|(id, _)| id)),
        }
    }

    /// Answers a `presence` op: now on a single node, once the other nodes
    /// answered in a cluster.
    fn presence(
        &mut self,
        session: SessionId,
        outbox: Outbox,
        channel: &ChannelName,
        reply: CommandId,
    ) -> Option<LaterReply> {
        let local = self.facts(channel);
        if !self.backplane.is_clustered() {
            self.answer(&session, &outbox, presence::reply(reply, &local.clients));
            return None;
        }
        let request = NodeRequest::Channel {
            listener: self.path.to_string(),
            tenant: self.tenant.as_ref().map(ToString::to_string),
            channel: channel.as_str().to_owned(),
        };
        let replies = self.backplane.call(None, request);
        Some(Box::pin(async move {
            let all = ChannelFacts::sum(local, replies.await);
            (session, outbox, presence::reply(reply, &all.clients))
        }))
    }

    /// Pushes a reply computed later (see [`LaterReply`]).
    pub fn reply_to(&mut self, session: &SessionId, outbox: &Outbox, text: String) {
        self.answer(session, outbox, text);
    }

    /// Drops every subscription of `session`.
    pub fn leave(&mut self, session: &SessionId) {
        self.recoveries.cancel_session(session);
        let left = match self.presence.mode() {
            PresenceMode::JoinLeave => self.table.channels_of(session),
            PresenceMode::On | PresenceMode::Off => Vec::new(),
        };
        let (removed, emptied) = self.table.remove_session(session);
        let gauges = &self.counters.listener(self.listener).channels;
        gauges.add_subscriptions(-(removed as i64));
        gauges.add_channels(-(emptied.len() as i64));
        for channel in &emptied {
            self.channel_gone(channel);
        }
        for channel in &left {
            self.announce(Event::Leave, channel, session);
        }
        self.presence.forget(session);
    }

    /// Delivers a publication to every subscriber of `channel` here. A
    /// subscriber whose queue is full gets it once it has drained (see
    /// [`ChannelSpace::take_held`]). Returns how many queues took it or will.
    pub fn publish(&mut self, channel: &ChannelName, delivery: &Delivery) -> usize {
        self.publish_at(channel, delivery, None)
    }

    /// [`ChannelSpace::publish`] of a publication numbered `position` in the
    /// cluster's stream: held for the subscribers still waiting for their
    /// read of the stream.
    pub fn publish_at(
        &mut self,
        channel: &ChannelName,
        delivery: &Delivery,
        position: Option<&StreamPosition>,
    ) -> usize {
        self.fan_out(channel, delivery, position, None)
    }

    /// [`ChannelSpace::publish_at`] to every subscriber but `except`.
    fn fan_out(
        &mut self,
        channel: &ChannelName,
        delivery: &Delivery,
        position: Option<&StreamPosition>,
        except: Option<&SessionId>,
    ) -> usize {
        if let Some(at) = position.filter(|_| self.cluster.is_some()) {
            self.repair_gap(channel, at);
        }
        let mut delivered = 0;
        let mut gone = Vec::new();
        let waiting = position.filter(|_| self.recoveries.any(channel));
        for (id, outbox) in self.table.subscribers(channel) {
            if except == Some(id) {
                continue;
            }
            if let Some(p) = waiting {
                if self.recoveries.hold(channel, id, p, delivery) {
                    continue;
                }
            }
            match outbox.push(delivery.clone()) {
                Ok(()) => delivered += 1,
                Err(PushError::Full) => {
                    self.held
                        .push((id.clone(), outbox.clone(), delivery.clone()))
                }
                Err(PushError::Closed) => gone.push(id.clone()),
            }
        }
        for id in &gone {
            self.leave(id);
        }
        self.counters
            .listener(self.listener)
            .deliveries
            .add(delivered as u64);
        delivered + self.held.len()
    }

    /// The pushes that found a full queue since the last call: the owner
    /// holds its publishers back until they are delivered, and closes with
    /// 4009 the subscribers that stay full (see [`ChannelSpace::settle`]).
    pub fn take_held(&mut self) -> Vec<(SessionId, Outbox, Delivery)> {
        std::mem::take(&mut self.held)
    }

    /// The outcome of a held push: counted when delivered; a subscriber still
    /// full is a slow consumer, closed with 4009 and dropped.
    pub fn settle(&mut self, id: &SessionId, outbox: &Outbox, pushed: Result<(), PushError>) {
        match pushed {
            Ok(()) => self.counters.listener(self.listener).deliveries.add(1),
            Err(PushError::Full) => {
                log::warn!(
                    "slow consumer closed listener={} session={} queued_bytes={}",
                    self.listener.0,
                    id,
                    outbox.queued_bytes()
                );
                self.counters.add_dropped(DropReason::SlowConsumer);
                outbox.close(CloseCode::SlowConsumer);
                self.leave(id);
            }
            Err(PushError::Closed) => self.leave(id),
        }
    }

    /// A server-side subscription (see [`ServerSubscribe`]); false when the
    /// tenant's `max_channels` refuses it.
    pub fn server_subscribe(
        &mut self,
        session: &SessionId,
        outbox: &Outbox,
        channel: &ChannelName,
        subject: Option<&Arc<str>>,
    ) -> bool {
        if self.beyond_max_channels(channel) {
            return false;
        }
        let outcome = self.table.subscribe(
            session,
            outbox,
            channel,
            SubscriptionOrigin::Server,
            usize::MAX,
        );
        if let Subscribed::Added { first } = outcome {
            self.opened(session, subject, channel, first);
        }
        if self.cluster.is_some() {
            self.wait(channel, session, outbox, Answer::Push, None);
            return true;
        }
        let position = self
            .history
            .as_mut()
            .map(|h| h.subscribe(channel, None, Instant::now()).position);
        let push = codec::push_subscribe(
            channel,
            position.as_ref().map(|p| (p.epoch.as_str(), p.offset)),
        );
        self.answer(session, outbox, push);
        true
    }

    /// Ends a subscription and tells the client why; false when there was none.
    pub fn end(
        &mut self,
        session: &SessionId,
        channel: &ChannelName,
        reason: UnsubscribeReason,
    ) -> bool {
        let outbox = self.table.outbox_of(session).cloned();
        let outcome = self.table.unsubscribe(session, channel);
        self.recoveries.cancel(channel, session);
        if outcome == Unsubscribed::NotSubscribed {
            return false;
        }
        self.closed(session, channel, outcome);
        if let Some(outbox) = outbox {
            self.answer(session, &outbox, codec::push_unsubscribe(channel, reason));
        }
        true
    }

    /// The process counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The listener of this space.
    pub fn listener(&self) -> ListenerId {
        self.listener
    }

    /// The tenant of this space (`None`: global listener).
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    /// A subscription was added: gauges, the cluster, presence (join).
    fn opened(
        &mut self,
        session: &SessionId,
        subject: Option<&Arc<str>>,
        channel: &ChannelName,
        first: bool,
    ) {
        let gauges = &self.counters.listener(self.listener).channels;
        gauges.add_subscriptions(1);
        if first {
            gauges.add_channels(1);
            self.backplane
                .channel_opened(self.listener, self.tenant.as_ref(), channel);
        }
        self.presence.track(session, subject);
        self.announce(Event::Join, channel, session);
    }

    /// A subscription may have ended: gauges, the cluster, presence (leave).
    fn closed(&mut self, session: &SessionId, channel: &ChannelName, outcome: Unsubscribed) {
        if let Unsubscribed::Removed { last } = outcome {
            let gauges = &self.counters.listener(self.listener).channels;
            gauges.add_subscriptions(-1);
            if last {
                gauges.add_channels(-1);
                self.channel_gone(channel);
            }
            self.announce(Event::Leave, channel, session);
            if self.table.outbox_of(session).is_none() {
                self.presence.forget(session);
            }
        }
    }

    /// Pushes a join or leave of `session` to the channel's other
    /// subscribers, here and on the other nodes (with `join_leave` on).
    fn announce(&mut self, event: Event, channel: &ChannelName, session: &SessionId) {
        if let Some(push) = self.presence.event(event, channel, session) {
            self.fan_out(channel, &push, None, Some(session));
            self.backplane
                .push_channel(self.listener, self.tenant.as_ref(), channel, &push);
        }
    }

    /// The last local subscriber of `channel` left.
    fn channel_gone(&mut self, channel: &ChannelName) {
        self.seen.remove(channel);
        self.backplane
            .channel_closed(self.listener, self.tenant.as_ref(), channel);
        if let Some(h) = self.history.as_mut() {
            h.released(channel, Instant::now());
        }
    }

    /// The reply to a `subscribe`: the stream's position and, with `since`,
    /// the recovery (history on); `recovered: false` for any `since` when
    /// history is off.
    fn subscribe_reply(
        &mut self,
        id: CommandId,
        channel: &ChannelName,
        since: Option<&StreamPosition>,
    ) -> String {
        let Some(h) = self.history.as_mut() else {
            if since.is_some() {
                self.counters.recoveries.add(RecoveryResult::NotRecovered);
            }
            return codec::subscribe_reply(id, channel, since.map(|_| false), None, []);
        };
        let r = h.subscribe(channel, since, Instant::now());
        let position = codec::Position {
            epoch: &r.position.epoch,
            offset: r.position.offset,
        };
        codec::subscribe_reply(
            id,
            channel,
            r.recovered,
            Some(position),
            r.publications.iter().map(|b| &**b),
        )
    }

    /// Pushes a reply or push into a session's queue; a full one gets it once
    /// drained, like a publication.
    fn answer(&mut self, session: &SessionId, outbox: &Outbox, reply: String) {
        let d = text(reply);
        if let Err(PushError::Full) = outbox.push(d.clone()) {
            self.held.push((session.clone(), outbox.clone(), d));
        }
    }
}

fn text(s: String) -> Delivery {
    Delivery::Text(ByteString::from(s))
}
