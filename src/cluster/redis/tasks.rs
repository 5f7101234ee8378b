//! The tasks of the Redis backplane, all on its own arbiter thread:
//!
//! * **writer** — drains the bounded queue of [`Op`]s (publishes, registry and
//!   slot updates, admin replies) into pipelines, in order. While Redis is down
//!   a publish is lost (counted); a registry or slot update asks for a resync,
//!   which rewrites them from the mirror.
//! * **subscriber** — applies subscribe/unsubscribe requests in order.
//! * **ticker** — renews the lease every `lease_s / 3`; when a resync is wanted
//!   (Redis was unreachable, or an update could not be queued) it rewrites the
//!   node's whole state, retrying with exponential backoff and jitter, before
//!   declaring the node connected again.
//! * **rpc server** — answers other nodes' admin requests with the Broker's
//!   local answer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix::Recipient;
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use wsplus_actors::broker::NodeCall;

use super::dispatch::Incoming;
use super::link::Link;
use super::scripts::SlotOp;
use crate::cluster::{keys, wire};

/// Ops written per pipeline round trip.
const BATCH: usize = 256;
/// First retry delay after Redis became unreachable.
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Work for the writer task.
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
    /// Slots: one less for this node.
    Release { key: String },
}

/// Work for the subscriber task.
#[derive(Debug)]
pub(super) enum SubOp {
    /// Subscribe; the sender is told once Redis confirmed (or failed).
    Subscribe(String, oneshot::Sender<()>),
    /// Unsubscribe.
    Unsubscribe(String),
}

/// Writes queued ops in pipelines, in order.
pub(super) async fn writer(link: Arc<Link>, mut rx: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut publishes = 0u64;
        let mut state = false;
        let mut p = redis::pipe();
        let lease = link.timing.lease_ms();
        for op in batch.drain(..) {
            match op {
                Op::Publish { channel, payload } => {
                    publishes += 1;
                    p.publish(channel, payload).ignore();
                }
                Op::Reply { channel, payload } => {
                    p.publish(channel, payload).ignore();
                }
                Op::Register { session, value } => {
                    state = true;
                    // A new hash has no TTL until the next heartbeat: give it one.
                    p.hset(&link.registry, session, value)
                        .ignore()
                        .pexpire(&link.registry, lease as i64)
                        .ignore();
                }
                Op::Unregister { session } => {
                    state = true;
                    p.hdel(&link.registry, session).ignore();
                }
                Op::Release { key } => {
                    state = true;
                    p.add_command(link.scripts.slots(&key, SlotOp::Release, &link.node, lease))
                        .ignore();
                }
            }
        }
        if !link.up() {
            // Publishes are lost; registry and slots are rewritten by the resync.
            link.lose(publishes);
            if state {
                link.health.want_resync();
            }
            continue;
        }
        match link.pipe(&p).await {
            Ok(()) => {
                link.stats()
                    .published
                    .fetch_add(publishes, Ordering::Relaxed);
            }
            Err(e) => {
                link.lose(publishes);
                link.mark_down("publish", &e);
            }
        }
    }
}

/// Applies subscription changes in order.
pub(super) async fn subscriber(link: Arc<Link>, mut rx: mpsc::Receiver<SubOp>) {
    while let Some(op) = rx.recv().await {
        let (subscribe, channel, ack) = match op {
            SubOp::Subscribe(c, ack) => (true, c, Some(ack)),
            SubOp::Unsubscribe(c) => (false, c, None),
        };
        if link.up() {
            if let Err(e) = link.subscription(subscribe, &channel).await {
                link.mark_down("subscribe", &e);
            }
        }
        if !link.up() {
            if !subscribe {
                link.mirror().mark_stale(channel);
            }
            link.health.want_resync();
        }
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }
}

/// Renews the lease while connected; reconnects with backoff and resyncs when not.
pub(super) async fn ticker(link: Weak<Link>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(l) = link.upgrade().filter(|l| !l.left.load(Ordering::Relaxed)) else {
            return;
        };
        let health = l.health.clone();
        let mut retrying = false;
        let wait = if health.take_resync() {
            match l.resync().await {
                Ok(()) => {
                    if health.set_up() {
                        l.stats().connects.fetch_add(1, Ordering::Relaxed);
                        log::info!("cluster: connected to Redis as node {}", l.node);
                    }
                    backoff = MIN_BACKOFF;
                    // Changes made while the copy was written: another round now.
                    if health.resync_wanted() {
                        Duration::ZERO
                    } else {
                        l.timing.tick()
                    }
                }
                Err(e) => {
                    l.mark_down("reconnect", &e);
                    retrying = true;
                    let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
                    let wait = backoff + Duration::from_millis(jitter);
                    backoff = (backoff * 2).min(l.timing.tick());
                    wait
                }
            }
        } else {
            match l.heartbeat().await {
                Ok(()) => l.timing.tick(),
                Err(e) => {
                    l.mark_down("heartbeat", &e);
                    MIN_BACKOFF
                }
            }
        };
        drop(l);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // A resync wanted between ticks starts at once, except during backoff.
            _ = health.woken(), if !retrying => {}
        }
    }
}

/// Answers other nodes' admin requests with the Broker's local answers.
pub(super) async fn rpc_server(
    link: Arc<Link>,
    ops: mpsc::Sender<Op>,
    broker: Recipient<NodeCall>,
    mut rx: mpsc::Receiver<Incoming>,
) {
    while let Some((origin, id, request)) = rx.recv().await {
        let timeout = link.timing.timeout;
        let Ok(Ok(reply)) = tokio::time::timeout(timeout, broker.send(NodeCall { request })).await
        else {
            continue;
        };
        let op = Op::Reply {
            channel: keys::node_channel(&origin),
            payload: wire::reply(&link.node, id, &reply),
        };
        if ops.try_send(op).is_err() {
            log::warn!("cluster: queue full, admin reply to node {origin} dropped");
        }
    }
}
