//! Every session's deadline (token expiry or session timeout) in one ordered
//! queue, served by a single Broker timer armed for the earliest one.
//!
//! Why not one actix timer per session: an actix context polls every spawned
//! future each time it wakes and cancels one by a linear scan, so with N
//! sessions every message the Broker handled (each Join, each leave) cost N
//! timer polls — quadratic in the number of connections.

use std::collections::BTreeMap;
use std::time::Instant;

/// Identifies one queued deadline (to remove it when its session leaves).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadlineKey {
    at: Instant,
    seq: u64,
}

/// Deadlines in time order; ties keep insertion order.
#[derive(Debug)]
pub struct Deadlines<T> {
    queue: BTreeMap<DeadlineKey, T>,
    next_seq: u64,
}

impl<T> Default for Deadlines<T> {
    fn default() -> Self {
        Self {
            queue: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<T> Deadlines<T> {
    /// Queues `value`, due at `at`.
    pub fn insert(&mut self, at: Instant, value: T) -> DeadlineKey {
        let key = DeadlineKey {
            at,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.queue.insert(key, value);
        key
    }

    /// Removes a deadline that is no longer wanted.
    pub fn remove(&mut self, key: DeadlineKey) -> Option<T> {
        self.queue.remove(&key)
    }

    /// When the earliest deadline is due.
    pub fn earliest(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|(k, _)| k.at)
    }

    /// Takes every deadline due at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Vec<T> {
        let mut due = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().at > now {
                break;
            }
            due.push(entry.remove());
        }
        due
    }

    /// Deadlines queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_deadlines_come_out_in_order_and_removed_ones_never() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Deadlines::default();
        d.insert(t0 + ms(30), "c");
        let b = d.insert(t0 + ms(20), "b");
        d.insert(t0 + ms(10), "a");
        d.insert(t0 + ms(10), "a2");
        let gone = d.insert(t0 + ms(5), "gone");
        assert_eq!(d.len(), 5);
        assert_eq!(d.remove(gone), Some("gone"));
        assert_eq!(d.remove(gone), None);
        assert_eq!(d.earliest(), Some(t0 + ms(10)));
        assert!(d.pop_due(t0).is_empty());
        assert_eq!(d.pop_due(t0 + ms(10)), vec!["a", "a2"]);
        assert_eq!(d.earliest(), Some(t0 + ms(20)));
        assert_eq!(d.remove(b), Some("b"));
        assert_eq!(d.pop_due(t0 + ms(100)), vec!["c"]);
        assert_eq!(d.len(), 0);
        assert_eq!(d.earliest(), None);
    }
}
