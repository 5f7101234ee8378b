//! Presence: who is subscribed to a channel (`presence` op, admin detail) and
//! the `join`/`leave` pushes to a channel's other subscribers.
//!
//! A plain type owned by the [`super::space::ChannelSpace`] beside its
//! subscription table, so its rules are tested without actors. The table
//! already knows which sessions subscribe to which channel; presence only adds
//! each subscribed session's `sub` (the token's subject, shared with the
//! session) and builds the pushes. An entry exists exactly while its session
//! has at least one subscription in the space, so presence is bounded by what
//! already bounds subscriptions: one entry per subscribed session (at most the
//! listener's connections), and a channel's clients are its subscribers, each
//! session counted once however many times it subscribed.
//!
//! In a cluster each node answers for its own subscribers (a
//! [`crate::backplane::NodeRequest::Channel`]); the node asked merges the
//! answers with [`merge`]. A node that died answers nothing, so its entries
//! are gone from the first request after its death (the request waits for it
//! at most the cluster timeout while its lease still names it live).

use std::collections::HashMap;
use std::sync::Arc;

use bytestring::ByteString;
use serde::{Deserialize, Serialize};

use super::codec::{self, CommandId};
use super::name::ChannelName;
use crate::backplane::NodeReply;
use crate::delivery::Delivery;
use crate::ids::SessionId;

/// One present client: `{id, subject}` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PresentClient {
    /// The session (connection) id.
    pub id: String,
    /// The token's `sub` (`null` without one).
    pub subject: Option<String>,
}

/// What one node knows of a channel: its subscribers here and, with
/// presence on, who they are (admin detail, the `presence` op, other nodes'
/// answers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelFacts {
    /// Subscribed sessions.
    pub subscribers: usize,
    /// Their `{id, subject}` (empty with presence off).
    pub clients: Vec<PresentClient>,
}

impl ChannelFacts {
    /// This node's facts plus the other nodes' answers.
    pub fn sum(mut self, replies: Vec<NodeReply>) -> Self {
        for r in replies {
            if let NodeReply::Channel(other) = r {
                self.subscribers += other.subscribers;
                self.clients.extend(other.clients);
            }
        }
        self.clients = merge(self.clients, []);
        self
    }
}

/// Whether presence is tracked, and whether joins and leaves are pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PresenceMode {
    /// `presence = false`: nothing is tracked; the op answers `not_available`.
    #[default]
    Off,
    /// `presence = true`.
    On,
    /// `presence = true` and `join_leave = true`.
    JoinLeave,
}

impl PresenceMode {
    /// From the listener's `presence` and `join_leave` (`join_leave` without
    /// `presence` is refused by the settings; here it means off).
    pub fn new(presence: bool, join_leave: bool) -> Self {
        match (presence, join_leave) {
            (false, _) => PresenceMode::Off,
            (true, false) => PresenceMode::On,
            (true, true) => PresenceMode::JoinLeave,
        }
    }

    /// Presence is tracked.
    pub fn is_on(self) -> bool {
        self != PresenceMode::Off
    }
}

/// The subjects of a space's subscribed sessions.
#[derive(Debug, Default)]
pub struct Presence {
    mode: PresenceMode,
    subjects: HashMap<SessionId, Option<Arc<str>>>,
}

/// A join or a leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A session subscribed.
    Join,
    /// A session's subscription ended (unsubscribe, disconnect, admin,
    /// refresh that no longer allows it, slow consumer).
    Leave,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Event::Join => "join",
            Event::Leave => "leave",
        }
    }
}

#[derive(Serialize)]
struct EventPush<'a> {
    push: &'static str,
    channel: &'a str,
    client: &'a PresentClient,
}

#[derive(Serialize)]
struct Clients<'a> {
    clients: &'a [PresentClient],
}

impl Presence {
    /// Presence as the listener configures it.
    pub fn new(mode: PresenceMode) -> Self {
        Self {
            mode,
            subjects: HashMap::new(),
        }
    }

    /// The configured mode.
    pub fn mode(&self) -> PresenceMode {
        self.mode
    }

    /// `session` (with the token's `sub`) has a subscription here.
    pub fn track(&mut self, session: &SessionId, subject: Option<&Arc<str>>) {
        if self.mode.is_on() && !self.subjects.contains_key(session) {
            self.subjects.insert(session.clone(), subject.cloned());
        }
    }

    /// `session` has no subscription here any more.
    pub fn forget(&mut self, session: &SessionId) {
        self.subjects.remove(session);
    }

    /// Sessions tracked (one per subscribed session).
    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    /// Nobody is tracked.
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// The `{id, subject}` of a tracked session.
    pub fn client(&self, session: &SessionId) -> PresentClient {
        PresentClient {
            id: session.to_string(),
            subject: self
                .subjects
                .get(session)
                .and_then(|s| s.as_deref())
                .map(str::to_owned),
        }
    }

    /// The clients among `members` (a channel's subscribers), sorted by id;
    /// empty when presence is off.
    pub fn clients<'a>(&self, members: impl Iterator<Item = &'a SessionId>) -> Vec<PresentClient> {
        if !self.mode.is_on() {
            return Vec::new();
        }
        let mut v: Vec<_> = members.map(|s| self.client(s)).collect();
        v.sort();
        v
    }

    /// The push announcing `event` of `session` on `channel`, when joins and
    /// leaves are pushed. Serialized once, shared by every recipient.
    pub fn event(
        &self,
        event: Event,
        channel: &ChannelName,
        session: &SessionId,
    ) -> Option<Delivery> {
        if self.mode != PresenceMode::JoinLeave {
            return None;
        }
        let push = EventPush {
            push: event.as_str(),
            channel: channel.as_str(),
            client: &self.client(session),
        };
        let text = serde_json::to_string(&push).unwrap_or_default();
        Some(Delivery::Text(ByteString::from(text)))
    }
}

/// This node's clients and other nodes' answers, as one sorted list without
/// repeats.
pub fn merge(
    mut local: Vec<PresentClient>,
    remote: impl IntoIterator<Item = PresentClient>,
) -> Vec<PresentClient> {
    local.extend(remote);
    local.sort();
    local.dedup();
    local
}

/// `{"id": n, "result": {"clients": [...]}}`.
pub fn reply(id: CommandId, clients: &[PresentClient]) -> String {
    codec::reply_ok(id, &Clients { clients })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ch(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    fn json_of(d: Delivery) -> Value {
        match d {
            Delivery::Text(s) => serde_json::from_str(&s).unwrap(),
            Delivery::Binary(_) => panic!("binary"),
        }
    }

    #[test]
    fn off_tracks_nothing_and_pushes_nothing() {
        let mut p = Presence::new(PresenceMode::new(false, true));
        let s = SessionId::random();
        p.track(&s, Some(&Arc::from("alice")));
        assert!(p.is_empty());
        assert!(p.clients([&s].into_iter()).is_empty());
        assert_eq!(p.event(Event::Join, &ch("a"), &s), None);
    }

    #[test]
    fn clients_are_sorted_with_their_subjects() {
        let mut p = Presence::new(PresenceMode::On);
        let (a, b) = (SessionId::from_string("b-2"), SessionId::from_string("a-1"));
        p.track(&a, Some(&Arc::from("alice")));
        p.track(&b, None);
        // A second subscription keeps the first subject.
        p.track(&a, Some(&Arc::from("mallory")));
        assert_eq!(p.len(), 2);
        assert_eq!(
            serde_json::to_value(p.clients([&a, &b].into_iter())).unwrap(),
            json!([{"id": "a-1", "subject": null}, {"id": "b-2", "subject": "alice"}])
        );
        assert_eq!(p.event(Event::Join, &ch("a"), &a), None, "no join_leave");
        p.forget(&a);
        p.forget(&b);
        assert!(p.is_empty());
    }

    #[test]
    fn join_and_leave_pushes() {
        let mut p = Presence::new(PresenceMode::JoinLeave);
        let s = SessionId::from_string("s1");
        p.track(&s, Some(&Arc::from("bob")));
        assert_eq!(
            json_of(p.event(Event::Join, &ch("room:1"), &s).unwrap()),
            json!({"push": "join", "channel": "room:1", "client": {"id": "s1", "subject": "bob"}})
        );
        assert_eq!(
            json_of(p.event(Event::Leave, &ch("room:1"), &s).unwrap())["push"],
            "leave"
        );
    }

    #[test]
    fn merge_sorts_and_drops_repeats() {
        let c = |id: &str| PresentClient {
            id: id.into(),
            subject: None,
        };
        assert_eq!(
            merge(vec![c("b"), c("a")], [c("c"), c("a")]),
            [c("a"), c("b"), c("c")]
        );
        let r: Value = serde_json::from_str(&reply(CommandId::new(4).unwrap(), &[c("x")])).unwrap();
        assert_eq!(
            r,
            json!({"id": 4, "result": {"clients": [{"id": "x", "subject": null}]}})
        );
    }
}
