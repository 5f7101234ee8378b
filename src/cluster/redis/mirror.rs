//! This node's truth, of which Redis only ever holds a copy: the sessions it
//! registered and the tenant slots it holds (the channels it wants are in
//! [`super::subs`]).
//!
//! The Broker's calls update it synchronously, under a mutex never held across
//! an await, and queue the matching write to Redis *under the same lock*, so the
//! writer applies changes in the order they were made here. After any doubt the
//! ticker queues a [`Snapshot`] the same way and the writer rewrites Redis from
//! it; every heartbeat also writes the slot counts, so a slot update lost on the
//! way to Redis is corrected within a lease tick.

use std::collections::HashMap;

/// This node's sessions and slots.
#[derive(Debug, Default)]
pub(super) struct Mirror {
    /// Session id → `listener:tenant` (registry values).
    sessions: HashMap<String, String>,
    /// Slots key → slots held (granted, being asked for, or taken while Redis
    /// was down).
    held: HashMap<String, usize>,
}

/// A copy of the mirror for a rewrite of Redis.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Snapshot {
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
    /// to hold: the error, until the next heartbeat, is on the safe side).
    pub fn take_slot(&mut self, key: &str) {
        *self.held.entry(key.to_owned()).or_default() += 1;
    }

    /// One slot of `key` less (released, or refused by the cluster); returns
    /// what is left.
    pub fn give_slot(&mut self, key: &str) -> usize {
        let Some(n) = self.held.get_mut(key) else {
            return 0;
        };
        *n -= 1;
        let left = *n;
        if left == 0 {
            self.held.remove(key);
        }
        left
    }

    /// Slot counts, for the heartbeat.
    pub fn held(&self) -> Vec<(String, usize)> {
        self.held.iter().map(|(k, n)| (k.clone(), *n)).collect()
    }

    /// Keys of every slot counter this node holds a share of.
    pub fn slot_keys(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }

    /// A copy for a rewrite of Redis.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            sessions: self
                .sessions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            held: self.held(),
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
        assert_eq!(m.give_slot("k"), 1);
        let mut held = m.held();
        held.sort();
        assert_eq!(held, [("j".to_string(), 1), ("k".to_string(), 1)]);
        assert_eq!(m.give_slot("k"), 0);
        // One release too many never underflows.
        assert_eq!(m.give_slot("k"), 0);
        assert_eq!(m.give_slot("nope"), 0);
        assert_eq!(m.slot_keys(), ["j"]);
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
