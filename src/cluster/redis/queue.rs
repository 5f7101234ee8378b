//! The queue to the writer task, bounded twice: in operations (`cluster.queue`)
//! and in bytes (`cluster.queue_bytes`), so a burst of large messages while
//! Redis is slow cannot hold more than `queue_bytes` of payload (a message bound
//! alone allowed `queue` × the largest message). Bytes stay counted until the
//! writer has written them, so the batch it holds counts too. A full queue
//! refuses the new operation at once; the caller counts the loss by reason.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::error::LinkError;
use super::mirror::Snapshot;

/// Work for the writer task, written in queue order.
#[derive(Debug)]
pub(super) enum Op {
    /// A message for other nodes (counted as lost if it fails).
    Publish { channel: String, payload: Vec<u8> },
    /// An admin reply (not a client message).
    Reply { channel: String, payload: Vec<u8> },
    /// Registry: a session joined this node.
    Register { session: String, value: String },
    /// Registry: a session left.
    Unregister { session: String },
    /// Slots: this node now holds `n` slots of `key` (absolute, so a lost
    /// update is corrected by the next one).
    Slots { key: String, n: usize },
    /// Rewrite the registry and slots from the mirror (after a reconnect).
    Rewrite(Snapshot, oneshot::Sender<Result<(), LinkError>>),
}

impl Op {
    /// Bytes held while queued (control operations count for nothing).
    pub fn size(&self) -> usize {
        match self {
            Op::Publish { channel, payload } | Op::Reply { channel, payload } => {
                channel.len() + payload.len()
            }
            Op::Register { session, value } => session.len() + value.len(),
            Op::Unregister { session } => session.len(),
            Op::Slots { key, .. } => key.len(),
            Op::Rewrite(..) => 0,
        }
    }
}

/// Which bound refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Full {
    /// `cluster.queue` operations are waiting.
    #[error("queue full")]
    Messages,
    /// Taking it would exceed `cluster.queue_bytes`.
    #[error("queue bytes full")]
    Bytes,
}

/// The sending side (cheap to share).
#[derive(Debug)]
pub(super) struct OpQueue {
    tx: mpsc::Sender<Op>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The writer's side.
#[derive(Debug)]
pub(super) struct OpReceiver {
    rx: mpsc::Receiver<Op>,
    bytes: Arc<AtomicUsize>,
}

/// A queue of at most `messages` operations holding at most `max_bytes`.
pub(super) fn channel(messages: usize, max_bytes: usize) -> (OpQueue, OpReceiver) {
    let (tx, rx) = mpsc::channel(messages);
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        OpQueue {
            tx,
            bytes: bytes.clone(),
            max_bytes,
        },
        OpReceiver { rx, bytes },
    )
}

impl OpQueue {
    /// Queues `op`, or refuses it (never waits).
    pub fn push(&self, op: Op) -> Result<(), Full> {
        let size = op.size();
        let before = self.bytes.fetch_add(size, Ordering::Relaxed);
        if size > 0 && before + size > self.max_bytes {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            return Err(Full::Bytes);
        }
        if self.tx.try_send(op).is_err() {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            return Err(Full::Messages);
        }
        Ok(())
    }

    /// Bytes queued now.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl OpReceiver {
    /// Waits for at least one operation and takes up to `limit`; 0 when every
    /// sender is gone. Their bytes count until [`Self::written`].
    pub async fn recv_many(&mut self, buf: &mut Vec<Op>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }

    /// Operations of `bytes` bytes were written (or given up on).
    pub fn written(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(n: usize) -> Op {
        Op::Publish {
            channel: "c".into(),
            payload: vec![0; n - 1],
        }
    }

    #[tokio::test]
    async fn refuses_beyond_either_bound_and_frees_bytes_when_taken() {
        let (q, mut rx) = channel(3, 100);
        q.push(publish(60)).unwrap();
        assert_eq!(q.push(publish(41)), Err(Full::Bytes));
        q.push(publish(40)).unwrap();
        assert_eq!(q.bytes(), 100);
        // Control operations are never refused for bytes.
        let (ack, _) = oneshot::channel();
        q.push(Op::Rewrite(Snapshot::default(), ack)).unwrap();
        assert_eq!(
            q.push(Op::Unregister {
                session: String::new()
            }),
            Err(Full::Messages)
        );
        assert_eq!(q.bytes(), 100, "a refused op holds nothing");

        // Taken by the writer, still held until written.
        let mut buf = Vec::new();
        assert_eq!(rx.recv_many(&mut buf, 1).await, 1);
        assert_eq!(q.bytes(), 100);
        rx.written(buf[0].size());
        assert_eq!(q.bytes(), 40);
        q.push(publish(60)).unwrap();
        buf.clear();
        assert_eq!(rx.recv_many(&mut buf, 10).await, 3);
        rx.written(buf.iter().map(Op::size).sum());
        assert_eq!(q.bytes(), 0);
    }
}
