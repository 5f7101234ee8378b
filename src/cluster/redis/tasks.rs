//! The tasks of the Redis backplane, all on its own arbiter thread (the
//! subscription task is in [`super::subs`]):
//!
//! * **writer** — drains the [`super::queue`] into pipelines, in order:
//!   publishes, admin replies, registry and slot updates, and rewrites of the
//!   node's state. While Redis is down a publish is lost (counted); a registry
//!   or slot update is skipped until the next rewrite, which the ticker queues
//!   after it and which carries it (the mirror is the source of both).
//! * **ticker** — renews the lease every `lease_s / 3`; when a resync is wanted
//!   (Redis was unreachable, or an update could not be queued) it takes the
//!   request *before* copying the state and rewrites the node's whole state,
//!   retrying with exponential backoff and jitter, before declaring the node
//!   connected again; a request made meanwhile starts another round at once.
//! * **rpc server** — answers other nodes' admin requests with the Broker's
//!   local answer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix::Recipient;
use rand::Rng;
use wsplus_actors::broker::NodeCall;

use super::dispatch::Incoming;
use super::link::Link;
use super::queue::{Op, OpReceiver};
use super::scripts::{self, Batch, SlotOp};
use crate::cluster::{keys, wire, LostReason};

/// Ops written per pipeline round trip.
const BATCH: usize = 256;
/// First retry delay after Redis became unreachable.
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// One pipeline of the writer.
struct Pipeline {
    b: Batch,
    /// Publishes in it (lost if it fails).
    publishes: u64,
}

impl Pipeline {
    fn new() -> Self {
        Self {
            b: Batch::new(),
            publishes: 0,
        }
    }

    /// Adds `op` (never a rewrite); `synced` says whether Redis holds this
    /// node's state, so that updates to it make sense.
    fn add(&mut self, link: &Link, op: Op, synced: bool) {
        let lease = link.timing.lease_ms();
        match op {
            Op::Publish { channel, payload } => {
                if !link.up() {
                    return link.lose(LostReason::RedisDown, 1);
                }
                self.publishes += 1;
                self.b.cmd(redis::Cmd::publish(channel, payload));
            }
            Op::Reply { channel, payload } => {
                self.b.cmd(redis::Cmd::publish(channel, payload));
            }
            // Not synced: the rewrite queued after this carries it.
            Op::Register { .. } | Op::Unregister { .. } | Op::Slots { .. } if !synced => {}
            Op::Register { session, value } => {
                // A new hash has no TTL until the next heartbeat: give it one.
                self.b
                    .cmd(redis::Cmd::hset(&link.registry, session, value))
                    .cmd(redis::Cmd::pexpire(&link.registry, lease as i64));
            }
            Op::Unregister { session } => {
                self.b.cmd(redis::Cmd::hdel(&link.registry, session));
            }
            Op::Slots { key, n } => {
                self.b
                    .call(scripts::slots(&key, SlotOp::Set(n), &link.node, lease));
            }
            Op::Rewrite(..) => unreachable!("rewrites are not pipelined"),
        }
    }

    /// Sends what was added; false if Redis failed.
    async fn flush(&mut self, link: &Link) -> bool {
        let full = std::mem::replace(self, Self::new());
        if full.b.is_empty() {
            return true;
        }
        match link.run::<()>(&full.b).await {
            Ok(()) => {
                link.stats()
                    .published
                    .fetch_add(full.publishes, Ordering::Relaxed);
                true
            }
            Err(e) => {
                link.lose(LostReason::RedisDown, full.publishes);
                link.mark_down("write", &e);
                false
            }
        }
    }
}

/// Writes queued ops in pipelines, in order.
pub(super) async fn writer(link: Arc<Link>, mut rx: OpReceiver) {
    // Redis holds this node's state: set by a rewrite, cleared by a failure.
    let mut synced = false;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let held: usize = batch.iter().map(Op::size).sum();
        let mut pipe = Pipeline::new();
        for op in batch.drain(..) {
            match op {
                Op::Rewrite(snap, ack) => {
                    // What came before the rewrite goes first; its failure is
                    // repaired by the rewrite itself.
                    pipe.flush(&link).await;
                    let done = link.rewrite(&snap).await;
                    synced = done.is_ok();
                    let _ = ack.send(done);
                }
                op => pipe.add(&link, op, synced),
            }
        }
        synced &= pipe.flush(&link).await;
        rx.written(held);
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
    broker: Recipient<NodeCall>,
    mut rx: tokio::sync::mpsc::Receiver<Incoming>,
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
        if link.ops.push(op).is_err() {
            log::warn!("cluster: queue full, admin reply to node {origin} dropped");
        }
    }
}
