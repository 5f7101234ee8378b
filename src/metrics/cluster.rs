//! Cross-node counters of the Redis backplane (`[cluster] backend = "redis"`);
//! nothing for a single node.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::family::{label, Family};
use crate::cluster::{Cluster, LostReason, OccupancyDeferred, Readiness};

/// The cluster backend's counters and connection state.
#[derive(Debug)]
pub struct ClusterMetrics(pub Arc<Cluster>);

impl Collector for ClusterMetrics {
    fn encode(&self, mut out: DescriptorEncoder) -> std::fmt::Result {
        let connected = match self.0.readiness() {
            Readiness::Local => return Ok(()),
            Readiness::Connected => 1,
            Readiness::Degraded => 0,
        };
        let s = self.0.stats();
        Family::gauge(
            "cluster_connected",
            "1 while Redis answers; 0 while degraded (local delivery only).",
        )
        .single(&mut out, connected)?;
        let counters = [
            (
                "cluster_published",
                "Messages handed to Redis for other nodes.",
                &s.published,
            ),
            (
                "cluster_received",
                "Messages from other nodes handed to this node's Broker.",
                &s.received,
            ),
            (
                "cluster_connects",
                "Times this node (re)connected to Redis.",
                &s.connects,
            ),
        ];
        for (name, help, n) in counters {
            Family::counter(name, help).single(&mut out, n.load(Ordering::Relaxed))?;
        }
        Family::counter(
            "cluster_lost",
            "Cross-node messages lost, by reason (queue_full, queue_bytes, redis_down, broker_full).",
        )
        .labelled(
            &mut out,
            LostReason::ALL.map(|r| (label("reason", r.as_str()), s.lost(r))),
        )?;
        Family::counter(
            "cluster_occupancy_deferred",
            "Channel occupancy changes not applied at once, left to the next renewal, by reason (queue_full, redis).",
        )
        .labelled(
            &mut out,
            OccupancyDeferred::ALL.map(|r| (label("reason", r.as_str()), s.occupancy_deferred(r))),
        )
    }
}
