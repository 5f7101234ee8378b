//! The subscriptions of one channel space: a tenant's (held by its
//! TenantRoom) or a global-scope listener's (held by its channel hub).
//!
//! A plain type so that its rules are tested without actors: subscribing twice
//! never doubles deliveries (a channel's subscribers are a set keyed by
//! session), `max_per_session` counts the client's own subscriptions only
//! (server-side ones, by an administrator or a hook, ignore it and survive a
//! refresh), and the first subscriber of a channel and the last one leaving
//! are reported, so the owner can subscribe to and unsubscribe from the
//! channel in the cluster exactly while this node needs it.
//!
//! Two maps: channel → subscribers (the publish path: one lookup, then one
//! queue push per subscriber) and session → its channels (unsubscribe all on
//! leave, re-check on refresh, admin listings). A subscription costs one entry
//! in each — a shared channel name, a shared session id and an 8-byte queue
//! handle — well under 200 bytes.

use std::collections::HashMap;

use super::name::ChannelName;
use crate::ids::SessionId;
use crate::outbox::Outbox;

/// Who made a subscription.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SubscriptionOrigin {
    /// The client's `subscribe` (counted, re-checked on refresh).
    Client,
    /// An administrator or a hook (not counted, not re-checked).
    Server,
}

/// What [`ChannelTable::subscribe`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Subscribed {
    /// A new subscription; `first` when the channel had no subscriber here.
    Added {
        /// The channel just came into existence on this node.
        first: bool,
    },
    /// The session was already subscribed: nothing changed (a server-side
    /// subscribe turns a client subscription into a server-side one).
    Already,
    /// The session has `max_per_session` client subscriptions.
    LimitExceeded,
}

/// What [`ChannelTable::unsubscribe`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unsubscribed {
    /// The session was not subscribed.
    NotSubscribed,
    /// Removed; `last` when the channel has no subscriber left here.
    Removed {
        /// The channel just disappeared from this node.
        last: bool,
    },
}

#[derive(Debug, Default)]
struct SessionSubs {
    outbox: Option<Outbox>,
    channels: HashMap<ChannelName, SubscriptionOrigin>,
    client: usize,
}

/// Channels and their subscribers.
#[derive(Debug, Default)]
pub struct ChannelTable {
    channels: HashMap<ChannelName, HashMap<SessionId, Outbox>>,
    sessions: HashMap<SessionId, SessionSubs>,
    subscriptions: usize,
}

impl ChannelTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes `session` (delivering to `outbox`) to `channel`. A client
    /// subscription beyond `max_per_session` is refused.
    pub fn subscribe(
        &mut self,
        session: &SessionId,
        outbox: &Outbox,
        channel: &ChannelName,
        origin: SubscriptionOrigin,
        max_per_session: usize,
    ) -> Subscribed {
        let subs = self.sessions.entry(session.clone()).or_default();
        if let Some(existing) = subs.channels.get_mut(channel) {
            if origin == SubscriptionOrigin::Server && *existing == SubscriptionOrigin::Client {
                *existing = SubscriptionOrigin::Server;
                subs.client -= 1;
            }
            return Subscribed::Already;
        }
        if origin == SubscriptionOrigin::Client && subs.client >= max_per_session {
            if subs.channels.is_empty() {
                self.sessions.remove(session);
            }
            return Subscribed::LimitExceeded;
        }
        subs.channels.insert(channel.clone(), origin);
        if origin == SubscriptionOrigin::Client {
            subs.client += 1;
        }
        subs.outbox.get_or_insert_with(|| outbox.clone());
        let members = self.channels.entry(channel.clone()).or_default();
        let first = members.is_empty();
        members.insert(session.clone(), outbox.clone());
        self.subscriptions += 1;
        Subscribed::Added { first }
    }

    /// Ends `session`'s subscription to `channel`.
    pub fn unsubscribe(&mut self, session: &SessionId, channel: &ChannelName) -> Unsubscribed {
        let Some(subs) = self.sessions.get_mut(session) else {
            return Unsubscribed::NotSubscribed;
        };
        let Some(origin) = subs.channels.remove(channel) else {
            return Unsubscribed::NotSubscribed;
        };
        if origin == SubscriptionOrigin::Client {
            subs.client -= 1;
        }
        if subs.channels.is_empty() {
            self.sessions.remove(session);
        }
        Unsubscribed::Removed {
            last: self.detach(session, channel),
        }
    }

    /// Removes the session from the channel's set; true when it was the last.
    fn detach(&mut self, session: &SessionId, channel: &ChannelName) -> bool {
        self.subscriptions -= 1;
        match self.channels.get_mut(channel) {
            Some(members) => {
                members.remove(session);
                let last = members.is_empty();
                if last {
                    self.channels.remove(channel);
                }
                last
            }
            None => false,
        }
    }

    /// Ends every subscription of `session` (it left); returns how many it
    /// had and the channels that have no subscriber left here.
    pub fn remove_session(&mut self, session: &SessionId) -> (usize, Vec<ChannelName>) {
        let Some(subs) = self.sessions.remove(session) else {
            return (0, Vec::new());
        };
        let removed = subs.channels.len();
        let emptied = subs
            .channels
            .into_keys()
            .filter(|c| self.detach(session, c))
            .collect();
        (removed, emptied)
    }

    /// The subscribers of `channel`, with their queues.
    pub fn subscribers(
        &self,
        channel: &ChannelName,
    ) -> impl Iterator<Item = (&SessionId, &Outbox)> {
        self.channels.get(channel).into_iter().flatten()
    }

    /// How many sessions subscribe to `channel` here.
    pub fn subscriber_count(&self, channel: &ChannelName) -> usize {
        self.channels.get(channel).map_or(0, HashMap::len)
    }

    /// The session's client subscriptions (those a refresh re-checks).
    pub fn client_channels(&self, session: &SessionId) -> Vec<ChannelName> {
        self.channels_where(session, |o| o == SubscriptionOrigin::Client)
    }

    /// Every channel the session subscribes to (leaves on disconnect).
    pub fn channels_of(&self, session: &SessionId) -> Vec<ChannelName> {
        self.channels_where(session, |_| true)
    }

    fn channels_where(
        &self,
        session: &SessionId,
        keep: impl Fn(SubscriptionOrigin) -> bool,
    ) -> Vec<ChannelName> {
        self.sessions
            .get(session)
            .map(|s| {
                s.channels
                    .iter()
                    .filter(|(_, o)| keep(**o))
                    .map(|(c, _)| c.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `session` subscribes to `channel`.
    pub fn is_subscribed(&self, session: &SessionId, channel: &ChannelName) -> bool {
        self.sessions
            .get(session)
            .is_some_and(|s| s.channels.contains_key(channel))
    }

    /// Every channel with its subscriber count.
    pub fn channels(&self) -> impl Iterator<Item = (&ChannelName, usize)> {
        self.channels.iter().map(|(c, m)| (c, m.len()))
    }

    /// Channels with at least one subscriber.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Subscriptions in all.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    /// Sessions with at least one subscription.
    pub fn sessions(&self) -> impl Iterator<Item = &SessionId> {
        self.sessions.keys()
    }

    /// The queue of a session that has at least one subscription.
    pub fn outbox_of(&self, session: &SessionId) -> Option<&Outbox> {
        self.sessions.get(session).and_then(|s| s.outbox.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::outbox;
    use SubscriptionOrigin::{Client, Server};

    fn ch(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    #[test]
    fn subscribing_twice_is_one_subscription() {
        let mut t = ChannelTable::new();
        let (o, _rx) = outbox(8, 1024);
        let s = SessionId::random();
        assert_eq!(
            t.subscribe(&s, &o, &ch("a"), Client, 10),
            Subscribed::Added { first: true }
        );
        assert_eq!(
            t.subscribe(&s, &o, &ch("a"), Client, 10),
            Subscribed::Already
        );
        assert_eq!(t.subscribers(&ch("a")).count(), 1);
        assert_eq!(t.subscription_count(), 1);
        let s2 = SessionId::random();
        assert_eq!(
            t.subscribe(&s2, &o, &ch("a"), Client, 10),
            Subscribed::Added { first: false }
        );
        assert_eq!(t.subscriber_count(&ch("a")), 2);
        assert_eq!(t.channel_count(), 1);
    }

    #[test]
    fn limit_counts_client_subscriptions_only() {
        let mut t = ChannelTable::new();
        let (o, _rx) = outbox(8, 1024);
        let s = SessionId::random();
        assert!(matches!(
            t.subscribe(&s, &o, &ch("a"), Client, 2),
            Subscribed::Added { .. }
        ));
        assert!(matches!(
            t.subscribe(&s, &o, &ch("b"), Client, 2),
            Subscribed::Added { .. }
        ));
        assert_eq!(
            t.subscribe(&s, &o, &ch("c"), Client, 2),
            Subscribed::LimitExceeded
        );
        assert!(matches!(
            t.subscribe(&s, &o, &ch("c"), Server, 2),
            Subscribed::Added { .. }
        ));
        // An admin subscribe over a client one frees a client slot.
        assert_eq!(
            t.subscribe(&s, &o, &ch("a"), Server, 2),
            Subscribed::Already
        );
        assert!(matches!(
            t.subscribe(&s, &o, &ch("d"), Client, 2),
            Subscribed::Added { .. }
        ));
        let mut client = t.client_channels(&s);
        client.sort();
        assert_eq!(client, [ch("b"), ch("d")]);
        assert_eq!(
            t.unsubscribe(&s, &ch("b")),
            Unsubscribed::Removed { last: true }
        );
        assert!(matches!(
            t.subscribe(&s, &o, &ch("e"), Client, 2),
            Subscribed::Added { .. }
        ));
        // max 0 refuses every client subscription and leaves nothing behind.
        let s2 = SessionId::random();
        assert_eq!(
            t.subscribe(&s2, &o, &ch("a"), Client, 0),
            Subscribed::LimitExceeded
        );
        assert!(t.outbox_of(&s2).is_none());
    }

    #[test]
    fn last_subscriber_leaving_removes_the_channel() {
        let mut t = ChannelTable::new();
        let (o, _rx) = outbox(8, 1024);
        let (s1, s2) = (SessionId::random(), SessionId::random());
        t.subscribe(&s1, &o, &ch("a"), Client, 9);
        t.subscribe(&s1, &o, &ch("b"), Client, 9);
        t.subscribe(&s2, &o, &ch("a"), Client, 9);
        assert_eq!(t.unsubscribe(&s2, &ch("b")), Unsubscribed::NotSubscribed);
        assert_eq!(
            t.unsubscribe(&s2, &ch("a")),
            Unsubscribed::Removed { last: false }
        );
        assert_eq!(t.unsubscribe(&s2, &ch("a")), Unsubscribed::NotSubscribed);
        let mut all = t.channels_of(&s1);
        all.sort();
        assert_eq!(all, [ch("a"), ch("b")]);
        let (removed, mut gone) = t.remove_session(&s1);
        gone.sort();
        assert_eq!((removed, gone), (2, vec![ch("a"), ch("b")]));
        assert_eq!(t.channel_count(), 0);
        assert_eq!(t.subscription_count(), 0);
        assert_eq!(t.remove_session(&s1), (0, Vec::new()));
        assert!(!t.is_subscribed(&s1, &ch("a")));
    }
}
