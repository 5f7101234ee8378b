//! A gate publishers wait at: open, or closed until whoever closed it opens it
//! again. A room closes its gate while one of its members' outbound queues is
//! at its bound (see `room.rs`); a session closes its own while a message of
//! its is waiting for a busy room or router. A session's inbound byte stream
//! ([`GatedStream`]) yields nothing while any of its gates is closed, so its
//! socket is simply not read and TCP slows the client down.
//!
//! Waiting costs one waker per waiting stream, kept under a key of its own (a
//! stream polled again while the gate is closed replaces its waker), so the
//! waker table is bounded by the number of streams, not of polls.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;

#[derive(Debug, Default)]
struct Waiters {
    next_key: u64,
    wakers: HashMap<u64, Waker>,
}

#[derive(Debug, Default)]
struct Inner {
    closed: AtomicBool,
    waiters: Mutex<Waiters>,
}

impl Inner {
    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An open/closed flag with wake-ups on opening. Clones share the gate.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<Inner>);

impl Gate {
    /// An open gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// True while publishers may go on.
    pub fn is_open(&self) -> bool {
        !self.0.closed.load(Ordering::Acquire)
    }

    /// Holds publishers back until [`Gate::open`].
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
    }

    /// Lets publishers go on and wakes every waiting stream.
    pub fn open(&self) {
        self.0.closed.store(false, Ordering::Release);
        let wakers: Vec<Waker> = self.0.waiters().wakers.drain().map(|(_, w)| w).collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Resolves once the gate is open (at once if it is).
    pub fn opened(&self) -> Opened {
        Opened(self.waiter())
    }

    /// A place in the queue of waiters, for one stream.
    pub fn waiter(&self) -> GateWaiter {
        let key = {
            let mut w = self.0.waiters();
            w.next_key += 1;
            w.next_key
        };
        GateWaiter {
            gate: self.clone(),
            key,
        }
    }
}

/// The future of [`Gate::opened`].
#[derive(Debug)]
pub struct Opened(GateWaiter);

impl std::future::Future for Opened {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_open(cx)
    }
}

/// One stream's registration at a [`Gate`]; leaves the waiter table on drop.
#[derive(Debug)]
pub struct GateWaiter {
    gate: Gate,
    key: u64,
}

impl GateWaiter {
    /// `Ready` when the gate is open; otherwise wakes `cx` once it opens.
    pub fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.gate.is_open() {
            return Poll::Ready(());
        }
        let mut w = self.gate.0.waiters();
        // Checked again under the lock: `open` drains the table under it.
        if self.gate.is_open() {
            return Poll::Ready(());
        }
        w.wakers.insert(self.key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for GateWaiter {
    fn drop(&mut self) {
        self.gate.0.waiters().wakers.remove(&self.key);
    }
}

/// A stream that yields nothing while any of its gates is closed.
#[derive(Debug)]
pub struct GatedStream<S> {
    inner: S,
    gates: Vec<GateWaiter>,
}

impl<S> GatedStream<S> {
    /// `inner`, read only while every gate of `gates` is open.
    pub fn new(inner: S, gates: &[&Gate]) -> Self {
        Self {
            inner,
            gates: gates.iter().map(|g| g.waiter()).collect(),
        }
    }
}

impl<S: Stream + Unpin> Stream for GatedStream<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.get_mut();
        for g in &this.gates {
            if g.poll_open(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Pin::new(&mut this.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Numbers(u32);
    impl Stream for Numbers {
        type Item = u32;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<u32>> {
            self.0 += 1;
            Poll::Ready(Some(self.0))
        }
    }

    #[test]
    fn opened_waits_for_the_gate_to_open() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let gate = Gate::new();
        assert_eq!(Pin::new(&mut gate.opened()).poll(&mut cx), Poll::Ready(()));
        gate.close();
        let mut opened = gate.opened();
        assert_eq!(Pin::new(&mut opened).poll(&mut cx), Poll::Pending);
        gate.open();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(Pin::new(&mut opened).poll(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn a_closed_gate_holds_the_stream_and_opening_wakes_it_once() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (room, own) = (Gate::new(), Gate::new());
        let mut s = GatedStream::new(Numbers(0), &[&room, &own]);
        assert_eq!(Pin::new(&mut s).poll_next(&mut cx), Poll::Ready(Some(1)));
        room.close();
        for _ in 0..100 {
            assert_eq!(Pin::new(&mut s).poll_next(&mut cx), Poll::Pending);
        }
        assert_eq!(room.0.waiters().wakers.len(), 1, "one waker per stream");
        own.close();
        room.open();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(Pin::new(&mut s).poll_next(&mut cx), Poll::Pending);
        own.open();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(Pin::new(&mut s).poll_next(&mut cx), Poll::Ready(Some(2)));
        room.close();
        assert_eq!(Pin::new(&mut s).poll_next(&mut cx), Poll::Pending);
        drop(s);
        assert!(
            room.0.waiters().wakers.is_empty(),
            "a dropped stream leaves"
        );
    }
}
