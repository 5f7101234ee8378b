//! Refused WebSocket upgrades by reason (docs/protocol.md#handshake), every
//! known reason exported from the start (zeros included) so alerts have series
//! to watch.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::family::{label, Family};
use crate::error::Rejections;

/// The handshake rejection counters.
#[derive(Debug)]
pub struct Handshakes(pub Arc<Rejections>);

impl Collector for Handshakes {
    fn encode(&self, mut out: DescriptorEncoder) -> std::fmt::Result {
        Family::counter(
            "handshake_rejections",
            "WebSocket upgrades refused before any frame, by reason.",
        )
        .labelled(
            &mut out,
            self.0
                .snapshot()
                .into_iter()
                .map(|(reason, n)| (label("reason", reason), n)),
        )
    }
}
