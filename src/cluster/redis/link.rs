//! The connection side of the Redis backplane: the node's two connections
//! (commands, and subscriptions with their push handler), the queues to its
//! tasks, its health (a watch channel, so waiting for a connection is an await,
//! not a poll), and every round trip the tasks and the Broker-facing handle
//! make: heartbeat, resync, slot requests, registry look-ups, admin calls.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use wsplus_actors::backplane::{NodeReply, NodeRequest, SlotDecision};
use wsplus_actors::counters::DropReason;
use wsplus_actors::Scope;

use super::dispatch::Dispatch;
use super::error::{bounded, LinkError};
use super::mirror::{Mirror, Snapshot};
use super::queue::{Full, Op, OpQueue};
use super::scripts::{self, Batch, Call, SlotOp};
use super::subs::{Subscriptions, CHUNK};
use super::Timing;
use crate::cluster::keys;
use crate::cluster::wire;
use crate::cluster::{ClusterStats, LostReason, NodeListener};

/// Whether Redis answers and this node's state there is current.
#[derive(Debug)]
pub(super) struct Health {
    /// True while connected and synced; a watch so starting nodes can await it.
    up: watch::Sender<bool>,
    /// Redis may not hold this node's truth: the ticker rewrites it.
    resync: AtomicBool,
    /// Wakes the ticker when a resync is wanted.
    wake: Notify,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            up: watch::Sender::new(false),
            // A fresh node has written nothing yet.
            resync: AtomicBool::new(true),
            wake: Notify::new(),
        }
    }
}

impl Health {
    /// True while Redis answers and this node's state there is current.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Declares the node up; true if it was down.
    pub fn set_up(&self) -> bool {
        self.up.send_if_modified(|u| !std::mem::replace(u, true))
    }

    /// Declares the node down; true if it was up.
    pub fn set_down(&self) -> bool {
        self.up.send_if_modified(|u| std::mem::replace(u, false))
    }

    /// Asks the ticker to rewrite this node's state in Redis.
    pub fn want_resync(&self) {
        self.resync.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Takes the resync request. Taken *before* the state is copied, so a change
    /// made while the copy is written asks for another resync.
    pub fn take_resync(&self) -> bool {
        self.resync.swap(false, Ordering::SeqCst)
    }

    /// True while a resync is wanted.
    pub fn resync_wanted(&self) -> bool {
        self.resync.load(Ordering::SeqCst)
    }

    /// Resolves when a resync is wanted.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Waits at most `timeout` for the node to be up.
    pub async fn wait_up(&self, timeout: Duration) -> bool {
        let mut rx = self.up.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|u| *u)).await;
        self.is_up()
    }
}

/// The node's connections and the state its tasks share.
pub(super) struct Link {
    pub node: String,
    pub registry: String,
    pub listeners: Vec<NodeListener>,
    pub timing: Timing,
    pub conn: ConnectionManager,
    pub pubsub: ConnectionManager,
    pub mirror: Mutex<Mirror>,
    /// To the writer task.
    pub ops: OpQueue,
    /// Wanted channels and the queue to the subscription task.
    pub subs: Subscriptions,
    pub dispatch: Arc<Dispatch>,
    pub health: Arc<Health>,
    pub next_call: AtomicU64,
    /// Set by a clean stop: the ticker stops renewing the lease.
    pub left: AtomicBool,
}

impl Link {
    pub fn mirror(&self) -> MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn up(&self) -> bool {
        self.health.is_up()
    }

    pub fn stats(&self) -> &ClusterStats {
        &self.dispatch.stats
    }

    /// Records that Redis did not answer: the node is degraded until the ticker
    /// has rewritten its state.
    pub fn mark_down(&self, what: &str, e: &LinkError) {
        if self.health.set_down() {
            log::warn!("cluster: Redis unreachable ({what}: {e}); delivering locally only");
        }
        self.health.want_resync();
    }

    /// Counts `n` cross-node messages as lost.
    pub fn lose(&self, reason: LostReason, n: u64) {
        for _ in 0..n {
            self.dispatch.counters.add_dropped(DropReason::Backplane);
        }
        self.stats().lose(reason, n);
    }

    /// Queues a publish for other nodes; lost (and counted) while Redis is down
    /// or the queue is full.
    pub fn publish(&self, channel: String, payload: Vec<u8>) {
        if !self.up() {
            return self.lose(LostReason::RedisDown, 1);
        }
        match self.ops.push(Op::Publish { channel, payload }) {
            Ok(()) => {}
            Err(Full::Messages) => self.lose(LostReason::QueueFull, 1),
            Err(Full::Bytes) => self.lose(LostReason::QueueBytes, 1),
        }
    }

    /// Queues a write of this node's state (call it with the mirror locked, so
    /// writes keep the mirror's order). One that cannot be queued asks for a
    /// resync, which rewrites the state from the mirror.
    pub fn write_state(&self, op: Op) {
        if self.ops.push(op).is_err() {
            self.health.want_resync();
        }
    }

    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, LinkError> {
        let mut conn = self.conn.clone();
        bounded(self.timing.timeout, cmd.query_async::<T>(&mut conn)).await
    }

    pub async fn pipe(&self, p: &redis::Pipeline) -> Result<(), LinkError> {
        let mut conn = self.conn.clone();
        bounded(self.timing.timeout, p.exec_async(&mut conn)).await
    }

    /// Runs `batch` (see [`Batch`]): its answers not ignored, as `T`.
    pub async fn run<T: redis::FromRedisValue>(&self, batch: &Batch) -> Result<T, LinkError> {
        let mut conn = self.conn.clone();
        bounded(self.timing.timeout, batch.query(&mut conn)).await
    }

    /// Runs `batch`: every command's answer, an error answer as a value.
    pub async fn run_each(&self, batch: &Batch) -> Result<Vec<redis::Value>, LinkError> {
        let mut conn = self.conn.clone();
        bounded(self.timing.timeout, batch.answers(&mut conn)).await
    }

    /// One script call's answer.
    pub async fn script<T: redis::FromRedisValue>(&self, call: Call) -> Result<T, LinkError> {
        let mut b = Batch::new();
        b.call(call);
        self.run::<(T,)>(&b).await.map(|(t,)| t)
    }

    /// One SUBSCRIBE or UNSUBSCRIBE of `channels`.
    pub async fn subscription(
        &self,
        subscribe: bool,
        channels: &[String],
    ) -> Result<(), LinkError> {
        let mut ps = self.pubsub.clone();
        bounded(self.timing.timeout, async {
            if subscribe {
                ps.subscribe(channels).await
            } else {
                ps.unsubscribe(channels).await
            }
        })
        .await
    }

    /// The static channels: this node's own and the global ones of global-scope
    /// listeners.
    fn fixed_channels(&self) -> Vec<String> {
        let mut v = vec![keys::node_channel(&self.node)];
        v.extend(
            self.listeners
                .iter()
                .filter(|l| l.scope == Scope::Global)
                .map(|l| keys::global_channel(&l.path)),
        );
        v
    }

    /// Renews this node's lease: node set, registry TTL, and slot fields written
    /// from the mirror (so a lost release is corrected here).
    pub async fn heartbeat(&self) -> Result<(), LinkError> {
        let lease = self.timing.lease_ms();
        let mut b = Batch::new();
        b.call(scripts::heartbeat(&self.registry, &self.node, lease));
        for (key, n) in self.mirror().held() {
            b.call(scripts::slots(&key, SlotOp::Set(n), &self.node, lease));
        }
        self.run::<()>(&b).await?;
        let mut ps = self.pubsub.clone();
        bounded(self.timing.timeout, redis::cmd("PING").exec_async(&mut ps)).await
    }

    /// Rewrites everything this node put in Redis: subscriptions (through the
    /// subscription task) and registry, lease and slots (through the writer),
    /// each queued in order with the changes made before and after it.
    pub async fn resync(&self) -> Result<(), LinkError> {
        let subscribed = self.subs.resync(self.fixed_channels())?;
        subscribed.await.map_err(|_| LinkError::Stopped)??;
        let (ack, written) = oneshot::channel();
        {
            let mirror = self.mirror();
            self.ops
                .push(Op::Rewrite(mirror.snapshot(), ack))
                .map_err(|_| LinkError::QueueFull)?;
        }
        written.await.map_err(|_| LinkError::Stopped)?
    }

    /// The writer's part of a resync: registry, lease and slots from `snap`.
    pub async fn rewrite(&self, snap: &Snapshot) -> Result<(), LinkError> {
        let lease = self.timing.lease_ms();
        let mut b = Batch::atomic();
        b.cmd(redis::Cmd::del(&self.registry));
        for chunk in snap.sessions.chunks(CHUNK) {
            b.cmd(redis::Cmd::hset_multiple(&self.registry, chunk));
        }
        b.call(scripts::heartbeat(&self.registry, &self.node, lease));
        for (key, n) in &snap.held {
            b.call(scripts::slots(key, SlotOp::Set(*n), &self.node, lease));
        }
        self.run(&b).await
    }

    /// Live nodes other than this one.
    async fn peers(&self) -> Result<Vec<String>, LinkError> {
        let nodes: Vec<String> = self.script(scripts::live()).await?;
        Ok(nodes.into_iter().filter(|n| n != &self.node).collect())
    }

    /// The other node whose registry holds `session`.
    pub async fn locate(&self, session: &str) -> Result<Option<String>, LinkError> {
        let peers = self.peers().await?;
        if peers.is_empty() {
            return Ok(None);
        }
        let mut p = redis::pipe();
        for n in &peers {
            p.hexists(keys::registry_key(n), session);
        }
        let mut conn = self.conn.clone();
        let found: Vec<bool> = bounded(self.timing.timeout, p.query_async(&mut conn)).await?;
        Ok(peers
            .into_iter()
            .zip(found)
            .find(|(_, f)| *f)
            .map(|(n, _)| n))
    }

    /// Asks one node (or every other live node) and collects the answers that
    /// arrive within the timeout.
    pub async fn call(
        &self,
        node: Option<String>,
        request: NodeRequest,
    ) -> Result<Vec<NodeReply>, LinkError> {
        let targets = match node {
            Some(n) => vec![n],
            None => self.peers().await?,
        };
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(targets.len());
        self.dispatch.expect_replies(id, tx);
        let payload = wire::request(&self.node, id, &request);
        let mut p = redis::pipe();
        for n in &targets {
            p.publish(keys::node_channel(n), &payload).ignore();
        }
        let sent = self.pipe(&p).await;
        let mut replies = Vec::with_capacity(targets.len());
        if sent.is_ok() {
            let deadline = tokio::time::Instant::now() + self.timing.timeout;
            while replies.len() < targets.len() {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(r)) => replies.push(r),
                    _ => break,
                }
            }
            if replies.len() < targets.len() {
                log::warn!(
                    "cluster: {} of {} nodes answered {:?} in time",
                    replies.len(),
                    targets.len(),
                    request
                );
            }
        }
        self.dispatch.forget_replies(id);
        sent.map(|()| replies)
    }

    /// Takes one of the `cap` slots of `key` cluster-wide.
    pub async fn acquire(&self, key: &str, cap: usize) -> SlotDecision {
        let call = scripts::slots(
            key,
            SlotOp::Acquire(cap),
            &self.node,
            self.timing.lease_ms(),
        );
        match self.script::<i64>(call).await {
            Ok(n) if n < 0 => SlotDecision::Full,
            Ok(_) => SlotDecision::Granted,
            Err(e) => {
                self.mark_down("slot", &e);
                SlotDecision::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_for_up_resolves_when_the_node_comes_up() {
        let h = Arc::new(Health::default());
        assert!(!h.wait_up(Duration::from_millis(10)).await);
        let waiter = {
            let h = h.clone();
            tokio::spawn(async move { h.wait_up(Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        assert!(h.set_up());
        assert!(!h.set_up(), "already up");
        let started = std::time::Instant::now();
        assert!(waiter.await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(h.set_down());
        assert!(!h.is_up());
    }

    #[tokio::test]
    async fn a_resync_asked_for_during_a_resync_is_not_lost() {
        let h = Health::default();
        assert!(h.take_resync(), "a fresh node resyncs");
        assert!(!h.take_resync());
        // Asked again while the copy is being written: still wanted afterwards,
        // and the ticker is woken.
        h.want_resync();
        assert!(h.resync_wanted());
        tokio::time::timeout(Duration::from_secs(5), h.woken())
            .await
            .expect("ticker woken");
        assert!(h.take_resync());
    }
}
