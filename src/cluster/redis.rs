//! The Redis backplane: nodes sharing one Redis deliver each other's tenant and
//! global messages, answer each other's admin requests, and share tenant slots.
//!
//! Shape (all of it on one dedicated arbiter thread, never on an actor's):
//!
//! * **writer task** — drains a bounded queue of [`Op`]s (publishes, registry
//!   and slot updates) into pipelines on a `ConnectionManager`. A full queue, or
//!   Redis being down, drops the op: a lost publish is counted
//!   (`dropped{reason="backplane"}`), a lost registry or slot update marks the
//!   node for a resync.
//! * **subscriber task** — applies subscribe/unsubscribe requests, in order, on a
//!   second `ConnectionManager` (RESP3, automatic resubscription). Its push
//!   handler decodes incoming messages and hands them to the Broker with
//!   `try_send` (dropped and counted when the Broker's mailbox is full).
//! * **rpc task** — answers other nodes' admin requests with the Broker's local
//!   answer.
//! * **ticker task** — renews this node's lease (node set, registry TTL, slot
//!   fields) every `lease/3`; when Redis was unreachable it retries with
//!   exponential backoff and jitter and, once it answers, rewrites this node's
//!   whole state (subscriptions, registry, slot counts) before declaring the node
//!   connected again.
//!
//! This node's truth lives in a small mirror (sessions, held slots, wanted
//! channels) updated synchronously by the Broker's calls under a mutex that is
//! never held across an await: Redis is only ever a copy of it, rewritten after
//! any doubt.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix::{Addr, ArbiterHandle, Recipient};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use rand::Rng;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};
use wsplus_actors::backplane::{Backplane, NodeReply, NodeRequest, SlotDecision};
use wsplus_actors::broker::{NodeCall, RemoteDeliver, RemoteTarget};
use wsplus_actors::counters::DropReason;
use wsplus_actors::{
    Broker, Counters, Delivery, ListenerId, Scope, SessionId, SessionInfo, TenantId,
};

use super::keys::{self, Channel};
use super::scripts::Scripts;
use super::wire::{self, Body};
use super::{ClusterStats, NodeListener};

/// Admin requests from other nodes waiting for the Broker.
const RPC_QUEUE: usize = 64;
/// Ops written per pipeline round trip.
const BATCH: usize = 256;
/// Registry fields per HSET when rewriting it.
const CHUNK: usize = 500;
/// First retry delay after Redis became unreachable.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Timings, from `[cluster]`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Node lease: a node that stops renewing is forgotten after this.
    pub lease: Duration,
    /// Longest wait for Redis or for other nodes' answers.
    pub timeout: Duration,
    /// Capacity of the queue to the writer task.
    pub queue: usize,
}

impl Timing {
    fn lease_ms(&self) -> u64 {
        self.lease.as_millis() as u64
    }

    fn tick(&self) -> Duration {
        self.lease / 3
    }
}

/// Work for the writer task.
#[derive(Debug)]
enum Op {
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
enum SubOp {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// This node's truth, of which Redis holds a copy.
#[derive(Debug, Default)]
struct Mirror {
    /// Session id → `listener:tenant` (registry values).
    sessions: HashMap<String, String>,
    /// Slots key → slots held (granted, or taken while Redis was down).
    held: HashMap<String, usize>,
    /// Tenant channels wanted (a room exists or a join is in progress).
    channels: HashSet<String>,
    /// Channels to leave that Redis could not be told about.
    stale: HashSet<String>,
}

/// What the push handler needs: no connection in here, so no reference cycle.
struct Dispatch {
    node: String,
    by_path: HashMap<String, ListenerId>,
    remote: OnceLock<Recipient<RemoteDeliver>>,
    rpc: mpsc::Sender<(String, u64, NodeRequest)>,
    pending: Mutex<HashMap<u64, mpsc::Sender<NodeReply>>>,
    up: Arc<AtomicBool>,
    resync: Arc<AtomicBool>,
    counters: Arc<Counters>,
    stats: Arc<ClusterStats>,
}

impl Dispatch {
    fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Message => {
                let mut data = push.data.into_iter();
                if let (Some(Value::BulkString(ch)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                {
                    self.on_message(&String::from_utf8_lossy(&ch), Bytes::from(payload));
                }
            }
            PushKind::Disconnection => {
                if self.up.swap(false, Ordering::Relaxed) {
                    log::warn!("cluster: lost the Redis subscription connection");
                }
                self.resync.store(true, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn on_message(&self, channel: &str, raw: Bytes) {
        let env = match wire::decode(raw) {
            Ok(e) => e,
            Err(e) => {
                log::warn!("cluster: ignoring a message on {channel}: {e}");
                return;
            }
        };
        if env.origin == self.node {
            // Delivered locally before it was published.
            return;
        }
        match (keys::parse_channel(channel), env.body) {
            (Some(Channel::Tenant(path, tenant)), Body::Delivery(d)) => {
                self.deliver(&path, RemoteTarget::Tenant(TenantId::new(tenant)), d)
            }
            (Some(Channel::Global(path)), Body::Delivery(d)) => {
                self.deliver(&path, RemoteTarget::Global, d)
            }
            (Some(Channel::Node(_)), Body::Request(id, req)) => {
                if self.rpc.try_send((env.origin, id, req)).is_err() {
                    log::warn!("cluster: admin request queue full, request dropped");
                }
            }
            (Some(Channel::Node(_)), Body::Reply(id, reply)) => {
                let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(tx) = pending.get(&id) {
                    let _ = tx.try_send(reply);
                }
            }
            _ => log::warn!("cluster: unexpected message on {channel}"),
        }
    }

    fn deliver(&self, path: &str, target: RemoteTarget, delivery: Delivery) {
        let (Some(listener), Some(broker)) = (self.by_path.get(path), self.remote.get()) else {
            return;
        };
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let msg = RemoteDeliver {
            listener: *listener,
            target,
            delivery,
        };
        if broker.try_send(msg).is_err() {
            self.counters.add_dropped(DropReason::Backplane);
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// State shared by the tasks and the Broker-facing handle.
struct Shared {
    node: String,
    registry: String,
    listeners: Vec<NodeListener>,
    timing: Timing,
    scripts: Scripts,
    conn: ConnectionManager,
    pubsub: ConnectionManager,
    mirror: Mutex<Mirror>,
    dispatch: Arc<Dispatch>,
    next_call: AtomicU64,
    /// Set by a clean stop: the ticker stops renewing the lease.
    left: AtomicBool,
}

impl Shared {
    fn mirror(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn up(&self) -> bool {
        self.dispatch.up.load(Ordering::Relaxed)
    }

    fn stats(&self) -> &ClusterStats {
        &self.dispatch.stats
    }

    /// Records that Redis did not answer: the node is degraded until the ticker
    /// has rewritten its state.
    fn mark_down(&self, what: &str, e: &dyn std::fmt::Display) {
        if self.dispatch.up.swap(false, Ordering::Relaxed) {
            log::warn!("cluster: Redis unreachable ({what}: {e}); delivering locally only");
        }
        self.dispatch.resync.store(true, Ordering::Relaxed);
    }

    fn lose(&self, n: u64) {
        for _ in 0..n {
            self.dispatch.counters.add_dropped(DropReason::Backplane);
        }
        self.stats().lost.fetch_add(n, Ordering::Relaxed);
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timing.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    async fn pipe(&self, p: &redis::Pipeline) -> Result<(), String> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timing.timeout, p.exec_async(&mut conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    async fn subscription(&self, subscribe: bool, channel: &str) -> Result<(), String> {
        let mut ps = self.pubsub.clone();
        let op = async {
            if subscribe {
                ps.subscribe(channel).await
            } else {
                ps.unsubscribe(channel).await
            }
        };
        match tokio::time::timeout(self.timing.timeout, op).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
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

    /// Renews this node's lease: node set, registry TTL, slot fields.
    async fn heartbeat(&self) -> Result<(), String> {
        let lease = self.timing.lease_ms();
        let mut p = redis::pipe();
        p.add_command(self.scripts.heartbeat(&self.registry, &self.node, lease))
            .ignore();
        for (key, n) in self.mirror().held.iter() {
            p.add_command(self.scripts.slots(key, "touch", &self.node, lease, *n))
                .ignore();
        }
        self.pipe(&p).await?;
        let mut ps = self.pubsub.clone();
        match tokio::time::timeout(self.timing.timeout, redis::cmd("PING").exec_async(&mut ps))
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("subscription connection timed out".into()),
        }
    }

    /// Rewrites everything this node put in Redis from the mirror.
    async fn resync(&self) -> Result<(), String> {
        let (channels, stale, sessions, held) = {
            let m = self.mirror();
            (
                m.channels.iter().cloned().collect::<Vec<_>>(),
                m.stale.iter().cloned().collect::<Vec<_>>(),
                m.sessions
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Vec<_>>(),
                m.held
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<Vec<_>>(),
            )
        };
        for ch in self.fixed_channels().iter().chain(&channels) {
            self.subscription(true, ch).await?;
        }
        for ch in &stale {
            if !channels.contains(ch) {
                self.subscription(false, ch).await?;
            }
        }
        let lease = self.timing.lease_ms();
        let mut p = redis::pipe();
        p.atomic();
        p.del(&self.registry).ignore();
        for chunk in sessions.chunks(CHUNK) {
            p.hset_multiple(&self.registry, chunk).ignore();
        }
        p.add_command(self.scripts.heartbeat(&self.registry, &self.node, lease))
            .ignore();
        for (key, n) in &held {
            p.add_command(self.scripts.slots(key, "set", &self.node, lease, *n))
                .ignore();
        }
        self.pipe(&p).await?;
        let mut m = self.mirror();
        for ch in stale {
            m.stale.remove(&ch);
        }
        Ok(())
    }

    /// Live nodes other than this one.
    async fn peers(&self) -> Result<Vec<String>, String> {
        let nodes: Vec<String> = self.query(&self.scripts.live()).await?;
        Ok(nodes.into_iter().filter(|n| n != &self.node).collect())
    }

    async fn locate(&self, session: &str) -> Result<Option<String>, String> {
        let peers = self.peers().await?;
        if peers.is_empty() {
            return Ok(None);
        }
        let mut p = redis::pipe();
        for n in &peers {
            p.hexists(keys::registry_key(n), session);
        }
        let mut conn = self.conn.clone();
        let found: Vec<bool> =
            match tokio::time::timeout(self.timing.timeout, p.query_async::<Vec<bool>>(&mut conn))
                .await
            {
                Ok(r) => r.map_err(|e| e.to_string())?,
                Err(_) => return Err("timed out".into()),
            };
        Ok(peers
            .into_iter()
            .zip(found)
            .find(|(_, f)| *f)
            .map(|(n, _)| n))
    }

    async fn call(
        &self,
        node: Option<String>,
        request: NodeRequest,
    ) -> Result<Vec<NodeReply>, String> {
        let targets = match node {
            Some(n) => vec![n],
            None => self.peers().await?,
        };
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(targets.len());
        self.dispatch
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
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
        self.dispatch
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        sent.map(|()| replies)
    }

    async fn acquire(&self, key: &str, cap: usize) -> SlotDecision {
        let cmd = self
            .scripts
            .slots(key, "acquire", &self.node, self.timing.lease_ms(), cap);
        match self.query::<i64>(&cmd).await {
            Ok(n) if n < 0 => SlotDecision::Full,
            Ok(_) => SlotDecision::Granted,
            Err(e) => {
                self.mark_down("slot", &e);
                SlotDecision::Unavailable
            }
        }
    }
}

/// The Broker-facing half of the Redis backplane.
pub struct RedisBackplane {
    shared: Arc<Shared>,
    ops: mpsc::Sender<Op>,
    subs: mpsc::Sender<SubOp>,
    arbiter: ArbiterHandle,
    /// Other nodes' requests, until [`RedisBackplane::attach`] hands them to the Broker.
    rpc: Mutex<Option<mpsc::Receiver<(String, u64, NodeRequest)>>>,
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("node", &self.shared.node)
            .field("up", &self.shared.up())
            .finish()
    }
}

fn manager_config(timing: &Timing) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timing.timeout))
        .set_response_timeout(Some(timing.timeout))
        .set_number_of_retries(1)
        .set_min_delay(MIN_BACKOFF)
        .set_max_delay(timing.tick())
}

impl RedisBackplane {
    /// Connects lazily to `url` (the node starts degraded when Redis is not up,
    /// and connects as soon as it is) and starts the tasks on `arbiter`. Must
    /// run on `arbiter`.
    pub(super) fn start(
        url: &str,
        node: String,
        listeners: Vec<NodeListener>,
        timing: Timing,
        counters: Arc<Counters>,
        stats: Arc<ClusterStats>,
        arbiter: ArbiterHandle,
    ) -> Result<Arc<Self>, redis::RedisError> {
        use redis::IntoConnectionInfo;
        let info = url.into_connection_info()?;
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let sub_info = info.clone().set_redis_settings(resp3);
        let conn = ConnectionManager::new_lazy_with_config(
            redis::Client::open(info)?,
            manager_config(&timing),
        )?;

        let (rpc_tx, rpc_rx) = mpsc::channel(RPC_QUEUE);
        let dispatch = Arc::new(Dispatch {
            node: node.clone(),
            by_path: listeners.iter().map(|l| (l.path.clone(), l.id)).collect(),
            remote: OnceLock::new(),
            rpc: rpc_tx,
            pending: Mutex::new(HashMap::new()),
            up: Arc::new(AtomicBool::new(false)),
            resync: Arc::new(AtomicBool::new(true)),
            counters,
            stats,
        });
        let push = dispatch.clone();
        let pubsub = ConnectionManager::new_lazy_with_config(
            redis::Client::open(sub_info)?,
            manager_config(&timing)
                .set_push_sender(move |p: PushInfo| {
                    push.on_push(p);
                    Ok::<(), std::convert::Infallible>(())
                })
                .set_automatic_resubscription(),
        )?;
        let shared = Arc::new(Shared {
            registry: keys::registry_key(&node),
            node,
            listeners,
            timing,
            scripts: Scripts::default(),
            conn,
            pubsub,
            mirror: Mutex::new(Mirror::default()),
            dispatch,
            next_call: AtomicU64::new(1),
            left: AtomicBool::new(false),
        });
        let (ops_tx, ops_rx) = mpsc::channel(timing.queue);
        let (subs_tx, subs_rx) = mpsc::channel(timing.queue);
        actix_rt::spawn(writer(shared.clone(), ops_rx));
        actix_rt::spawn(subscriber(shared.clone(), subs_rx));
        actix_rt::spawn(ticker(Arc::downgrade(&shared)));
        Ok(Arc::new(Self {
            shared,
            ops: ops_tx,
            subs: subs_tx,
            arbiter,
            rpc: Mutex::new(Some(rpc_rx)),
        }))
    }

    /// Waits (at most the cluster timeout) until Redis answered once, so a node
    /// that starts next to a running Redis is connected when it starts serving.
    pub(super) async fn connected(&self) -> bool {
        let deadline = tokio::time::Instant::now() + self.shared.timing.timeout;
        while !self.shared.up() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.shared.up()
    }

    /// Connects the inbound side to the Broker and starts answering requests.
    pub(super) fn attach(&self, broker: &Addr<Broker>) {
        let _ = self.shared.dispatch.remote.set(broker.clone().recipient());
        let rx = self.rpc.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rx) = rx {
            let server = rpc_server(
                self.shared.clone(),
                self.ops.clone(),
                broker.clone().recipient(),
                rx,
            );
            self.arbiter.spawn(server);
        }
    }

    /// True while Redis answers and this node's state there is current.
    pub fn is_up(&self) -> bool {
        self.shared.up()
    }

    /// Leaves the cluster cleanly: forgets this node's lease and registry now
    /// rather than at lease expiry.
    pub(super) async fn leave(&self) {
        self.shared.left.store(true, Ordering::Relaxed);
        let shared = self.shared.clone();
        let _ = self
            .on_arbiter(async move {
                let mut p = redis::pipe();
                p.zrem(keys::NODES, &shared.node)
                    .ignore()
                    .del(&shared.registry)
                    .ignore();
                let held: Vec<String> = shared.mirror().held.keys().cloned().collect();
                for key in held {
                    p.hdel(key, &shared.node).ignore();
                }
                let _ = shared.pipe(&p).await;
            })
            .await;
    }

    /// Runs `fut` on the backplane's thread; `None` if the thread is gone.
    fn on_arbiter<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> BoxFuture<'static, Option<T>> {
        let (tx, rx) = oneshot::channel();
        let spawned = self.arbiter.spawn(async move {
            let _ = tx.send(fut.await);
        });
        Box::pin(async move {
            if !spawned {
                return None;
            }
            rx.await.ok()
        })
    }

    fn send_op(&self, op: Op) {
        let is_publish = matches!(op, Op::Publish { .. });
        if is_publish && !self.shared.up() {
            self.shared.lose(1);
            return;
        }
        if self.ops.try_send(op).is_err() {
            if is_publish {
                self.shared.lose(1);
            } else {
                self.shared.dispatch.resync.store(true, Ordering::Relaxed);
            }
        }
    }

    fn listener(&self, id: ListenerId) -> Option<&NodeListener> {
        self.shared.listeners.get(usize::from(id.0))
    }

    fn publish(&self, channel: String, delivery: &Delivery) {
        let payload = wire::delivery(&self.shared.node, delivery);
        self.send_op(Op::Publish { channel, payload });
    }
}

impl Backplane for RedisBackplane {
    fn is_clustered(&self) -> bool {
        true
    }

    fn node_id(&self) -> &str {
        &self.shared.node
    }

    fn publish_tenant(&self, listener: ListenerId, tenant: &TenantId, delivery: &Delivery) {
        if let Some(l) = self.listener(listener) {
            self.publish(keys::tenant_channel(&l.path, tenant.as_str()), delivery);
        }
    }

    fn publish_global(&self, listener: ListenerId, delivery: &Delivery) {
        if let Some(l) = self.listener(listener) {
            self.publish(keys::global_channel(&l.path), delivery);
        }
    }

    fn room_opened(&self, listener: ListenerId, tenant: &TenantId) -> BoxFuture<'static, ()> {
        // Only tenant-scope sessions publish on tenant channels.
        let Some(l) = self.listener(listener).filter(|l| l.scope == Scope::Tenant) else {
            return Box::pin(std::future::ready(()));
        };
        let channel = keys::tenant_channel(&l.path, tenant.as_str());
        {
            let mut m = self.shared.mirror();
            m.stale.remove(&channel);
            m.channels.insert(channel.clone());
        }
        let (tx, rx) = oneshot::channel();
        if !self.shared.up() || self.subs.try_send(SubOp::Subscribe(channel, tx)).is_err() {
            // The ticker subscribes every wanted channel once Redis is back.
            self.shared.dispatch.resync.store(true, Ordering::Relaxed);
            return Box::pin(std::future::ready(()));
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }

    fn room_closed(&self, listener: ListenerId, tenant: &TenantId) {
        let Some(l) = self.listener(listener).filter(|l| l.scope == Scope::Tenant) else {
            return;
        };
        let channel = keys::tenant_channel(&l.path, tenant.as_str());
        self.shared.mirror().channels.remove(&channel);
        if !self.shared.up()
            || self
                .subs
                .try_send(SubOp::Unsubscribe(channel.clone()))
                .is_err()
        {
            self.shared.mirror().stale.insert(channel);
            self.shared.dispatch.resync.store(true, Ordering::Relaxed);
        }
    }

    fn session_joined(&self, info: &SessionInfo) {
        let value = format!(
            "{}:{}",
            keys::escape(&info.listener_path),
            keys::escape(info.tenant.as_str())
        );
        self.shared
            .mirror()
            .sessions
            .insert(info.id.to_string(), value.clone());
        self.send_op(Op::Register {
            session: info.id.to_string(),
            value,
        });
    }

    fn session_left(&self, info: &SessionInfo) {
        self.shared.mirror().sessions.remove(info.id.as_str());
        self.send_op(Op::Unregister {
            session: info.id.to_string(),
        });
    }

    fn acquire_slot(
        &self,
        listener: ListenerId,
        tenant: &TenantId,
        cap: usize,
    ) -> BoxFuture<'static, SlotDecision> {
        let Some(l) = self.listener(listener) else {
            return Box::pin(std::future::ready(SlotDecision::Unavailable));
        };
        let key = keys::slots_key(&l.path, tenant.as_str());
        // Counted from now on, so a lease renewal racing with this request never
        // writes a count below what Redis is about to hold.
        *self.shared.mirror().held.entry(key.clone()).or_default() += 1;
        let shared = self.shared.clone();
        let decided = if shared.up() {
            let s = shared.clone();
            let k = key.clone();
            self.on_arbiter(async move { s.acquire(&k, cap).await })
        } else {
            Box::pin(std::future::ready(Some(SlotDecision::Unavailable)))
        };
        Box::pin(async move {
            let d = decided.await.unwrap_or(SlotDecision::Unavailable);
            if d == SlotDecision::Full {
                let mut m = shared.mirror();
                if let Some(n) = m.held.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        m.held.remove(&key);
                    }
                }
            }
            d
        })
    }

    fn release_slot(&self, listener: ListenerId, tenant: &TenantId) {
        let Some(l) = self.listener(listener) else {
            return;
        };
        let key = keys::slots_key(&l.path, tenant.as_str());
        {
            let mut m = self.shared.mirror();
            if let Some(n) = m.held.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    m.held.remove(&key);
                }
            }
        }
        self.send_op(Op::Release { key });
    }

    fn locate(&self, session: &SessionId) -> BoxFuture<'static, Option<String>> {
        if !self.shared.up() {
            return Box::pin(std::future::ready(None));
        }
        let shared = self.shared.clone();
        let id = session.to_string();
        let found = self.on_arbiter(async move {
            shared.locate(&id).await.unwrap_or_else(|e| {
                shared.mark_down("registry", &e);
                None
            })
        });
        Box::pin(async move { found.await.flatten() })
    }

    fn call(
        &self,
        node: Option<String>,
        request: NodeRequest,
    ) -> BoxFuture<'static, Vec<NodeReply>> {
        if !self.shared.up() {
            return Box::pin(std::future::ready(Vec::new()));
        }
        let shared = self.shared.clone();
        let replies = self.on_arbiter(async move {
            shared.call(node, request).await.unwrap_or_else(|e| {
                shared.mark_down("admin call", &e);
                Vec::new()
            })
        });
        Box::pin(async move { replies.await.unwrap_or_default() })
    }
}

/// Writes queued ops in pipelines, in order.
async fn writer(shared: Arc<Shared>, mut rx: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut publishes = 0u64;
        let mut p = redis::pipe();
        let lease = shared.timing.lease_ms();
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
                    // A new hash has no TTL until the next heartbeat: give it one.
                    p.hset(&shared.registry, session, value)
                        .ignore()
                        .pexpire(&shared.registry, lease as i64)
                        .ignore();
                }
                Op::Unregister { session } => {
                    p.hdel(&shared.registry, session).ignore();
                }
                Op::Release { key } => {
                    p.add_command(
                        shared
                            .scripts
                            .slots(&key, "release", &shared.node, lease, 0),
                    )
                    .ignore();
                }
            }
        }
        if !shared.up() {
            // Registry and slots are rewritten by the resync; publishes are lost.
            shared.lose(publishes);
            continue;
        }
        match shared.pipe(&p).await {
            Ok(()) => {
                shared
                    .stats()
                    .published
                    .fetch_add(publishes, Ordering::Relaxed);
            }
            Err(e) => {
                shared.lose(publishes);
                shared.mark_down("publish", &e);
            }
        }
    }
}

/// Applies subscription changes in order.
async fn subscriber(shared: Arc<Shared>, mut rx: mpsc::Receiver<SubOp>) {
    while let Some(op) = rx.recv().await {
        let (subscribe, channel, ack) = match op {
            SubOp::Subscribe(c, ack) => (true, c, Some(ack)),
            SubOp::Unsubscribe(c) => (false, c, None),
        };
        if shared.up() {
            if let Err(e) = shared.subscription(subscribe, &channel).await {
                shared.mark_down("subscribe", &e);
            }
        }
        if !shared.up() && !subscribe {
            shared.mirror().stale.insert(channel);
        }
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }
}

/// Renews the lease while connected; reconnects with backoff and resyncs when not.
async fn ticker(shared: std::sync::Weak<Shared>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(s) = shared.upgrade().filter(|s| !s.left.load(Ordering::Relaxed)) else {
            return;
        };
        let wait = if s.dispatch.resync.load(Ordering::Relaxed) {
            match s.resync().await {
                Ok(()) => {
                    s.dispatch.resync.store(false, Ordering::Relaxed);
                    if !s.dispatch.up.swap(true, Ordering::Relaxed) {
                        s.stats().connects.fetch_add(1, Ordering::Relaxed);
                        log::info!("cluster: connected to Redis as node {}", s.node);
                    }
                    backoff = MIN_BACKOFF;
                    s.timing.tick()
                }
                Err(e) => {
                    s.mark_down("reconnect", &e);
                    let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
                    let wait = backoff + Duration::from_millis(jitter);
                    backoff = (backoff * 2).min(s.timing.tick());
                    wait
                }
            }
        } else {
            if let Err(e) = s.heartbeat().await {
                s.mark_down("heartbeat", &e);
            }
            if s.up() {
                s.timing.tick()
            } else {
                MIN_BACKOFF
            }
        };
        drop(s);
        tokio::time::sleep(wait).await;
    }
}

/// Answers other nodes' admin requests with the Broker's local answers.
async fn rpc_server(
    shared: Arc<Shared>,
    ops: mpsc::Sender<Op>,
    broker: Recipient<NodeCall>,
    mut rx: mpsc::Receiver<(String, u64, NodeRequest)>,
) {
    while let Some((origin, id, request)) = rx.recv().await {
        let timeout = shared.timing.timeout;
        let Ok(Ok(reply)) = tokio::time::timeout(timeout, broker.send(NodeCall { request })).await
        else {
            continue;
        };
        let op = Op::Reply {
            channel: keys::node_channel(&origin),
            payload: wire::reply(&shared.node, id, &reply),
        };
        if ops.try_send(op).is_err() {
            log::warn!("cluster: queue full, admin reply to node {origin} dropped");
        }
    }
}
