//! Message traffic, drops, close codes and uptime, read from the actors'
//! lock-free [`Counters`] at scrape time (the hot path only ever adds to them).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;
use wsplus_actors::counters::{DropReason, ListenerCounters};
use wsplus_actors::{CloseCode, Counters};

use super::family::{label, Family};

/// The traffic counters of this process.
#[derive(Debug)]
pub struct Traffic {
    /// The process counters.
    pub counters: Arc<Counters>,
    /// Listener paths, by listener id (the `listener` label).
    pub paths: Vec<String>,
}

impl Traffic {
    /// `(listener label, value)` of one per-listener counter.
    fn per_listener<'a>(
        &'a self,
        value: impl Fn(&ListenerCounters) -> u64 + 'a,
    ) -> impl Iterator<Item = ([super::family::Label<'a>; 1], u64)> + 'a {
        self.paths
            .iter()
            .zip(self.counters.listeners())
            .map(move |(path, c)| (label("listener", path.as_str()), value(c)))
    }
}

impl Collector for Traffic {
    fn encode(&self, mut out: DescriptorEncoder) -> std::fmt::Result {
        let c = &self.counters;
        Family::counter("messages_in", "Messages accepted from clients.")
            .labelled(&mut out, self.per_listener(|l| l.messages_in.get()))?;
        Family::counter(
            "deliveries",
            "Messages queued to recipients (one per recipient).",
        )
        .labelled(&mut out, self.per_listener(|l| l.deliveries.get()))?;
        Family::counter(
            "messages_out",
            "Frames written to client sockets, all listeners.",
        )
        .single(&mut out, c.messages_out())?;
        Family::counter("dropped", "Messages not delivered, by reason.").labelled(
            &mut out,
            DropReason::ALL
                .iter()
                .map(|r| (label("reason", r.as_str()), c.dropped(*r))),
        )?;
        Family::counter("closes", "Close frames sent to clients, by close code.").labelled(
            &mut out,
            CloseCode::ALL
                .iter()
                .map(|code| (label("code", code.code().to_string()), c.closes(*code))),
        )?;
        Family::counter(
            "heartbeat_timeouts",
            "Sessions dropped because the peer answered no ping within two heartbeat intervals.",
        )
        .single(&mut out, c.heartbeat_timeouts())?;
        Family::counter(
            "backpressure",
            "Time rooms held their publishers back because a member's outbound queue was full, summed over rooms.",
        )
        .unit(Unit::Seconds)
        .single_f64(&mut out, c.backpressure_seconds())?;
        Family::gauge("uptime", "Seconds since the process started.")
            .unit(Unit::Seconds)
            .single(&mut out, c.uptime_s())
    }
}
