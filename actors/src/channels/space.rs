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
use super::name::ChannelName;
use super::permissions::{AccessRules, Grants};
use super::table::{ChannelTable, Subscribed, SubscriptionOrigin, Unsubscribed};
use super::ChannelError;
use super::ErrorCode;
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
        /// The publisher's queue and command, answered after the fan-out.
        reply: Option<(Outbox, CommandId)>,
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

/// Publishes to a channel of this space on this node (admin publish, a
/// publication from another node). Returns how many queues took it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "usize")]
pub struct PublishLocal {
    /// The channel.
    pub channel: ChannelName,
    /// The `pub` push.
    pub delivery: Delivery,
}

/// A server-side subscription (admin API): pushes `{"push": "subscribe"}`,
/// ignores `max_per_session`, survives refreshes.
#[derive(Message, Debug)]
#[rtype(result = "()")]
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
}

impl ChannelSpace {
    /// An empty space.
    pub fn new(listener: ListenerId, tenant: Option<TenantId>, counters: Arc<Counters>) -> Self {
        Self {
            listener,
            tenant,
            table: ChannelTable::new(),
            counters,
        }
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
                let outcome = self.table.subscribe(
                    &session,
                    &outbox,
                    &channel,
                    SubscriptionOrigin::Client,
                    max,
                );
                let text = match outcome {
                    Subscribed::Added { first } => {
                        self.opened(first);
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
                self.closed(outcome);
                self.answer(&session, &outbox, codec::reply_empty(reply));
            }
            ChannelOp::Publish {
                channel,
                delivery,
                reply,
            } => {
                self.publish(&channel, &delivery);
                if let Some((outbox, id)) = reply {
                    // The publisher, not a subscriber: identified by its queue.
                    let _ = outbox.push(text(codec::reply_empty(id)));
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
        let gone = self.table.remove_session(session);
        self.channels_gauge(-(gone.len() as i64));
    }

    /// Delivers a publication to every subscriber of `channel` here; closes
    /// slow consumers. Returns how many queues took it.
    pub fn publish(&mut self, channel: &ChannelName, delivery: &Delivery) -> usize {
        let mut delivered = 0;
        let mut gone = Vec::new();
        for (id, outbox) in self.table.subscribers(channel) {
            match outbox.push(delivery.clone()) {
                Ok(()) => delivered += 1,
                Err(PushError::Full) => {
                    log::warn!(
                        "slow consumer closed channel={} session={} queued_bytes={}",
                        channel,
                        id,
                        outbox.queued_bytes()
                    );
                    self.counters.add_dropped(DropReason::SlowConsumer);
                    outbox.close(CloseCode::SlowConsumer);
                    gone.push(id.clone());
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
        delivered
    }

    /// A server-side subscription (see [`ServerSubscribe`]).
    pub fn server_subscribe(
        &mut self,
        session: &SessionId,
        outbox: &Outbox,
        channel: &ChannelName,
    ) {
        let outcome = self.table.subscribe(
            session,
            outbox,
            channel,
            SubscriptionOrigin::Server,
            usize::MAX,
        );
        if let Subscribed::Added { first } = outcome {
            self.opened(first);
        }
        self.answer(session, outbox, codec::push_subscribe(channel, None));
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
        self.closed(outcome);
        if let Some(outbox) = outbox {
            self.answer(session, &outbox, codec::push_unsubscribe(channel, reason));
        }
        true
    }

    /// The tenant of this space (`None`: global listener).
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    fn opened(&self, first: bool) {
        self.counters
            .listener(self.listener)
            .channels
            .add_subscriptions(1);
        if first {
            self.channels_gauge(1);
        }
    }

    fn closed(&self, outcome: Unsubscribed) {
        if let Unsubscribed::Removed { last } = outcome {
            self.counters
                .listener(self.listener)
                .channels
                .add_subscriptions(-1);
            if last {
                self.channels_gauge(-1);
            }
        }
    }

    fn channels_gauge(&self, delta: i64) {
        self.counters
            .listener(self.listener)
            .channels
            .add_channels(delta);
    }

    /// Pushes a reply or push into a session's queue; a full queue is a slow
    /// consumer like any other.
    fn answer(&mut self, session: &SessionId, outbox: &Outbox, reply: String) {
        if let Err(PushError::Full) = outbox.push(text(reply)) {
            self.counters.add_dropped(DropReason::SlowConsumer);
            outbox.close(CloseCode::SlowConsumer);
            self.leave(session);
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
