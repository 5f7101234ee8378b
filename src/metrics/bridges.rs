//! Bridge state (docs/client.md#bridges): one series per bridge, labelled
//! `bridge="<name>"`, read from the bridge registry (atomics the bridge tasks
//! keep; nothing on the message path is touched).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::family::{label, Family};
use crate::bridge::state::Counter;
use crate::bridge::{BridgeRegistry, BridgeState};

/// The bridges' gauges and counters.
#[derive(Debug)]
pub struct BridgeMetrics(pub Arc<BridgeRegistry>);

impl BridgeMetrics {
    /// Writes `family` with one sample per bridge, valued by `value`.
    fn per_bridge(
        &self,
        out: &mut DescriptorEncoder,
        family: Family,
        value: impl Fn(&BridgeState) -> u64,
    ) -> std::fmt::Result {
        family.labelled(
            out,
            self.0.iter().map(|b| (label("bridge", b.name()), value(b))),
        )
    }
}

impl Collector for BridgeMetrics {
    fn encode(&self, mut out: DescriptorEncoder) -> std::fmt::Result {
        let out = &mut out;
        self.per_bridge(
            out,
            Family::gauge(
                "bridge_connected",
                "1 while the bridge's upstream connection is up.",
            ),
            |b| u64::from(b.is_connected()),
        )?;
        let counters = [
            (
                "bridge_reconnects",
                "Dial attempts after a bridge's first one.",
                Counter::Reconnects,
            ),
            (
                "bridge_messages_in",
                "Frames received upstream and published into the local tenant.",
                Counter::MessagesIn,
            ),
            (
                "bridge_messages_out",
                "Local messages sent upstream.",
                Counter::MessagesOut,
            ),
            (
                "bridge_dropped",
                "Messages a bridge dropped: a full queue, or a disabled local tenant.",
                Counter::Dropped,
            ),
            (
                "bridge_echoes_dropped",
                "Frames recognised as the echo of a message the bridge sent upstream.",
                Counter::Echoes,
            ),
        ];
        for (name, help, counter) in counters {
            self.per_bridge(out, Family::counter(name, help), |b| b.get(counter))?;
        }
        Ok(())
    }
}
