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

use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;

use super::codec::{self, CommandId, StreamPosition, SubscribeResult, UnsubscribeReason};
use super::limits::{NoChannelLimits, TenantChannelLimits};
use super::name::ChannelName;
use super::permissions::{AccessRules, Grants};
use super::table::{ChannelTable, Subscribed, SubscriptionOrigin, Unsubscribed};
use super::ChannelError;
use super::ErrorCode;
use crate::backplane::{Backplane, LocalBackplane};
use crate::close::CloseCode;
use crate::counters::{Counters, DropReason};
use crate::delivery::Delivery;
use crate::ids::{ListenerId, SessionId, TenantId};
use crate::outbox::{Outbox, PushError};

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
        /// `since`, when given (answers `recovered: false` until history exists).
        since: Option<StreamPosition>,
        /// `max_per_session`.
        max: usize,
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
    /// A client `publish` (permission already checked by the session).
    Publish {
        /// The channel.
        channel: ChannelName,
        /// The `pub` push, serialized once.
        delivery: Delivery,
        /// The publisher, its queue and its command, answered after the fan-out.
        reply: Option<(SessionId, Outbox, CommandId)>,
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

/// Publishes to a channel of this space (admin publish, a publication from
/// another node). Returns how many queues of this node took it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "usize")]
pub struct PublishLocal {
    /// The channel.
    pub channel: ChannelName,
    /// The `pub` push.
    pub delivery: Delivery,
    /// Hand it to the other nodes too (false for what came from one).
    pub forward: bool,
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

/// The channels of one tenant (or of a global listener) and their subscribers.
#[derive(Debug)]
pub struct ChannelSpace {
    listener: ListenerId,
    /// `None` for a global-scope listener's space.
    tenant: Option<TenantId>,
    table: ChannelTable,
    counters: Arc<Counters>,
    backplane: Arc<dyn Backplane>,
    /// The tenant's `max_channels` (read when a subscribe would open a channel).
    limits: Arc<dyn TenantChannelLimits>,
    /// Pushes waiting for a full queue (see [`ChannelSpace::take_held`]).
    held: Vec<(SessionId, Outbox, Delivery)>,
}

impl ChannelSpace {
    /// An empty space.
    pub fn new(listener: ListenerId, tenant: Option<TenantId>, counters: Arc<Counters>) -> Self {
        Self {
            listener,
            tenant,
            table: ChannelTable::new(),
            counters,
            backplane: Arc::new(LocalBackplane),
            limits: Arc::new(NoChannelLimits),
            held: Vec::new(),
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

    /// Publications cross nodes through `backplane`; a channel is received
    /// from other nodes while it has a subscriber here.
    pub fn with_backplane(mut self, backplane: Arc<dyn Backplane>) -> Self {
        self.backplane = backplane;
        self
    }

    /// Delivers a publication here, then hands it to the other nodes.
    pub fn publish_everywhere(&mut self, channel: &ChannelName, delivery: &Delivery) -> usize {
        let n = self.publish(channel, delivery);
        self.backplane
            .publish_channel(self.listener, self.tenant.as_ref(), channel, delivery);
        n
    }

    /// The table (admin listings, tests).
    pub fn table(&self) -> &ChannelTable {
        &self.table
    }

    /// Applies a session's operation.
    pub fn apply(&mut self, op: ChannelOp) {
        match op {
            ChannelOp::Subscribe {
                session,
                outbox,
                channel,
                reply,
                since,
                max,
            } => {
                if self.beyond_max_channels(&channel) {
                    let e = ChannelError {
                        message: "the tenant's max_channels is reached".into(),
                        ..ChannelError::new(ErrorCode::LimitExceeded)
                    };
                    self.answer(&session, &outbox, codec::reply_err(Some(reply), &e));
                    return;
                }
                let outcome = self.table.subscribe(
                    &session,
                    &outbox,
                    &channel,
                    SubscriptionOrigin::Client,
                    max,
                );
                let text = match outcome {
                    Subscribed::Added { first } => {
                        self.opened(&channel, first);
                        subscribe_reply(reply, &channel, since.is_some())
                    }
                    Subscribed::Already => subscribe_reply(reply, &channel, since.is_some()),
                    Subscribed::LimitExceeded => {
                        codec::reply_err(Some(reply), &ChannelError::new(ErrorCode::LimitExceeded))
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
                self.closed(&channel, outcome);
                self.answer(&session, &outbox, codec::reply_empty(reply));
            }
            ChannelOp::Publish {
                channel,
                delivery,
                reply,
            } => {
                self.publish_everywhere(&channel, &delivery);
                if let Some((session, outbox, id)) = reply {
                    self.answer(&session, &outbox, codec::reply_empty(id));
                }
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
    }

    /// Drops every subscription of `session`.
    pub fn leave(&mut self, session: &SessionId) {
        let (removed, emptied) = self.table.remove_session(session);
        let gauges = &self.counters.listener(self.listener).channels;
        gauges.add_subscriptions(-(removed as i64));
        gauges.add_channels(-(emptied.len() as i64));
        for channel in &emptied {
            self.backplane
                .channel_closed(self.listener, self.tenant.as_ref(), channel);
        }
    }

    /// Delivers a publication to every subscriber of `channel` here. A
    /// subscriber whose queue is full gets it once it has drained (see
    /// [`ChannelSpace::take_held`]). Returns how many queues took it or will.
    pub fn publish(&mut self, channel: &ChannelName, delivery: &Delivery) -> usize {
        let mut delivered = 0;
        let mut gone = Vec::new();
        for (id, outbox) in self.table.subscribers(channel) {
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
            self.opened(channel, first);
        }
        self.answer(session, outbox, codec::push_subscribe(channel, None));
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
        if outcome == Unsubscribed::NotSubscribed {
            return false;
        }
        self.closed(channel, outcome);
        if let Some(outbox) = outbox {
            self.answer(session, &outbox, codec::push_unsubscribe(channel, reason));
        }
        true
    }

    /// The process counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The tenant of this space (`None`: global listener).
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    fn opened(&self, channel: &ChannelName, first: bool) {
        let gauges = &self.counters.listener(self.listener).channels;
        gauges.add_subscriptions(1);
        if first {
            gauges.add_channels(1);
            self.backplane
                .channel_opened(self.listener, self.tenant.as_ref(), channel);
        }
    }

    fn closed(&self, channel: &ChannelName, outcome: Unsubscribed) {
        if let Unsubscribed::Removed { last } = outcome {
            let gauges = &self.counters.listener(self.listener).channels;
            gauges.add_subscriptions(-1);
            if last {
                gauges.add_channels(-1);
                self.backplane
                    .channel_closed(self.listener, self.tenant.as_ref(), channel);
            }
        }
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

fn subscribe_reply(id: CommandId, channel: &ChannelName, since: bool) -> String {
    codec::reply_ok(
        id,
        &SubscribeResult {
            channel: channel.as_str(),
            // History is off: a `since` cannot be honoured.
            recovered: since.then_some(false),
            epoch: None,
            offset: None,
            publications: &[],
        },
    )
}
