//! Scale-out (`[cluster]`): which backplane the Broker gets, and what the admin
//! API can ask about it.
//!
//! * `backend = "local"` — [`LocalBackplane`]: one node, nothing else needed.
//! * `backend = "redis"` — `redis::RedisBackplane`: nodes sharing a Redis
//!   deliver each other's tenant and global messages, answer admin requests
//!   cluster-wide and share `max_connections_per_tenant`. See docs/cluster.md.

mod keys;
mod occupancy;
mod redis;
mod target;
mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Arbiter};
use serde::Serialize;
use wsplus_actors::{
    Backplane, Broker, Counters, ListenerId, ListenerPolicy, LocalBackplane, Scope,
};

use crate::settings::Settings;

pub use self::occupancy::{ChannelWebhooks, LocalOccupancy, Occupancy};
pub use self::redis::Timing;
pub use self::target::{refused, Probe, RedisTarget, TargetError};

/// Why a cross-node message was lost (`wsplus_cluster_lost_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// `cluster.queue` messages were already waiting for Redis.
    QueueFull,
    /// Queuing it would have exceeded `cluster.queue_bytes`.
    QueueBytes,
    /// Redis was unreachable (or failed the write).
    RedisDown,
    /// Arrived from another node while this node's Broker mailbox was full.
    BrokerFull,
}

impl LostReason {
    /// Every reason, in metric order.
    pub const ALL: [LostReason; 4] = [
        LostReason::QueueFull,
        LostReason::QueueBytes,
        LostReason::RedisDown,
        LostReason::BrokerFull,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            LostReason::QueueFull => "queue_full",
            LostReason::QueueBytes => "queue_bytes",
            LostReason::RedisDown => "redis_down",
            LostReason::BrokerFull => "broker_full",
        }
    }

    fn index(self) -> usize {
        match self {
            LostReason::QueueFull => 0,
            LostReason::QueueBytes => 1,
            LostReason::RedisDown => 2,
            LostReason::BrokerFull => 3,
        }
    }
}

/// Why a change of this node's channel occupancy was not applied at once
/// and waits for the next renewal
/// (`wsplus_cluster_occupancy_deferred_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OccupancyDeferred {
    /// `cluster.queue` changes were already waiting.
    QueueFull,
    /// Redis did not take it (unreachable, timeout, error).
    Redis,
}

impl OccupancyDeferred {
    /// Every reason, in metric order.
    pub const ALL: [OccupancyDeferred; 2] =
        [OccupancyDeferred::QueueFull, OccupancyDeferred::Redis];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            OccupancyDeferred::QueueFull => "queue_full",
            OccupancyDeferred::Redis => "redis",
        }
    }

    fn index(self) -> usize {
        match self {
            OccupancyDeferred::QueueFull => 0,
            OccupancyDeferred::Redis => 1,
        }
    }
}

/// Cross-node traffic counters (also in `/readyz` and metrics).
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Messages this node handed to Redis for other nodes.
    pub published: AtomicU64,
    /// Messages from other nodes handed to this node's Broker.
    pub received: AtomicU64,
    /// Messages lost cross-node, by [`LostReason`].
    lost: [AtomicU64; 4],
    /// Times the node (re)connected to Redis.
    pub connects: AtomicU64,
    /// Channel occupancy changes left to the renewal, by [`OccupancyDeferred`].
    occupancy_deferred: [AtomicU64; 2],
}

impl ClusterStats {
    /// Counts `n` messages lost for `reason`.
    pub fn lose(&self, reason: LostReason, n: u64) {
        self.lost[reason.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Messages lost for `reason`.
    pub fn lost(&self, reason: LostReason) -> u64 {
        self.lost[reason.index()].load(Ordering::Relaxed)
    }

    /// Counts a channel occupancy change left to the renewal.
    pub fn defer_occupancy(&self, reason: OccupancyDeferred) {
        self.occupancy_deferred[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Channel occupancy changes left to the renewal for `reason`.
    pub fn occupancy_deferred(&self, reason: OccupancyDeferred) -> u64 {
        self.occupancy_deferred[reason.index()].load(Ordering::Relaxed)
    }

    /// Messages lost for any reason.
    pub fn lost_total(&self) -> u64 {
        LostReason::ALL.iter().map(|r| self.lost(*r)).sum()
    }
}

/// A listener as the backplane sees it: nodes name listeners by path.
#[derive(Debug, Clone)]
pub struct NodeListener {
    /// Index in this node's table.
    pub id: ListenerId,
    /// Path (the same on every node).
    pub path: String,
    /// Routing scope.
    pub scope: Scope,
}

/// Why the cluster backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `cluster.redis_url` is not a usable Redis URL.
    #[error("cluster.redis_url: {0}")]
    Url(#[source] ::redis::RedisError),
    /// Redis, or its certificate, refused this node (wrong credentials, a
    /// user without the permissions, an untrusted certificate): a
    /// configuration error, so the node does not start.
    #[error("cluster: Redis at {url} refused this node: {source}")]
    Refused {
        /// The URL, redacted.
        url: String,
        /// What Redis (or TLS) said.
        source: ::redis::RedisError,
    },
    /// The backplane's thread stopped before the backend was built.
    #[error("the cluster backplane thread stopped")]
    Stopped,
}

/// What `/readyz` reports about the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// Single node.
    Local,
    /// Redis answers; cross-node delivery works.
    Connected,
    /// Redis unreachable: local delivery only, cross-node messages are lost.
    Degraded,
}

/// The running cluster backend of a node.
pub struct Cluster {
    backplane: Arc<dyn Backplane>,
    redis: Option<Arc<redis::RedisBackplane>>,
    stats: Arc<ClusterStats>,
    node_id: String,
    arbiter: Option<Arbiter>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("readiness", &self.readiness())
            .finish()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(a) = &self.arbiter {
            a.stop();
        }
    }
}

impl Cluster {
    /// Builds the backend `settings.cluster` names for these listeners:
    /// `redis` is its [`RedisTarget`] (`None`: a single node). With Redis,
    /// waits at most `cluster.timeout_ms` for a first connection; a node
    /// whose Redis is down starts degraded and connects when it comes up, but
    /// one that Redis refuses (credentials, certificate) does not start.
    pub async fn start(
        settings: &Settings,
        redis: Option<&RedisTarget>,
        policies: &[Arc<ListenerPolicy>],
        counters: Arc<Counters>,
        webhooks: &Arc<crate::hooks::Webhooks>,
    ) -> Result<Self, ClusterError> {
        let c = &settings.cluster;
        let stats = Arc::new(ClusterStats::default());
        let channel_webhooks = ChannelWebhooks::new(policies, webhooks);
        let target = match redis {
            Some(t) => t.clone(),
            None => {
                let backplane: Arc<dyn Backplane> = match channel_webhooks.clone() {
                    Some(w) => Arc::new(LocalOccupancy(w)),
                    None => Arc::new(LocalBackplane),
                };
                return Ok(Self {
                    backplane,
                    redis: None,
                    stats,
                    node_id: String::new(),
                    arbiter: None,
                });
            }
        };
        let node_id = if c.node_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            c.node_id.clone()
        };
        let listeners = policies
            .iter()
            .map(|p| NodeListener {
                id: p.id,
                path: p.path.to_string(),
                scope: p.scope,
            })
            .collect();
        let timing = Timing {
            lease: Duration::from_secs(c.lease_s),
            timeout: Duration::from_millis(c.timeout_ms),
            queue: c.queue,
            queue_bytes: usize::try_from(c.queue_bytes).unwrap_or(usize::MAX),
        };
        if let Probe::Refused(source) = target.probe(timing.timeout).await {
            return Err(ClusterError::Refused {
                url: target.shown().to_owned(),
                source,
            });
        }
        let arbiter = Arbiter::new();
        let handle = arbiter.handle();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (node, st) = (node_id.clone(), stats.clone());
        arbiter.spawn(async move {
            let started = redis::RedisBackplane::start(
                &target, node, listeners, timing, counters, st, handle,
            );
            let _ = tx.send(started.map_err(ClusterError::Url));
        });
        let rb = rx.await.map_err(|_| ClusterError::Stopped)??;
        if let Some(w) = channel_webhooks {
            rb.count_occupancy(w);
        }
        if rb.connected().await {
            log::info!("cluster: node {node_id} joined through Redis");
        } else {
            log::warn!("cluster: node {node_id} starts degraded: Redis unreachable, retrying");
        }
        Ok(Self {
            backplane: rb.clone(),
            redis: Some(rb),
            stats,
            node_id,
            arbiter: Some(arbiter),
        })
    }

    /// What the Broker talks to.
    pub fn backplane(&self) -> Arc<dyn Backplane> {
        self.backplane.clone()
    }

    /// Hands messages and requests from other nodes to `broker`.
    pub fn attach(&self, broker: &Addr<Broker>) {
        if let Some(r) = &self.redis {
            r.attach(broker);
        }
    }

    /// This node's id (empty for a single node).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// For `/readyz`: degraded while Redis is unreachable.
    pub fn readiness(&self) -> Readiness {
        match &self.redis {
            None => Readiness::Local,
            Some(r) if r.is_up() => Readiness::Connected,
            Some(_) => Readiness::Degraded,
        }
    }

    /// Cross-node counters.
    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    /// The readiness body part: `{"backend", "node", "state", counters...}`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "state": self.readiness(),
            "node": self.node_id,
            "published": self.stats.published.load(Ordering::Relaxed),
            "received": self.stats.received.load(Ordering::Relaxed),
            "lost": self.stats.lost_total(),
            "connects": self.stats.connects.load(Ordering::Relaxed),
        })
    }

    /// The `cluster` part of the `/readyz` body: [`Self::status`] when
    /// clustered, `None` for a single node. It never makes the node unready: a
    /// node that cannot reach Redis still serves its own sessions
    /// (docs/cluster.md#faults-and-delivery-guarantees), and every node loses
    /// Redis at once when Redis goes down.
    pub fn readyz_part(&self) -> Option<serde_json::Value> {
        self.redis.is_some().then(|| self.status())
    }

    /// Leaves the cluster cleanly (after every session is gone).
    pub async fn leave(&self) {
        if let Some(r) = &self.redis {
            r.leave().await;
        }
    }
}
