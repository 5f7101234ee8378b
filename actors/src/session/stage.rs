//! [`Stage`]: one session's calls to the backend — at most `depth` running,
//! the rest held unasked, and their outcomes taken out in the order the calls
//! were made, whatever order the backend answers in. Shared by the `message`
//! hook of payload/message listeners (the outcome is a [`super::HookAnswer`])
//! and the hook stage of a channels session (`staged.rs`).
//!
//! Why a session does not simply hand every call to the backend at once: the
//! listener's `max_in_flight` is shared by all its sessions, and one client
//! pipelining messages would take all of it (the others' calls refused as
//! `overloaded`) and, with a fixed queue, lose what did not fit. Here a
//! session runs at most `depth` calls (its share, at most
//! `wsplus::hooks::SESSION_DEPTH`); a call made beyond waits in the stage,
//! not yet asked, and starts when a running one ends. Once `depth` places are
//! taken the stage's [`Gate`] closes, so the session's socket is not read
//! until they drain and TCP slows the client down: nothing is dropped, and
//! what waits is bounded by what was decoded before the gate closed — one
//! message, or the command lines of one channels frame, within
//! `max_message_bytes` (the gate stands above the decoder, `inbound.rs`).
//!
//! The plain type keeps the bookkeeping (places, running count, gate) and has
//! its own tests; [`Staging`] and the `Session` methods below run the calls on
//! the session's context and apply the outcomes.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use actix::prelude::*;
use actix_web_actors::ws::WebsocketContext;

use crate::gate::Gate;

use super::ordered::{Ordered, Ticket};
use super::Session;

/// A call to the backend; it runs on the session's own thread.
pub(super) type Call<T> = Pin<Box<dyn Future<Output = T>>>;

/// One session's calls of one kind, in order.
pub(super) struct Stage<T> {
    /// Most calls running at once (at least 1).
    depth: usize,
    /// Outcomes in call order (and values that wait behind them).
    queue: Ordered<T>,
    /// Calls running now (at most `depth`).
    running: usize,
    /// Calls not started yet because `depth` are running, oldest first.
    deferred: VecDeque<(Ticket, Call<T>)>,
    /// Closed while `depth` places are taken: the socket is not read.
    gate: Gate,
}

impl<T> std::fmt::Debug for Stage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("depth", &self.depth)
            .field("places", &self.queue.len())
            .field("running", &self.running)
            .field("deferred", &self.deferred.len())
            .field("gate", &self.gate)
            .finish()
    }
}

impl<T> Stage<T> {
    /// A stage running at most `depth` calls at once (0 counts as 1).
    pub(super) fn new(depth: usize) -> Self {
        Self {
            depth: depth.max(1),
            queue: Ordered::default(),
            running: 0,
            deferred: VecDeque::new(),
            gate: Gate::new(),
        }
    }

    /// The gate the session's inbound stream waits at.
    pub(super) fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Nothing is waiting: a value need not queue behind anything.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues `value` behind the calls still waiting (it comes out after
    /// them, in order).
    pub(super) fn push_ready(&mut self, value: T) {
        self.queue.push_ready(value);
        self.close_when_full();
    }

    /// Takes a place for `call`. Returns it with its ticket when it may run
    /// now; otherwise it is kept and comes back from [`Stage::answered`]
    /// once a running call ends.
    pub(super) fn submit(&mut self, call: Call<T>) -> Option<(Ticket, Call<T>)> {
        let ticket = self.queue.reserve();
        self.close_when_full();
        if self.running >= self.depth {
            self.deferred.push_back((ticket, call));
            return None;
        }
        self.running += 1;
        Some((ticket, call))
    }

    /// Files the outcome of the running call `ticket`; returns the next
    /// deferred call, which now runs.
    pub(super) fn answered(&mut self, ticket: Ticket, value: T) -> Option<(Ticket, Call<T>)> {
        self.running = self.running.saturating_sub(1);
        self.queue.fill(ticket, value);
        let next = self.deferred.pop_front()?;
        self.running += 1;
        Some(next)
    }

    /// The oldest outcome, when it is in.
    pub(super) fn pop_ready(&mut self) -> Option<T> {
        self.queue.pop_ready()
    }

    /// Opens the gate again once fewer than `depth` places are taken and no
    /// call waits to start.
    pub(super) fn settle(&mut self) {
        if self.queue.len() < self.depth && self.deferred.is_empty() {
            self.gate.open();
        }
    }

    fn close_when_full(&mut self) {
        if self.queue.len() >= self.depth {
            self.gate.close();
        }
    }
}

/// A kind of staged call a [`Session`] makes: where its stage is and what an
/// outcome does once its turn comes.
pub(super) trait Staging<T> {
    /// The session's stage for `T`.
    fn stage_of(&mut self) -> &mut Stage<T>;

    /// Applies one outcome, in call order.
    fn apply(&mut self, value: T, ctx: &mut WebsocketContext<Session>);
}

impl Session {
    /// Takes a place for `call` and runs it, or keeps it until a running
    /// call of the same stage ends.
    pub(super) fn stage_call<T: 'static>(&mut self, call: Call<T>, ctx: &mut WebsocketContext<Self>)
    where
        Self: Staging<T>,
    {
        if let Some((ticket, call)) = self.stage_of().submit(call) {
            self.run_staged(ticket, call, ctx);
        }
    }

    /// Starts one call (a hook call takes its `max_in_flight` slot when first
    /// polled, i.e. here, not while it waits in the stage).
    fn run_staged<T: 'static>(
        &mut self,
        ticket: Ticket,
        call: Call<T>,
        ctx: &mut WebsocketContext<Self>,
    ) where
        Self: Staging<T>,
    {
        ctx.spawn(
            call.into_actor(self)
                .map(move |value, act, ctx| act.staged_answered(ticket, value, ctx)),
        );
    }

    /// Files an outcome, starts the next deferred call, then applies every
    /// outcome now at the front, in order.
    fn staged_answered<T: 'static>(
        &mut self,
        ticket: Ticket,
        value: T,
        ctx: &mut WebsocketContext<Self>,
    ) where
        Self: Staging<T>,
    {
        if let Some((ticket, call)) = self.stage_of().answered(ticket, value) {
            self.run_staged(ticket, call, ctx);
        }
        while let Some(next) = self.stage_of().pop_ready() {
            if self.closing {
                return;
            }
            self.apply(next, ctx);
        }
        self.stage_of().settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::ready;

    fn call(v: u32) -> Call<u32> {
        Box::pin(ready(v))
    }

    #[test]
    fn at_most_depth_run_the_rest_wait_unasked_and_the_gate_holds_the_socket() {
        let mut s = Stage::new(2);
        let a = s.submit(call(1)).expect("runs");
        assert!(s.gate().is_open());
        let b = s.submit(call(2)).expect("runs");
        assert!(!s.gate().is_open(), "depth places taken: socket paused");
        assert!(s.submit(call(3)).is_none(), "third waits unasked");
        assert!(s.submit(call(4)).is_none());
        // The second answers first: nothing comes out before the first,
        // and the third starts in the freed place.
        let c = s.answered(b.0, 2).expect("the third starts");
        assert_eq!(s.pop_ready(), None);
        s.settle();
        assert!(!s.gate().is_open(), "calls still wait to start");
        let d = s.answered(a.0, 1).expect("the fourth starts");
        assert_eq!(s.pop_ready(), Some(1));
        assert_eq!(s.pop_ready(), Some(2));
        assert_eq!(s.pop_ready(), None);
        s.settle();
        assert!(!s.gate().is_open(), "two places still taken");
        assert!(s.answered(d.0, 4).is_none());
        assert_eq!(s.pop_ready(), None, "the third is not in yet");
        s.settle();
        assert!(
            !s.gate().is_open(),
            "the fourth's answer waits for the third"
        );
        assert!(s.answered(c.0, 3).is_none());
        assert_eq!(s.pop_ready(), Some(3));
        assert_eq!(s.pop_ready(), Some(4));
        assert!(s.is_empty());
        s.settle();
        assert!(s.gate().is_open(), "all drained: the socket is read again");
    }

    #[test]
    fn values_pushed_behind_calls_wait_for_them_and_count_against_the_depth() {
        let mut s = Stage::new(2);
        let a = s.submit(call(1)).expect("runs");
        s.push_ready(2);
        assert!(!s.gate().is_open(), "a ready value takes a place too");
        assert_eq!(s.pop_ready(), None, "behind the call");
        assert!(s.answered(a.0, 1).is_none());
        assert_eq!(s.pop_ready(), Some(1));
        assert_eq!(s.pop_ready(), Some(2));
        s.settle();
        assert!(s.gate().is_open());
    }

    #[test]
    fn a_zero_depth_still_runs_one_call() {
        let mut s = Stage::new(0);
        assert!(s.submit(call(1)).is_some());
        assert!(s.submit(call(2)).is_none());
    }
}
