//! Subscriptions: which Redis channels this node receives, kept in step with
//! Redis by one task that batches and pipelines SUBSCRIBE/UNSUBSCRIBE.
//!
//! Any channel name can be wanted and unwanted at any time ([`Subscriptions::want`],
//! [`Subscriptions::unwant`]); what arrives on it is routed by
//! [`super::dispatch::Dispatch`] by channel kind ([`crate::cluster::keys::Channel`]).
//! That is the seam for a new kind of cross-node traffic (for example channel
//! publications keyed by listener, tenant and channel, subscribed only while a
//! node has a local subscriber): add a `Channel` variant and its name in
//! `keys.rs`, one arm in `Dispatch::on_message`, and call `want`/`unwant` as
//! local interest comes and goes. Batching, pipelining, resubscription after a
//! reconnect and cleanup of what could not be unsubscribed come with it.
//!
//! Ordering: the wanted set and the queue to the task are changed under one
//! mutex, so the task sees changes in the order they were made, and a resync
//! (the whole wanted set, queued under the same mutex) is ordered with them: a
//! channel unwanted just after a resync was queued is unsubscribed after it.
//!
//! The task keeps `sent`: what Redis has, or may have, been told to send. A
//! batch is reduced to its net effect per channel, then sent as SUBSCRIBE and
//! UNSUBSCRIBE commands of at most [`CHUNK`] channels each, all in flight at
//! once on the multiplexed connection. While Redis is down nothing is sent and
//! a resync is asked for; the resync subscribes every wanted channel and
//! unsubscribes everything in `sent` that is no longer wanted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::try_join_all;
use tokio::sync::{mpsc, oneshot};

use super::error::LinkError;
use super::link::{Health, Link};

/// Channels per SUBSCRIBE/UNSUBSCRIBE command.
pub(super) const CHUNK: usize = 500;
/// Requests handled per batch.
const BATCH: usize = 1024;

/// Work for the subscription task.
#[derive(Debug)]
pub(super) enum SubOp {
    /// Receive this channel; the sender is told once Redis confirmed (or once
    /// it is known that it cannot right now).
    Want(String, oneshot::Sender<()>),
    /// Stop receiving this channel.
    Unwant(String),
    /// Make Redis match exactly these channels.
    Resync(Vec<String>, oneshot::Sender<Result<(), LinkError>>),
}

struct Inner {
    wanted: HashSet<String>,
    tx: mpsc::Sender<SubOp>,
}

/// The channels this node wants, and the queue to the subscription task.
pub(super) struct Subscriptions {
    inner: Mutex<Inner>,
    health: Arc<Health>,
}

impl Subscriptions {
    /// A set whose requests go to `tx` (capacity = `cluster.queue`).
    pub fn new(tx: mpsc::Sender<SubOp>, health: Arc<Health>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                wanted: HashSet::new(),
                tx,
            }),
            health,
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts receiving `channel`. The receiver resolves once Redis confirmed;
    /// there is none to wait for while Redis is down or when the request could
    /// not be queued (the resync that follows subscribes the channel).
    pub fn want(&self, channel: String) -> Option<oneshot::Receiver<()>> {
        let mut inner = self.inner();
        inner.wanted.insert(channel.clone());
        let (ack, rx) = oneshot::channel();
        if inner.tx.try_send(SubOp::Want(channel, ack)).is_err() {
            self.health.want_resync();
            return None;
        }
        self.health.is_up().then_some(rx)
    }

    /// Stops receiving `channel`.
    pub fn unwant(&self, channel: &str) {
        let mut inner = self.inner();
        inner.wanted.remove(channel);
        if inner
            .tx
            .try_send(SubOp::Unwant(channel.to_owned()))
            .is_err()
        {
            self.health.want_resync();
        }
    }

    /// Queues a resync to `fixed` plus every wanted channel.
    pub fn resync(
        &self,
        mut fixed: Vec<String>,
    ) -> Result<oneshot::Receiver<Result<(), LinkError>>, LinkError> {
        let inner = self.inner();
        fixed.extend(inner.wanted.iter().cloned());
        let (ack, rx) = oneshot::channel();
        inner
            .tx
            .try_send(SubOp::Resync(fixed, ack))
            .map_err(|_| LinkError::QueueFull)?;
        Ok(rx)
    }

    /// How many channels are wanted.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner().wanted.len()
    }
}

/// Net effect of a run of requests: channel → wanted.
type Net = HashMap<String, bool>;

/// Applies subscription requests in order, batched.
pub(super) async fn subscriber(link: Arc<Link>, mut rx: mpsc::Receiver<SubOp>) {
    let mut sent: HashSet<String> = HashSet::new();
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut net = Net::new();
        let mut acks = Vec::new();
        for op in batch.drain(..) {
            match op {
                SubOp::Want(ch, ack) => {
                    net.insert(ch, true);
                    acks.push(ack);
                }
                SubOp::Unwant(ch) => {
                    net.insert(ch, false);
                }
                SubOp::Resync(all, ack) => {
                    apply(&link, &mut sent, std::mem::take(&mut net)).await;
                    let _ = ack.send(resync(&link, &mut sent, all).await);
                }
            }
        }
        apply(&link, &mut sent, net).await;
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// Sends the net effect of a batch.
async fn apply(link: &Link, sent: &mut HashSet<String>, net: Net) {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for (ch, want) in net {
        match (want, sent.contains(&ch)) {
            (true, false) => on.push(ch),
            (false, true) => off.push(ch),
            _ => {}
        }
    }
    if on.is_empty() && off.is_empty() {
        return;
    }
    if !link.up() {
        // Unsent unsubscriptions stay in `sent`: the resync sends them.
        link.health.want_resync();
        return;
    }
    match change(link, &on, &off).await {
        Ok(()) => {
            sent.extend(on);
            for ch in &off {
                sent.remove(ch);
            }
        }
        Err(e) => link.mark_down("subscribe", &e),
    }
}

/// Makes Redis send exactly `all` (after a reconnect, Redis sends nothing).
async fn resync(
    link: &Link,
    sent: &mut HashSet<String>,
    all: Vec<String>,
) -> Result<(), LinkError> {
    let keep: HashSet<&String> = all.iter().collect();
    let off: Vec<String> = sent.iter().filter(|c| !keep.contains(c)).cloned().collect();
    change(link, &all, &off).await?;
    *sent = all.into_iter().collect();
    Ok(())
}

/// SUBSCRIBE `on` and UNSUBSCRIBE `off` (disjoint), in chunks, all in flight
/// at once.
async fn change(link: &Link, on: &[String], off: &[String]) -> Result<(), LinkError> {
    let subs = on.chunks(CHUNK).map(|c| link.subscription(true, c));
    let unsubs = off.chunks(CHUNK).map(|c| link.subscription(false, c));
    try_join_all(subs.chain(unsubs)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_asks_for_a_resync_and_keeps_the_wanted_set() {
        let (tx, mut rx) = mpsc::channel(1);
        let health = Arc::new(Health::default());
        health.take_resync();
        let s = Subscriptions::new(tx, health.clone());
        health.set_up();
        assert!(s.want("a".into()).is_some());
        assert!(s.want("b".into()).is_none(), "queue full: no wait");
        assert!(health.take_resync());
        assert_eq!(s.len(), 2);
        assert!(matches!(rx.try_recv(), Ok(SubOp::Want(c, _)) if c == "a"));
        // A resync carries the fixed channels and every wanted one, in order
        // after the requests queued before it.
        s.unwant("a");
        assert!(s.resync(vec!["n".into()]).is_err(), "queue full");
        assert!(matches!(rx.try_recv(), Ok(SubOp::Unwant(c)) if c == "a"));
        let _ack = s.resync(vec!["n".into()]).unwrap();
        let Ok(SubOp::Resync(mut all, _)) = rx.try_recv() else {
            panic!("resync queued")
        };
        all.sort();
        assert_eq!(all, ["b", "n"]);
    }
}
