//! This node's truth, of which Redis only ever holds a copy: the sessions it
//! registered, the tenant slots it holds and the tenant channels it wants.
//!
//! The Broker's calls update it synchronously (under a mutex never held across
//! an await); the ticker rewrites Redis from a [`Snapshot`] of it after any
//! doubt, and the heartbeat writes its slot counts every `lease_s / 3`, so a
//! slot update lost on the way to Redis is corrected within a lease tick.

use std::collections::{HashMap, HashSet};

/// This node's sessions, slots and channels.
#[derive(Debug, Default)]
pub(super) struct Mirror {
    /// Session id → `listener:tenant` (registry values).
    sessions: HashMap<String, String>,
    /// Slots key → slots held (granted, being asked for, or taken while Redis
    /// was down).
    held: HashMap<String, usize>,
    /// Tenant channels wanted (a room exists or a join is in progress).
    channels: HashSet<String>,
    /// Channels to leave that Redis could not be told about.
    stale: HashSet<String>,
}

/// A copy of the mirror for a rewrite of Redis.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Snapshot {
    /// Wanted tenant channels.
    pub channels: Vec<String>,
    /// Channels to leave (never one of `channels`).
    pub stale: Vec<String>,
    /// (session id, registry value).
    pub sessions: Vec<(String, String)>,
    /// (slots key, count).
    pub held: Vec<(String, usize)>,
}

impl Mirror {
    /// A session joined this node.
    pub fn join(&mut self, session: String, value: String) {
        self.sessions.insert(session, value);
    }

    /// A session left this node.
    pub fn leave(&mut self, session: &str) {
        self.sessions.remove(session);
    }

    /// One more slot of `key` (counted before Redis is asked, so a heartbeat
    /// racing with the request never writes a count below what Redis is about
    /// to hold).
    pub fn take_slot(&mut self, key: &str) {
        *self.held.entry(key.to_owned()).or_default() += 1;
    }

    /// One slot of `key` less (released, or refused by the cluster).
    pub fn give_slot(&mut self, key: &str) {
        if let Some(n) = self.held.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(key);
            }
        }
    }

    /// Slot counts, for the heartbeat.
    pub fn held(&self) -> Vec<(String, usize)> {
        self.held.iter().map(|(k, n)| (k.clone(), *n)).collect()
    }

    /// Keys of every slot counter this node holds a share of.
    pub fn slot_keys(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }

    /// The node wants the messages of `channel`.
    pub fn want(&mut self, channel: &str) {
        self.stale.remove(channel);
        self.channels.insert(channel.to_owned());
    }

    /// The node no longer wants `channel`.
    pub fn unwant(&mut self, channel: &str) {
        self.channels.remove(channel);
    }

    /// Redis could not be told to stop sending `channel`.
    pub fn mark_stale(&mut self, channel: String) {
        if !self.channels.contains(&channel) {
            self.stale.insert(channel);
        }
    }

    /// A copy for a rewrite of Redis.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            channels: self.channels.iter().cloned().collect(),
            stale: self.stale.iter().cloned().collect(),
            sessions: self
                .sessions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            held: self.held(),
        }
    }

    /// After a rewrite: Redis was told to leave these.
    pub fn left(&mut self, stale: &[String]) {
        for ch in stale {
            self.stale.remove(ch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_up_and_down_and_vanish_at_zero() {
        let mut m = Mirror::default();
        m.take_slot("k");
        m.take_slot("k");
        m.take_slot("j");
        m.give_slot("k");
        let mut held = m.held();
        held.sort();
        assert_eq!(held, [("j".to_string(), 1), ("k".to_string(), 1)]);
        m.give_slot("k");
        m.give_slot("k"); // one release too many never underflows
        m.give_slot("nope");
        assert_eq!(m.slot_keys(), ["j"]);
    }

    #[test]
    fn a_channel_wanted_again_is_no_longer_stale() {
        let mut m = Mirror::default();
        m.want("a");
        m.unwant("a");
        m.mark_stale("a".into());
        assert_eq!(m.snapshot().stale, ["a"]);
        m.want("a");
        let s = m.snapshot();
        assert_eq!((s.channels, s.stale), (vec!["a".to_string()], vec![]));
        // A channel still wanted is never marked stale.
        m.mark_stale("a".into());
        assert!(m.snapshot().stale.is_empty());
    }

    #[test]
    fn a_rewrite_forgets_the_channels_it_left() {
        let mut m = Mirror::default();
        m.mark_stale("a".into());
        m.mark_stale("b".into());
        let s = m.snapshot();
        m.mark_stale("c".into()); // after the snapshot: still to leave
        m.left(&s.stale);
        assert_eq!(m.snapshot().stale, ["c"]);
    }

    #[test]
    fn sessions_are_registered_until_they_leave() {
        let mut m = Mirror::default();
        m.join("s1".into(), "/ws:acme".into());
        m.join("s2".into(), "/ws:globex".into());
        m.leave("s1");
        m.leave("s3");
        assert_eq!(
            m.snapshot().sessions,
            [("s2".to_string(), "/ws:globex".to_string())]
        );
    }
}
