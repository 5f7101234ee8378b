//! Backend hooks and webhooks: per listener and hook, the calls, denials,
//! failures by kind and a latency histogram; per webhook (labelled by its
//! position in the configuration: its URL may hold credentials), the queue
//! and what happened to its events.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::family::{label, labels2, Escaped, Family, Label};
use crate::hooks::stats::HookSnapshot;
use crate::hooks::webhooks::WebhookSnapshot;
use crate::hooks::{HookClient, HookError, Webhooks};
use crate::settings::HookName;

/// The hook and webhook figures of a scrape.
#[derive(Debug)]
pub struct HookMetrics {
    /// `(listener path, its hooks)` for every listener with hooks.
    pub listeners: Vec<(String, Arc<HookClient>)>,
    /// Every webhook.
    pub webhooks: Arc<Webhooks>,
}

impl HookMetrics {
    /// `(listener, hook, snapshot)` of every hook that is on.
    fn hooks(&self) -> Vec<(&str, HookName, HookSnapshot)> {
        self.listeners
            .iter()
            .flat_map(|(path, client)| {
                HookName::ALL
                    .into_iter()
                    .filter(|h| client.has(*h))
                    .map(move |h| (path.as_str(), h, client.stats().of(h).snapshot()))
            })
            .collect()
    }
}

fn webhook_label(i: usize) -> [Label<'static>; 1] {
    label("webhook", i.to_string())
}

impl Collector for HookMetrics {
    fn encode(&self, mut out: DescriptorEncoder) -> std::fmt::Result {
        let out = &mut out;
        let hooks = self.hooks();
        let per_hook =
            |out: &mut DescriptorEncoder, family: Family, v: &dyn Fn(&HookSnapshot) -> u64| {
                family.labelled(
                    out,
                    hooks
                        .iter()
                        .map(|(l, h, s)| (labels2(("listener", l), ("hook", h.as_str())), v(s))),
                )
            };
        per_hook(
            out,
            Family::counter("hook_calls", "Hook calls started, refused ones included."),
            &|s| s.calls,
        )?;
        per_hook(
            out,
            Family::counter("hook_denied", "Hook answers with \"allow\": false."),
            &|s| s.denied,
        )?;
        Family::counter(
            "hook_failures",
            "Hook calls without a usable answer (each a refusal), by kind.",
        )
        .labelled(
            out,
            hooks.iter().flat_map(|(l, h, s)| {
                HookError::KINDS.iter().zip(&s.failures).map(move |(k, n)| {
                    let labels: [Label; 3] = [
                        ("listener", Escaped((*l).into())),
                        ("hook", Escaped(h.as_str().into())),
                        ("kind", Escaped((*k).into())),
                    ];
                    (labels, *n)
                })
            }),
        )?;
        let mut m = out.encode_descriptor(
            "hook_duration",
            "Time from sending a hook request to its answer or failure.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (l, h, s) in &hooks {
            let labels = labels2(("listener", l), ("hook", h.as_str()));
            m.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(s.sum_s, s.count, &s.buckets, None)?;
        }

        let webhooks = self.webhooks.snapshot();
        let per_webhook =
            |out: &mut DescriptorEncoder, family: Family, v: fn(&WebhookSnapshot) -> u64| {
                family.labelled(
                    out,
                    webhooks
                        .iter()
                        .enumerate()
                        .map(|(i, w)| (webhook_label(i), v(w))),
                )
            };
        per_webhook(
            out,
            Family::gauge(
                "webhook_queue",
                "Webhook events waiting, the batch being sent included.",
            ),
            |w| w.queued,
        )?;
        per_webhook(
            out,
            Family::gauge("webhook_queue_bytes", "Bytes of webhook events waiting."),
            |w| w.queued_bytes,
        )?;
        per_webhook(
            out,
            Family::counter("webhook_dropped", "Webhook events refused by a full queue."),
            |w| w.dropped,
        )?;
        per_webhook(
            out,
            Family::counter(
                "webhook_delivered",
                "Webhook events the backend acknowledged (2xx).",
            ),
            |w| w.delivered,
        )?;
        per_webhook(
            out,
            Family::counter(
                "webhook_failed_posts",
                "Webhook POSTs that failed and were retried.",
            ),
            |w| w.failed_posts,
        )
    }
}
