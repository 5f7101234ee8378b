//! A session's bounded outbound queue.
//!
//! Rooms and the Broker push deliveries into an [`Outbox`]; the Session drains the
//! matching [`OutboxReceiver`]. The queue is bounded twice: in messages and in
//! payload bytes. A push that would exceed either bound fails with
//! [`PushError::Full`]; the pusher then waits for room ([`Outbox::space`])
//! while the session drains, and closes it with 4009 only if it stays full for
//! `slow_consumer_timeout_ms` (a burst is not a slow consumer).
//!
//! Control commands (close with a code) have their own slot so that a full data
//! queue never blocks a close.
//!
//! A queue rather than the actor mailbox: it exists, with its bounds, before the
//! Session actor is started, so a session can be joined to its room before the
//! upgrade response is sent (see `docs/decisions.md`).
//!
//! One small mutex-protected state per session rather than two tokio channels:
//! an idle session costs about 130 bytes instead of 2.4 KiB (two cache-padded
//! channel headers and a first block of 32 slots), the buffer grows only while
//! messages are queued, and a push is one uncontended lock — the byte budget is
//! updated under it instead of with a separate atomic.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;

use crate::close::CloseCode;
use crate::delivery::Delivery;

/// A drained queue whose buffer grew beyond this many slots gives it back.
const SHRINK_ABOVE: usize = 256;

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The message or byte bound is reached: slow consumer.
    Full,
    /// The session is gone.
    Closed,
}

/// A command to the session that must not wait behind data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Send a close frame with this code and stop.
    Close(CloseCode),
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Delivery>,
    /// Payload bytes in `queue`.
    bytes: usize,
    data_waker: Option<Waker>,
    /// A pending command; the first one wins until the session takes it.
    control: Option<Control>,
    control_waker: Option<Waker>,
    /// Pushers waiting for room (a room, an admin publish): a handful at most.
    space_wakers: Vec<Waker>,
    /// Live [`Outbox`] clones.
    senders: usize,
    /// The session dropped its [`DataStream`].
    receiver_gone: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    max_messages: usize,
    max_bytes: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A delivery of `len` bytes fits now.
    fn fits(&self, st: &State, len: usize) -> bool {
        st.queue.len() < self.max_messages && (st.bytes + len <= self.max_bytes || st.bytes == 0)
    }

    /// Drained to half its bounds: a waiting pusher may go on (with room for
    /// a run of deliveries, rather than one at a time).
    fn below_low_water(&self, st: &State) -> bool {
        st.queue.len() <= self.max_messages / 2 && st.bytes <= self.max_bytes / 2
    }

    /// Takes the next delivery; wakes waiting pushers at the low-water mark.
    fn take(&self, st: &mut State) -> Option<Delivery> {
        let d = st.queue.pop_front()?;
        st.bytes -= d.len();
        if st.queue.is_empty() && st.queue.capacity() > SHRINK_ABOVE {
            st.queue = VecDeque::new();
        }
        if !st.space_wakers.is_empty() && self.below_low_water(st) {
            st.space_wakers.drain(..).for_each(Waker::wake);
        }
        Some(d)
    }
}

/// The sending half of a session's queue. Cheap to clone.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The receiving half, owned by the Session.
#[derive(Debug)]
pub struct OutboxReceiver {
    /// Deliveries, in order.
    pub data: DataStream,
    /// Control commands.
    pub control: ControlStream,
}

/// Creates a queue holding at most `max_messages` deliveries and `max_bytes`
/// payload bytes.
pub fn outbox(max_messages: usize, max_bytes: usize) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            bytes: 0,
            data_waker: None,
            control: None,
            control_waker: None,
            space_wakers: Vec::new(),
            senders: 1,
            receiver_gone: false,
        }),
        max_messages: max_messages.max(1),
        max_bytes,
    });
    (
        Outbox {
            shared: shared.clone(),
        },
        OutboxReceiver {
            data: DataStream {
                shared: shared.clone(),
            },
            control: ControlStream { shared },
        },
    )
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let wakers = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            if st.senders > 0 {
                return;
            }
            (st.data_waker.take(), st.control_waker.take())
        };
        // The streams end once every sender is gone.
        wakers.0.into_iter().chain(wakers.1).for_each(Waker::wake);
    }
}

impl Outbox {
    /// Queues a delivery without waiting.
    pub fn push(&self, delivery: Delivery) -> Result<(), PushError> {
        let len = delivery.len();
        let waker = {
            let mut st = self.shared.lock();
            if st.receiver_gone {
                return Err(PushError::Closed);
            }
            if !self.shared.fits(&st, len) {
                return Err(PushError::Full);
            }
            st.bytes += len;
            st.queue.push_back(delivery);
            st.data_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Asks the session to close with `code`. Never blocks; a close already
    /// pending makes a second one redundant, so it is dropped.
    pub fn close(&self, code: CloseCode) {
        let waker = {
            let mut st = self.shared.lock();
            if st.control.is_some() {
                return;
            }
            st.control = Some(Control::Close(code));
            st.control_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// True once the session has dropped its receiver.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().receiver_gone
    }

    /// Payload bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    /// Resolves once a delivery of `len` bytes fits and the queue has drained
    /// to half its bounds, or once the session is gone (the push that follows
    /// then says which). Never resolves for a session that stopped reading:
    /// callers bound the wait.
    pub fn space(&self, len: usize) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        std::future::poll_fn(move |cx| {
            let mut st = shared.lock();
            if st.receiver_gone || (shared.fits(&st, len) && shared.below_low_water(&st)) {
                return Poll::Ready(());
            }
            if !st.space_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                st.space_wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// Waits, for each of `full` in turn, until it has room for `delivery` and
/// pushes it there, giving up at `deadline`: the hold-back of a room or a
/// channel hub whose members' queues were at their bound. Returns each
/// member with the outcome of its push (`Full` when the deadline passed: a
/// slow consumer).
pub async fn push_when_space<K>(
    full: Vec<(K, Outbox)>,
    delivery: Delivery,
    deadline: std::time::Instant,
) -> Vec<(K, Outbox, Result<(), PushError>)> {
    let mut outcome = Vec::with_capacity(full.len());
    for (key, outbox) in full {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let pushed = match actix::clock::timeout(left, outbox.space(delivery.len())).await {
            Ok(()) => outbox.push(delivery.clone()),
            Err(_) => Err(PushError::Full),
        };
        outcome.push((key, outbox, pushed));
    }
    outcome
}

/// Stream of deliveries; gives their bytes back to the budget as they are taken.
#[derive(Debug)]
pub struct DataStream {
    shared: Arc<Shared>,
}

impl DataStream {
    /// Takes the next delivery if one is queued (for tests and probes).
    pub fn try_recv(&mut self) -> Option<Delivery> {
        self.shared.take(&mut self.shared.lock())
    }

    /// Waits for the next delivery; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for DataStream {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let mut st = self.shared.lock();
        if let Some(d) = self.shared.take(&mut st) {
            return Poll::Ready(Some(d));
        }
        if st.senders == 0 {
            return Poll::Ready(None);
        }
        if !st
            .data_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            st.data_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for DataStream {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.receiver_gone = true;
        // Queued deliveries can no longer be written: free them now.
        st.queue = VecDeque::new();
        st.bytes = 0;
        st.space_wakers.drain(..).for_each(Waker::wake);
    }
}

/// Stream of control commands.
#[derive(Debug)]
pub struct ControlStream {
    shared: Arc<Shared>,
}

impl ControlStream {
    /// Takes the next command if one is queued (for tests and probes).
    pub fn try_recv(&mut self) -> Option<Control> {
        self.shared.lock().control.take()
    }
}

impl Stream for ControlStream {
    type Item = Control;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Control>> {
        let mut st = self.shared.lock();
        if let Some(c) = st.control.take() {
            return Poll::Ready(Some(c));
        }
        if st.senders == 0 {
            return Poll::Ready(None);
        }
        if !st
            .control_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            st.control_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bin(n: usize) -> Delivery {
        Delivery::Binary(Bytes::from(vec![0u8; n]))
    }

    #[test]
    fn bounded_in_messages() {
        let (tx, mut rx) = outbox(2, 1 << 20);
        assert_eq!(tx.push(bin(1)), Ok(()));
        assert_eq!(tx.push(bin(1)), Ok(()));
        assert_eq!(tx.push(bin(1)), Err(PushError::Full));
        assert!(rx.data.try_recv().is_some());
        assert_eq!(tx.push(bin(1)), Ok(()));
    }

    #[test]
    fn bounded_in_bytes_but_one_oversized_message_passes_when_empty() {
        let (tx, mut rx) = outbox(100, 10);
        assert_eq!(tx.push(bin(8)), Ok(()));
        assert_eq!(tx.push(bin(8)), Err(PushError::Full));
        assert_eq!(tx.queued_bytes(), 8);
        rx.data.try_recv().unwrap();
        assert_eq!(tx.queued_bytes(), 0);
        assert_eq!(
            tx.push(bin(20)),
            Ok(()),
            "a lone message larger than the budget still goes"
        );
    }

    #[test]
    fn closed_receiver_reports_closed() {
        let (tx, rx) = outbox(2, 100);
        drop(rx);
        assert_eq!(tx.push(bin(1)), Err(PushError::Closed));
        assert!(tx.is_closed());
        assert_eq!(tx.queued_bytes(), 0);
    }

    #[test]
    fn close_goes_around_a_full_data_queue() {
        let (tx, mut rx) = outbox(1, 100);
        tx.push(bin(1)).unwrap();
        assert_eq!(tx.push(bin(1)), Err(PushError::Full));
        tx.close(CloseCode::SlowConsumer);
        assert_eq!(
            rx.control.try_recv(),
            Some(Control::Close(CloseCode::SlowConsumer))
        );
    }

    #[test]
    fn streams_end_when_every_sender_is_gone_and_wake_on_push() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::Wake;

        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);

        let (tx, mut rx) = outbox(4, 100);
        let tx2 = tx.clone();
        assert_eq!(Pin::new(&mut rx.data).poll_next(&mut cx), Poll::Pending);
        tx.push(bin(3)).unwrap();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "a push wakes the session"
        );
        assert_eq!(
            Pin::new(&mut rx.data).poll_next(&mut cx),
            Poll::Ready(Some(bin(3)))
        );
        assert_eq!(Pin::new(&mut rx.control).poll_next(&mut cx), Poll::Pending);
        tx.close(CloseCode::Kicked);
        tx.close(CloseCode::SlowConsumer);
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "a close wakes it once");
        assert_eq!(
            Pin::new(&mut rx.control).poll_next(&mut cx),
            Poll::Ready(Some(Control::Close(CloseCode::Kicked))),
            "the first close wins"
        );
        drop(tx);
        assert_eq!(Pin::new(&mut rx.data).poll_next(&mut cx), Poll::Pending);
        drop(tx2);
        assert_eq!(Pin::new(&mut rx.data).poll_next(&mut cx), Poll::Ready(None));
        assert_eq!(
            Pin::new(&mut rx.control).poll_next(&mut cx),
            Poll::Ready(None)
        );
    }

    #[test]
    fn a_drained_burst_gives_its_buffer_back() {
        let (tx, mut rx) = outbox(10_000, usize::MAX);
        for _ in 0..1_000 {
            tx.push(bin(1)).unwrap();
        }
        assert_eq!(tx.queued_bytes(), 1_000);
        while rx.data.try_recv().is_some() {}
        assert_eq!(tx.queued_bytes(), 0);
        assert!(tx.shared.lock().queue.capacity() <= SHRINK_ABOVE);
        drop(rx);
        assert_eq!(tx.push(bin(1)), Err(PushError::Closed));
    }
}
