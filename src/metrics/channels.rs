//! Channels mode: channels, subscriptions and kept publications per
//! channels-mode listener on this node, in-band token refreshes and
//! recoveries by result.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use wsplus_actors::channels::counters::{RecoveryResult, RefreshResult};
use wsplus_actors::Counters;

use super::family::{label, Family};

/// The channel gauges and refresh counters of this process.
#[derive(Debug)]
pub struct ChannelMetrics {
    /// The process counters.
    pub counters: Arc<Counters>,
    /// Paths of the channels-mode listeners, by listener id (`None` for others).
    pub paths: Vec<Option<String>>,
}

impl Collector for ChannelMetrics {
    fn encode(&self, mut out: DescriptorEncoder) -> std::fmt::Result {
        let c = &self.counters;
        let rows = || {
            self.paths
                .iter()
                .zip(c.listeners())
                .filter_map(|(p, l)| p.as_deref().map(|p| (p, &l.channels)))
        };
        Family::gauge(
            "channels",
            "Channels with at least one subscriber on this node, per channels-mode listener.",
        )
        .labelled(
            &mut out,
            rows().map(|(p, g)| (label("listener", p), g.channels())),
        )?;
        Family::gauge(
            "subscriptions",
            "Channel subscriptions on this node, per channels-mode listener.",
        )
        .labelled(
            &mut out,
            rows().map(|(p, g)| (label("listener", p), g.subscriptions())),
        )?;
        Family::gauge(
            "history_publications",
            "Publications kept in this node's history, per channels-mode listener.",
        )
        .labelled(
            &mut out,
            rows().map(|(p, g)| (label("listener", p), g.history())),
        )?;
        Family::counter("refreshes", "In-band token refreshes, by result.").labelled(
            &mut out,
            RefreshResult::ALL
                .iter()
                .map(|r| (label("result", r.as_str()), c.refreshes.get(*r))),
        )?;
        Family::counter(
            "recoveries",
            "Subscribes with `since`, by result (recovered or not_recovered).",
        )
        .labelled(
            &mut out,
            RecoveryResult::ALL
                .iter()
                .map(|r| (label("result", r.as_str()), c.recoveries.get(*r))),
        )
    }
}
