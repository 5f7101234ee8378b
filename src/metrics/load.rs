//! This node's live load from the Broker ([`GetLoad`](wsplus_actors::broker::GetLoad)):
//! connections and rooms per listener and, with `[metrics] tenant_labels`,
//! connections of the busiest tenants (at most `tenant_series`, chosen by the
//! Broker) plus the rest summed per listener.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use wsplus_actors::broker::{ListenerLoad, Load};

use super::family::{label, labels2, Family};

/// The Broker's answer, and whether tenant series were asked for.
#[derive(Debug)]
pub struct LoadMetrics {
    /// The Broker's answer.
    pub load: Load,
    /// `[metrics] tenant_labels`.
    pub tenant_labels: bool,
}

impl Collector for LoadMetrics {
    fn encode(&self, mut out: DescriptorEncoder) -> std::fmt::Result {
        let listeners = &self.load.listeners;
        let per_listener = |value: fn(&ListenerLoad) -> usize| {
            listeners
                .iter()
                .map(move |l| (label("listener", l.path.as_str()), value(l) as u64))
        };
        Family::gauge("connections", "Open WebSocket connections.")
            .labelled(&mut out, per_listener(|l| l.connections))?;
        Family::gauge("rooms", "Live tenant rooms (tenants with a connection).")
            .labelled(&mut out, per_listener(|l| l.rooms))?;
        if !self.tenant_labels {
            return Ok(());
        }
        Family::gauge(
            "tenant_connections",
            "Open connections of the tenants with the most connections.",
        )
        .labelled(
            &mut out,
            self.load.tenants.iter().map(|t| {
                let labels = labels2(("listener", &t.listener), ("tenant", &t.tenant));
                (labels, t.connections as u64)
            }),
        )?;
        Family::gauge(
            "tenant_connections_other",
            "Open connections of the tenants beyond metrics.tenant_series.",
        )
        .labelled(&mut out, per_listener(|l| l.other_tenants))
    }
}
