//! [`Ordered`]: results that complete in any order, taken out in the order
//! they were asked for.
//!
//! A channels session asks the backend about several commands at once (a
//! slow backend must not serialise a busy session to one round trip per
//! command), yet must hand the commands to its hub in the order the client
//! sent them: a `publish` sent after a `subscribe` must not reach the hub
//! first. Each command takes a place ([`Ordered::reserve`], or
//! [`Ordered::push_ready`] when it needs no answer), answers fill their places
//! ([`Ordered::fill`]) and [`Ordered::pop_ready`] yields the oldest as long as
//! it is filled. The owner bounds it: it stops reading its socket while
//! [`Ordered::len`] is at its limit.

use std::collections::VecDeque;

/// A place reserved in an [`Ordered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// A queue of places, oldest first, each empty until filled.
#[derive(Debug)]
pub struct Ordered<T> {
    /// The ticket number of the oldest place.
    head: u64,
    places: VecDeque<Option<T>>,
}

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Self {
            head: 0,
            places: VecDeque::new(),
        }
    }
}

impl<T> Ordered<T> {
    /// No place is taken.
    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Places taken, filled or not.
    pub fn len(&self) -> usize {
        self.places.len()
    }

    /// Takes an empty place at the back.
    pub fn reserve(&mut self) -> Ticket {
        let t = Ticket(self.head + self.places.len() as u64);
        self.places.push_back(None);
        t
    }

    /// Takes a place at the back, already filled.
    pub fn push_ready(&mut self, value: T) {
        self.places.push_back(Some(value));
    }

    /// Fills the place of `ticket` (ignored if it was already taken out).
    pub fn fill(&mut self, ticket: Ticket, value: T) {
        let Some(i) = ticket.0.checked_sub(self.head) else {
            return;
        };
        if let Some(place) = usize::try_from(i).ok().and_then(|i| self.places.get_mut(i)) {
            *place = Some(value);
        }
    }

    /// The oldest place's value, when it is filled.
    pub fn pop_ready(&mut self) -> Option<T> {
        if !matches!(self.places.front(), Some(Some(_))) {
            return None;
        }
        self.head += 1;
        self.places.pop_front().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_leave_in_the_order_their_places_were_taken() {
        let mut o = Ordered::default();
        let a = o.reserve();
        o.push_ready("b");
        let c = o.reserve();
        assert_eq!(o.len(), 3);
        o.fill(c, "c");
        assert_eq!(o.pop_ready(), None, "a is not answered yet");
        o.fill(a, "a");
        assert_eq!(o.pop_ready(), Some("a"));
        assert_eq!(o.pop_ready(), Some("b"));
        assert_eq!(o.pop_ready(), Some("c"));
        assert_eq!(o.pop_ready(), None);
        assert!(o.is_empty());
    }

    #[test]
    fn tickets_stay_valid_as_the_head_moves() {
        let mut o = Ordered::default();
        for round in 0..3 {
            let t1 = o.reserve();
            let t2 = o.reserve();
            o.fill(t2, round * 2 + 1);
            o.fill(t1, round * 2);
            assert_eq!(o.pop_ready(), Some(round * 2));
            assert_eq!(o.pop_ready(), Some(round * 2 + 1));
        }
        // A stale ticket (already taken out) changes nothing.
        let stale = Ticket(0);
        o.push_ready(9);
        o.fill(stale, 100);
        assert_eq!(o.pop_ready(), Some(9));
    }
}
