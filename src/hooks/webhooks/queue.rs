//! [`EventQueue`]: the events of one webhook waiting for delivery, in order,
//! bounded in events and bytes.
//!
//! One FIFO per webhook, not one per tenant: a batch is the head of the
//! queue, and it leaves the queue only once the backend answered 2xx, so
//! events reach the backend in the order they happened — per tenant, and
//! across tenants too. The cost is head-of-line blocking between tenants,
//! which does not matter here: all of them go to the same URL, so when it is
//! down it is down for every tenant. Events being delivered stay counted
//! until acknowledged, so the bounds hold the whole backlog. When full, the
//! newest event is refused (and counted by the caller): what was queued first
//! is delivered first.

use std::collections::VecDeque;
use std::time::Instant;

/// Serialized events waiting, oldest first.
#[derive(Debug)]
pub struct EventQueue {
    events: VecDeque<(Instant, String)>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
}

impl EventQueue {
    /// An empty queue holding at most `max_events` events and `max_bytes`
    /// bytes of serialized events.
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            events: VecDeque::new(),
            bytes: 0,
            max_events,
            max_bytes,
        }
    }

    /// Appends `event` (one serialized JSON object); false when it does not
    /// fit, and the queue is unchanged.
    pub fn push(&mut self, event: String, now: Instant) -> bool {
        if self.events.len() >= self.max_events || self.bytes + event.len() > self.max_bytes {
            return false;
        }
        self.bytes += event.len();
        self.events.push_back((now, event));
        true
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest waiting event was queued.
    pub fn oldest(&self) -> Option<Instant> {
        self.events.front().map(|(at, _)| *at)
    }

    /// The body of a batch of the first `max` events, `{"events": [...]}`,
    /// and how many it holds.
    pub fn batch(&self, max: usize) -> (String, usize) {
        let n = self.events.len().min(max);
        let len: usize = self.events.iter().take(n).map(|(_, e)| e.len() + 1).sum();
        let mut body = String::with_capacity(len + 13);
        body.push_str("{\"events\":[");
        for (i, (_, e)) in self.events.iter().take(n).enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(e);
        }
        body.push_str("]}");
        (body, n)
    }

    /// Removes the first `n` events (a delivered batch).
    pub fn ack(&mut self, n: usize) {
        for (_, e) in self.events.drain(..n.min(self.events.len())) {
            self.bytes -= e.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_the_head_in_order_until_acknowledged() {
        let now = Instant::now();
        let mut q = EventQueue::new(10, 1 << 20);
        for i in 0..5 {
            assert!(q.push(format!("{{\"n\":{i}}}"), now));
        }
        let (body, n) = q.batch(3);
        assert_eq!(
            (body.as_str(), n),
            (r#"{"events":[{"n":0},{"n":1},{"n":2}]}"#, 3)
        );
        // Not acknowledged: the same batch again.
        assert_eq!(q.batch(3).0, body);
        q.ack(3);
        assert_eq!(q.batch(100).0, r#"{"events":[{"n":3},{"n":4}]}"#);
        q.ack(2);
        assert!(q.is_empty());
        assert_eq!((q.bytes(), q.batch(100).1), (0, 0));
    }

    #[test]
    fn bounded_in_events_and_bytes() {
        let now = Instant::now();
        let mut q = EventQueue::new(2, 1 << 20);
        assert!(q.push("a".into(), now));
        assert!(q.push("b".into(), now));
        assert!(!q.push("c".into(), now));
        assert_eq!(q.len(), 2);
        let mut q = EventQueue::new(100, 10);
        assert!(q.push("12345".into(), now));
        assert!(!q.push("123456".into(), now));
        assert!(q.push("12345".into(), now));
        assert_eq!(q.bytes(), 10);
        q.ack(1);
        assert!(q.push("1234".into(), now));
        assert_eq!(q.oldest(), Some(now));
    }
}
