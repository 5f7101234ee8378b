//! A session's bounded outbound queue.
//!
//! Rooms and the Broker push deliveries into an [`Outbox`]; the Session drains the
//! matching [`OutboxReceiver`]. The queue is bounded twice: in messages (channel
//! capacity) and in bytes (a shared counter the Session decrements as it writes).
//! A push that would exceed either bound fails with [`PushError::Full`]: the
//! consumer is too slow and is closed with 4009 by whoever pushed.
//!
//! Control commands (close with a code) travel on a separate small channel so that
//! a full data queue never blocks a close.
//!
//! Channels rather than the actor mailbox: the queue exists, with its capacity,
//! before the Session actor is started, so a session can be joined to its room
//! before the upgrade response is sent (see `docs/decisions.md`).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::close::CloseCode;
use crate::delivery::Delivery;

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

/// The sending half of a session's queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    data: mpsc::Sender<Delivery>,
    control: mpsc::Sender<Control>,
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
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
    let (data_tx, data_rx) = mpsc::channel(max_messages.max(1));
    let (control_tx, control_rx) = mpsc::channel(4);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            data: data_tx,
            control: control_tx,
            queued_bytes: queued_bytes.clone(),
            max_bytes,
        },
        OutboxReceiver {
            data: DataStream {
                rx: data_rx,
                queued_bytes,
            },
            control: ControlStream { rx: control_rx },
        },
    )
}

impl Outbox {
    /// Queues a delivery without waiting.
    pub fn push(&self, delivery: Delivery) -> Result<(), PushError> {
        let len = delivery.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before + len > self.max_bytes && before > 0 {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(PushError::Full);
        }
        match self.data.try_send(delivery) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => PushError::Full,
                    mpsc::error::TrySendError::Closed(_) => PushError::Closed,
                })
            }
        }
    }

    /// Asks the session to close with `code`. Never blocks; a close already
    /// pending makes a second one redundant, so a full control queue is fine.
    pub fn close(&self, code: CloseCode) {
        let _ = self.control.try_send(Control::Close(code));
    }

    /// True once the session has dropped its receiver.
    pub fn is_closed(&self) -> bool {
        self.data.is_closed()
    }

    /// Payload bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }
}

/// Stream of deliveries; decrements the byte budget as items are taken.
#[derive(Debug)]
pub struct DataStream {
    rx: mpsc::Receiver<Delivery>,
    queued_bytes: Arc<AtomicUsize>,
}

impl DataStream {
    /// Takes the next delivery if one is queued (for tests and probes).
    pub fn try_recv(&mut self) -> Option<Delivery> {
        let d = self.rx.try_recv().ok()?;
        self.queued_bytes.fetch_sub(d.len(), Ordering::Relaxed);
        Some(d)
    }

    /// Waits for the next delivery; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        let d = self.rx.recv().await?;
        self.queued_bytes.fetch_sub(d.len(), Ordering::Relaxed);
        Some(d)
    }
}

impl futures_core::Stream for DataStream {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let this = self.get_mut();
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(d)) => {
                this.queued_bytes.fetch_sub(d.len(), Ordering::Relaxed);
                Poll::Ready(Some(d))
            }
            other => other,
        }
    }
}

/// Stream of control commands.
#[derive(Debug)]
pub struct ControlStream {
    rx: mpsc::Receiver<Control>,
}

impl ControlStream {
    /// Takes the next command if one is queued (for tests and probes).
    pub fn try_recv(&mut self) -> Option<Control> {
        self.rx.try_recv().ok()
    }
}

impl futures_core::Stream for ControlStream {
    type Item = Control;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Control>> {
        self.get_mut().rx.poll_recv(cx)
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
}
