//! The Redis backplane: nodes sharing one Redis deliver each other's tenant and
//! global messages, answer each other's admin requests, and share tenant slots.
//!
//! Everything runs on one dedicated arbiter thread, never on an actor's:
//!
//! * [`link`] — the two connections (commands; subscriptions, RESP3), the
//!   node's health (a watch channel), and every round trip (heartbeat, resync,
//!   slots, registry look-ups, admin calls);
//! * [`subs`] — the channels this node wants and the task that keeps Redis in
//!   step, batched and pipelined (the seam for new kinds of channels);
//! * [`dispatch`] — what arrives on the subscription connection and where it
//!   goes (Broker, rpc task, waiting calls);
//! * [`queue`] — the writer's queue, bounded in operations and in bytes;
//! * [`tasks`] — writer, ticker and rpc server;
//! * [`mirror`] — this node's truth (sessions, held slots), updated
//!   synchronously by the Broker's calls; Redis is only ever a copy of it,
//!   rewritten after any doubt;
//! * [`scripts`] — the Lua scripts (slots, leases, channel history), timed by
//!   Redis' clock, and [`scripts::Batch`], the pipeline every script call
//!   runs in (by SHA1 with `EVALSHA`, loaded again after `NOSCRIPT`);
//! * [`history`] — channel streams: appends and reads, pipelined in order;
//! * [`occupancy`] — which nodes hold each channel, for the
//!   `channel.occupied` / `channel.vacated` webhooks.
//!
//! This file is the Broker-facing handle: the [`Backplane`] implementation,
//! which never blocks (it queues, bounded, and drops with a count when full).

mod dispatch;
mod error;
mod history;
mod link;
mod mirror;
mod occupancy;
mod queue;
mod scripts;
mod subs;
mod tasks;
#[cfg(test)]
mod test_redis;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix::{Addr, ArbiterHandle};
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::PushInfo;
use tokio::sync::{mpsc, oneshot};
use wsplus_actors::backplane::{
    Backplane, ClusterStream, HistoryError, NodeReply, NodeRequest, SlotDecision,
};
use wsplus_actors::channels::codec::{split_pub, StreamPosition};
use wsplus_actors::channels::history::{new_epoch, HistoryLimits};
use wsplus_actors::channels::ChannelName;
use wsplus_actors::{
    Broker, Counters, Delivery, ListenerId, Scope, SessionId, SessionInfo, TenantId,
};

use self::dispatch::{Dispatch, Incoming};
use self::history::HistoryOp;
use self::link::{Health, Link};
use self::mirror::Mirror;
use self::queue::Op;
use self::scripts::{AppendArgs, Call, HistoryKeys};
use self::subs::Subscriptions;
use self::tasks::MIN_BACKOFF;
use super::{keys, wire, ClusterStats, NodeListener, Occupancy, RedisTarget};

/// Admin requests from other nodes waiting for the Broker.
const RPC_QUEUE: usize = 64;
/// How long a channel's epoch outlives its last publication or read, at
/// least (longer when `history_ttl_s` is).
const EPOCH_TTL: Duration = Duration::from_secs(24 * 3600);

/// Timings, from `[cluster]`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Node lease: a node that stops renewing is forgotten after this.
    pub lease: Duration,
    /// Longest wait for Redis or for other nodes' answers.
    pub timeout: Duration,
    /// Capacity of the queue to the writer task, in operations.
    pub queue: usize,
    /// Capacity of the queue to the writer task, in bytes.
    pub queue_bytes: usize,
}

impl Timing {
    fn lease_ms(&self) -> u64 {
        self.lease.as_millis() as u64
    }

    fn tick(&self) -> Duration {
        self.lease / 3
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_min_delay(MIN_BACKOFF)
            .set_max_delay(self.tick())
    }
}

/// The Broker-facing half of the Redis backplane.
pub struct RedisBackplane {
    link: Arc<Link>,
    arbiter: ArbiterHandle,
    /// Other nodes' requests, until [`RedisBackplane::attach`] hands them to the Broker.
    rpc: Mutex<Option<mpsc::Receiver<Incoming>>>,
    /// To the channel history task.
    history: mpsc::Sender<HistoryOp>,
    /// Channel occupancy, once [`RedisBackplane::count_occupancy`] started it.
    occupancy: OnceLock<occupancy::Occupancies>,
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("node", &self.link.node)
            .field("up", &self.link.up())
            .finish()
    }
}

impl RedisBackplane {
    /// Connects lazily to `target` (the node starts degraded when Redis is not up,
    /// and connects as soon as it is) and starts the tasks on `arbiter`. Must
    /// run on `arbiter`.
    pub(super) fn start(
        target: &RedisTarget,
        node: String,
        listeners: Vec<NodeListener>,
        timing: Timing,
        counters: Arc<Counters>,
        stats: Arc<ClusterStats>,
        arbiter: ArbiterHandle,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let conn =
            ConnectionManager::new_lazy_with_config(target.client()?, timing.manager_config())?;

        let health = Arc::new(Health::default());
        let (rpc_tx, rpc_rx) = mpsc::channel(RPC_QUEUE);
        let by_path = listeners.iter().map(|l| (l.path.clone(), l.id)).collect();
        let dispatch = Arc::new(Dispatch::new(
            node.clone(),
            by_path,
            rpc_tx,
            health.clone(),
            counters,
            stats,
        ));
        let push = dispatch.clone();
        let pubsub = ConnectionManager::new_lazy_with_config(
            target.resp3_client()?,
            timing
                .manager_config()
                // No automatic resubscription: after a reconnect the resync
                // subscribes what this node wants now, in batches.
                .set_push_sender(move |p: PushInfo| {
                    push.on_push(p);
                    Ok::<(), std::convert::Infallible>(())
                }),
        )?;
        let (ops, ops_rx) = queue::channel(timing.queue, timing.queue_bytes);
        let (subs_tx, subs_rx) = mpsc::channel(timing.queue);
        let (history_tx, history_rx) = mpsc::channel(timing.queue);
        let link = Arc::new(Link {
            registry: keys::registry_key(&node),
            node,
            listeners,
            timing,
            conn,
            pubsub,
            mirror: Mutex::new(Mirror::default()),
            ops,
            subs: Subscriptions::new(subs_tx, health.clone()),
            dispatch,
            health,
            next_call: AtomicU64::new(1),
            left: AtomicBool::new(false),
        });
        actix_rt::spawn(tasks::writer(link.clone(), ops_rx));
        actix_rt::spawn(subs::subscriber(link.clone(), subs_rx));
        actix_rt::spawn(tasks::ticker(Arc::downgrade(&link)));
        actix_rt::spawn(history::task(link.clone(), history_rx));
        Ok(Arc::new(Self {
            link,
            arbiter,
            rpc: Mutex::new(Some(rpc_rx)),
            history: history_tx,
            occupancy: OnceLock::new(),
        }))
    }

    /// Waits (at most the cluster timeout) until Redis answered once, so a node
    /// that starts next to a running Redis is connected when it starts serving.
    pub(super) async fn connected(&self) -> bool {
        self.link.health.wait_up(self.link.timing.timeout).await
    }

    /// Connects the inbound side to the Broker and starts answering requests.
    pub(super) fn attach(&self, broker: &Addr<Broker>) {
        let _ = self.link.dispatch.remote.set(broker.clone().recipient());
        let rx = self.rpc.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rx) = rx {
            let server = tasks::rpc_server(self.link.clone(), broker.clone().recipient(), rx);
            self.arbiter.spawn(server);
        }
    }

    /// True while Redis answers and this node's state there is current.
    pub fn is_up(&self) -> bool {
        self.link.up()
    }

    /// Leaves the cluster cleanly: forgets this node's lease and registry now
    /// rather than at lease expiry.
    pub(super) async fn leave(&self) {
        self.link.left.store(true, Ordering::Relaxed);
        let link = self.link.clone();
        let _ = self
            .on_arbiter(async move {
                let mut p = redis::pipe();
                p.zrem(keys::NODES, &link.node)
                    .ignore()
                    .del(&link.registry)
                    .ignore();
                for key in link.mirror().slot_keys() {
                    p.hdel(key, &link.node).ignore();
                }
                let _ = link.pipe(&p).await;
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

    fn listener(&self, id: ListenerId) -> Option<&NodeListener> {
        self.link.listeners.get(usize::from(id.0))
    }

    /// The tenant channel of `(listener, tenant)` if the listener is tenant-scoped
    /// (only tenant-scope sessions publish on tenant channels).
    fn tenant_channel(&self, listener: ListenerId, tenant: &TenantId) -> Option<String> {
        let l = self
            .listener(listener)
            .filter(|l| l.scope == Scope::Tenant)?;
        Some(keys::tenant_channel(&l.path, tenant.as_str()))
    }

    /// Takes one of the `cap` slots of `key` (accounted in the mirror first, so
    /// a lost answer is still released and rewritten on resync).
    fn acquire(&self, key: String, cap: usize) -> BoxFuture<'static, SlotDecision> {
        self.link.mirror().take_slot(&key);
        let link = self.link.clone();
        let decided = if link.up() {
            let (l, k) = (link.clone(), key.clone());
            self.on_arbiter(async move { l.acquire(&k, cap).await })
        } else {
            Box::pin(std::future::ready(Some(SlotDecision::Unavailable)))
        };
        Box::pin(async move {
            let d = decided.await.unwrap_or(SlotDecision::Unavailable);
            if d == SlotDecision::Full {
                link.mirror().give_slot(&key);
            }
            d
        })
    }

    /// Gives back a slot of `key`: this node's count there is rewritten.
    fn release(&self, key: String) {
        let mut mirror = self.link.mirror();
        let n = mirror.give_slot(&key);
        self.link.write_state(Op::Slots { key, n });
    }

    fn slots_key(&self, listener: ListenerId, tenant: &TenantId) -> Option<String> {
        let l = self.listener(listener)?;
        Some(keys::slots_key(&l.path, tenant.as_str()))
    }

    fn topic_channel(
        &self,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
    ) -> Option<String> {
        let l = self.listener(listener)?;
        Some(keys::topic_channel(
            &l.path,
            tenant.map(TenantId::as_str),
            channel.as_str(),
        ))
    }

    /// Starts receiving `channel` (kept wanted across reconnects); resolves
    /// once Redis confirmed, or at once while Redis is unreachable.
    fn want(&self, channel: String) -> BoxFuture<'static, ()> {
        let confirmed = self.link.subs.want(channel);
        Box::pin(async move {
            if let Some(rx) = confirmed {
                let _ = rx.await;
            }
        })
    }

    fn history_keys(
        &self,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
    ) -> Option<HistoryKeys> {
        let l = self.listener(listener)?;
        let tenant = tenant.map(TenantId::as_str);
        let (meta, stream) = keys::history_keys(&l.path, tenant, channel.as_str());
        Some(HistoryKeys {
            meta,
            stream,
            channel: keys::topic_channel(&l.path, tenant, channel.as_str()),
        })
    }

    /// Queues one history script; its answer, or `Unavailable` at once when
    /// the queue is full or Redis is down.
    fn history_call<T: Send + 'static>(
        &self,
        call: Option<Call>,
        reply: impl FnOnce(oneshot::Sender<Result<T, HistoryError>>) -> history::Reply,
    ) -> BoxFuture<'static, Result<T, HistoryError>> {
        let (tx, rx) = oneshot::channel();
        let queued = call.filter(|_| self.link.up()).is_some_and(|call| {
            let op = HistoryOp {
                call,
                reply: reply(tx),
            };
            self.history.try_send(op).is_ok()
        });
        Box::pin(async move {
            if !queued {
                return Err(HistoryError::Unavailable);
            }
            rx.await.unwrap_or(Err(HistoryError::Unavailable))
        })
    }

    /// Counts which nodes hold each channel and emits the channel events of
    /// `webhooks` (call once, before sessions arrive).
    pub(super) fn count_occupancy(&self, webhooks: Arc<crate::cluster::ChannelWebhooks>) {
        let o = occupancy::Occupancies::start(&self.link, webhooks, &self.arbiter);
        let _ = self.occupancy.set(o);
    }

    /// Counts this node in or out of `channel`'s holders (channel webhooks).
    fn occupancy_changed(
        &self,
        what: Occupancy,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
    ) {
        if let (Some(o), Some(l)) = (self.occupancy.get(), self.listener(listener)) {
            o.change(what, &l.path, tenant, channel);
        }
    }

    fn publish(&self, channel: String, delivery: &Delivery) {
        let payload = wire::delivery(&self.link.node, delivery);
        self.link.publish(channel, payload);
    }
}

impl Backplane for RedisBackplane {
    fn is_clustered(&self) -> bool {
        true
    }

    fn node_id(&self) -> &str {
        &self.link.node
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
        match self.tenant_channel(listener, tenant) {
            Some(channel) => self.want(channel),
            None => Box::pin(std::future::ready(())),
        }
    }

    fn room_closed(&self, listener: ListenerId, tenant: &TenantId) {
        if let Some(channel) = self.tenant_channel(listener, tenant) {
            self.link.subs.unwant(&channel);
        }
    }

    fn publish_channel(
        &self,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
        delivery: &Delivery,
    ) {
        if let Some(name) = self.topic_channel(listener, tenant, channel) {
            self.publish(name, delivery);
        }
    }

    fn push_channel(
        &self,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
        delivery: &Delivery,
    ) {
        // Joins and leaves travel with the channel's publications, so a
        // subscriber sees them in the order they happened on their node.
        self.publish_channel(listener, tenant, channel, delivery);
    }

    fn channel_opened(
        &self,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
    ) {
        if let Some(name) = self.topic_channel(listener, tenant, channel) {
            // Publications until Redis confirmed are missed, as for a room:
            // cross-node delivery is at most once.
            drop(self.want(name));
        }
        self.occupancy_changed(Occupancy::Occupied, listener, tenant, channel);
    }

    fn channel_closed(
        &self,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
    ) {
        if let Some(name) = self.topic_channel(listener, tenant, channel) {
            self.link.subs.unwant(&name);
        }
        self.occupancy_changed(Occupancy::Vacated, listener, tenant, channel);
    }

    fn channel_ready(
        &self,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
    ) -> BoxFuture<'static, ()> {
        match self.topic_channel(listener, tenant, channel) {
            Some(name) => self.want(name),
            None => Box::pin(std::future::ready(())),
        }
    }

    fn keeps_history(&self) -> bool {
        true
    }

    fn append_history(
        &self,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
        push: &Delivery,
        limits: HistoryLimits,
    ) -> BoxFuture<'static, Result<StreamPosition, HistoryError>> {
        let keys = self.history_keys(listener, tenant, channel);
        let envelope = wire::publication_header();
        let epoch = new_epoch();
        let call = match (keys, push) {
            (Some(keys), Delivery::Text(text)) => split_pub(text, channel).map(|(head, tail)| {
                let args = AppendArgs {
                    epoch: &epoch,
                    size: limits.size,
                    ttl_ms: limits.ttl.as_millis() as u64,
                    meta_ttl_ms: limits.ttl.max(EPOCH_TTL).as_millis() as u64,
                    envelope: &envelope,
                    head,
                    tail,
                };
                scripts::history_append(&keys, &args)
            }),
            _ => None,
        };
        self.history_call(call, history::Reply::Append)
    }

    fn read_history(
        &self,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
        limits: HistoryLimits,
        after: Option<u64>,
    ) -> BoxFuture<'static, Result<ClusterStream, HistoryError>> {
        let call = self.history_keys(listener, tenant, channel).map(|keys| {
            scripts::history_read(
                &keys,
                &new_epoch(),
                limits.ttl.as_millis() as u64,
                limits.ttl.max(EPOCH_TTL).as_millis() as u64,
                after,
            )
        });
        self.history_call(call, history::Reply::Read)
    }

    fn session_joined(&self, info: &SessionInfo) {
        let value = format!(
            "{}:{}",
            keys::escape(&info.listener_path),
            keys::escape(info.tenant.as_str())
        );
        let session = info.id.to_string();
        let mut mirror = self.link.mirror();
        mirror.join(session.clone(), value.clone());
        self.link.write_state(Op::Register { session, value });
    }

    fn session_left(&self, info: &SessionInfo) {
        let mut mirror = self.link.mirror();
        mirror.leave(info.id.as_str());
        self.link.write_state(Op::Unregister {
            session: info.id.to_string(),
        });
    }

    fn acquire_slot(
        &self,
        listener: ListenerId,
        tenant: &TenantId,
        cap: usize,
    ) -> BoxFuture<'static, SlotDecision> {
        match self.slots_key(listener, tenant) {
            Some(key) => self.acquire(key, cap),
            None => Box::pin(std::future::ready(SlotDecision::Unavailable)),
        }
    }

    fn release_slot(&self, listener: ListenerId, tenant: &TenantId) {
        if let Some(key) = self.slots_key(listener, tenant) {
            self.release(key);
        }
    }

    fn acquire_tenant_slot(
        &self,
        tenant: &TenantId,
        cap: usize,
    ) -> BoxFuture<'static, SlotDecision> {
        self.acquire(keys::tenant_slots_key(tenant.as_str()), cap)
    }

    fn release_tenant_slot(&self, tenant: &TenantId) {
        self.release(keys::tenant_slots_key(tenant.as_str()));
    }

    fn locate(&self, session: &SessionId) -> BoxFuture<'static, Option<String>> {
        if !self.link.up() {
            return Box::pin(std::future::ready(None));
        }
        let link = self.link.clone();
        let id = session.to_string();
        let found = self.on_arbiter(async move {
            link.locate(&id).await.unwrap_or_else(|e| {
                link.mark_down("registry", &e);
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
        if !self.link.up() {
            return Box::pin(std::future::ready(Vec::new()));
        }
        let link = self.link.clone();
        let replies = self.on_arbiter(async move {
            link.call(node, request).await.unwrap_or_else(|e| {
                link.mark_down("admin call", &e);
                Vec::new()
            })
        });
        Box::pin(async move { replies.await.unwrap_or_default() })
    }
}
