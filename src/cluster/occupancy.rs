//! `channel.occupied` / `channel.vacated` webhooks: a channel's first
//! subscriber anywhere, its last one gone.
//!
//! A channel space tells its backplane when this node gets a channel's first
//! local subscriber and loses its last one (`channel_opened` /
//! `channel_closed`, the same calls that start and stop cross-node delivery).
//! On a single node that is the cluster-wide meaning already:
//! [`LocalOccupancy`] turns them into webhook events. With Redis, the
//! backplane counts the nodes holding each channel in Redis and emits only
//! when the count goes 0 → 1 or 1 → 0 (`redis/occupancy.rs`).
//!
//! Nothing is counted when no webhook hears channel events.

use std::sync::Arc;

use wsplus_actors::channels::ChannelName;
use wsplus_actors::{Backplane, ListenerId, ListenerPolicy, TenantId};

use crate::hooks::Webhooks;

/// Whether a channel became occupied or vacated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupancy {
    /// First subscriber (`channel.occupied`).
    Occupied,
    /// Last subscriber gone (`channel.vacated`).
    Vacated,
}

/// Emits channel webhook events with the listener's path.
#[derive(Debug)]
pub struct ChannelWebhooks {
    paths: Vec<Arc<str>>,
    webhooks: Arc<Webhooks>,
}

impl ChannelWebhooks {
    /// `None` when no webhook hears channel events.
    pub fn new(policies: &[Arc<ListenerPolicy>], webhooks: &Arc<Webhooks>) -> Option<Arc<Self>> {
        webhooks.wants_channel_events().then(|| {
            Arc::new(Self {
                paths: policies.iter().map(|p| p.path.clone()).collect(),
                webhooks: webhooks.clone(),
            })
        })
    }

    /// Queues the event for `channel` of `tenant` on `listener`.
    pub fn emit(
        &self,
        what: Occupancy,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
    ) {
        let Some(path) = self.paths.get(usize::from(listener.0)) else {
            return;
        };
        let tenant = tenant.map(TenantId::as_str);
        match what {
            Occupancy::Occupied => self
                .webhooks
                .channel_occupied(path, tenant, channel.as_str()),
            Occupancy::Vacated => self
                .webhooks
                .channel_vacated(path, tenant, channel.as_str()),
        }
    }
}

/// The single-node backplane when channel webhooks are on: every other call
/// is the no-op of [`wsplus_actors::LocalBackplane`]; a channel's first and
/// last local subscriber are its first and last anywhere.
#[derive(Debug)]
pub struct LocalOccupancy(pub Arc<ChannelWebhooks>);

impl Backplane for LocalOccupancy {
    fn channel_opened(
        &self,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
    ) {
        self.0.emit(Occupancy::Occupied, listener, tenant, channel);
    }

    fn channel_closed(
        &self,
        listener: ListenerId,
        tenant: Option<&TenantId>,
        channel: &ChannelName,
    ) {
        self.0.emit(Occupancy::Vacated, listener, tenant, channel);
    }
}
