//! `GET /metrics` on the admin port (docs/metrics.md): the Prometheus
//! exposition of this node, every name prefixed `wsplus_` but the standard
//! `process_*` ones. See docs/metrics.md for the list.
//!
//! Served as OpenMetrics text (`application/openmetrics-text; version=1.0.0`),
//! the format prometheus-client writes and Prometheus (2.5+) prefers when it
//! scrapes, or as the classic Prometheus text format 0.0.4 to clients that do
//! not ask for OpenMetrics (`format.rs`). Nothing is computed on the message path: each scrape reads the
//! lock-free counters the actors already keep, and asks the Broker for its live
//! figures with one actor message ([`GetLoad`]).
//!
//! One file per source, each a [`Collector`] built per scrape:
//!
//! * `load.rs` — the Broker's live figures (connections, rooms, tenants);
//! * `traffic.rs` — messages, deliveries, drops, close codes, uptime;
//! * `channels.rs` — channels, subscriptions, token refreshes;
//! * `handshake.rs` — refused upgrades by reason;
//! * `cluster.rs` — the Redis backplane's counters.
//! * `bridges.rs` — each bridge's connection state and counters;
//! * `process.rs` — the standard `process_*` figures from `/proc` (memory,
//!   file descriptors, CPU, start time), under their standard names.
//! * `hooks.rs` — backend hook calls and webhook queues.
//!
//! A new source adds its own file with a
//! `Collector` writing through [`family::Family`], and one line in
//! [`collectors`]. Label values are escaped there; no label may identify a
//! session, and per-tenant labels exist only behind `[metrics] tenant_labels`.

mod bridges;
mod channels;
mod cluster;
pub mod family;
pub mod format;
mod handshake;
mod hooks;
mod load;
mod process;
mod traffic;

use actix_web::http::header::ACCEPT;
use actix_web::{web, HttpRequest, HttpResponse};
use prometheus_client::collector::Collector;
use prometheus_client::registry::Registry;
use wsplus_actors::broker::{GetLoad, Load};

use crate::admin::error::{resource, ApiError};
use crate::server::state::AppState;

pub use format::Format;

/// Registers `GET /metrics`; mounted by `admin::protected`, behind the token.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics").route(web::get().to(scrape)));
}

async fn scrape(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let m = &state.metrics;
    let ask = GetLoad {
        top_tenants: m.tenant_labels.then_some(m.tenant_series),
    };
    let load = state.broker.send(ask).await?;
    let body = format.body(render(collectors(&state, load)));
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .body(body))
}

/// Every source of a scrape, given the Broker's answer. The one place to add one.
pub fn collectors(state: &AppState, load: Load) -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(load::LoadMetrics {
            load,
            tenant_labels: state.metrics.tenant_labels,
        }),
        Box::new(traffic::Traffic {
            counters: state.counters.clone(),
            paths: state
                .listeners
                .iter()
                .map(|l| l.settings.path.clone())
                .collect(),
        }),
        Box::new(handshake::Handshakes(state.rejections.clone())),
        Box::new(cluster::ClusterMetrics(state.cluster.clone())),
        Box::new(bridges::BridgeMetrics(state.bridges.clone())),
        Box::new(hooks::HookMetrics {
            listeners: state
                .listeners
                .iter()
                .filter_map(|l| Some((l.settings.path.clone(), l.hooks.clone()?)))
                .collect(),
            webhooks: state.webhooks.clone(),
        }),
        Box::new(channels::ChannelMetrics {
            counters: state.counters.clone(),
            paths: state
                .listeners
                .iter()
                .map(|l| l.channels.is_some().then(|| l.settings.path.clone()))
                .collect(),
        }),
    ]
}

/// The OpenMetrics text of a scrape, ending `# EOF`: the standard `process_*`
/// families of this process, then `collectors` with names prefixed `wsplus_`.
pub fn render(collectors: Vec<Box<dyn Collector>>) -> String {
    let process = encode(
        "process",
        vec![Box::new(process::ProcessMetrics(
            process::ProcessStats::read(),
        ))],
    );
    let own = encode("wsplus", collectors);
    // One exposition: the first part loses its `# EOF`.
    format!(
        "{}{own}",
        process.strip_suffix("# EOF\n").unwrap_or(&process)
    )
}

/// The OpenMetrics text of `collectors`, names prefixed `prefix_`.
fn encode(prefix: &str, collectors: Vec<Box<dyn Collector>>) -> String {
    let mut registry = Registry::with_prefix(prefix);
    for c in collectors {
        registry.register_collector(c);
    }
    let mut body = String::new();
    // Collectors only fail when their writer does, and a String never does.
    prometheus_client::encoding::text::encode(&mut body, &registry)
        .expect("writing to a String cannot fail");
    body
}

#[cfg(test)]
mod tests;
