//! `GET /metrics` on the admin port (DESIGN §9): the Prometheus exposition of
//! this node, every name prefixed `wsplus_`. See docs/metrics.md for the list.
//!
//! Served as OpenMetrics text (`application/openmetrics-text; version=1.0.0`),
//! the format prometheus-client writes and Prometheus (2.5+) prefers when it
//! scrapes. Nothing is computed on the message path: each scrape reads the
//! lock-free counters the actors already keep, and asks the Broker for its live
//! figures with one actor message ([`GetLoad`]).
//!
//! One file per source, each a [`Collector`] built per scrape:
//!
//! * `load.rs` — the Broker's live figures (connections, rooms, tenants);
//! * `traffic.rs` — messages, deliveries, drops, close codes, uptime;
//! * `handshake.rs` — refused upgrades by reason;
//! * `cluster.rs` — the Redis backplane's counters.
//!
//! A new source (e.g. bridge state gauges) adds its own file with a
//! `Collector` writing through [`family::Family`], and one line in
//! [`collectors`]. Label values are escaped there; no label may identify a
//! session, and per-tenant labels exist only behind `[metrics] tenant_labels`.

mod cluster;
pub mod family;
mod handshake;
mod load;
mod traffic;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use prometheus_client::collector::Collector;
use prometheus_client::registry::Registry;
use wsplus_actors::broker::{GetLoad, Load};

use crate::server::state::AppState;

pub use load::top_tenants;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Registers `GET /metrics`. Mount it among the admin routes that require the
/// bearer token.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(scrape));
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The Broker did not answer (shutting down).
    #[error("broker unavailable")]
    BrokerUnavailable,
    /// A collector failed to write (never expected when writing to a `String`).
    #[error("metrics encoding failed")]
    Encoding,
}

impl ResponseError for ScrapeError {
    fn status_code(&self) -> StatusCode {
        match self {
            ScrapeError::BrokerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ScrapeError::Encoding => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(serde_json::json!({"error": self.to_string()}))
    }
}

async fn scrape(state: web::Data<AppState>) -> Result<HttpResponse, ScrapeError> {
    let ask = GetLoad {
        tenants: state.metrics.tenant_labels,
    };
    let load = state
        .broker
        .send(ask)
        .await
        .map_err(|_| ScrapeError::BrokerUnavailable)?;
    let body = render(collectors(&state, load))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}

/// Every source of a scrape, given the Broker's answer. The one place to add one.
pub fn collectors(state: &AppState, load: Load) -> Vec<Box<dyn Collector>> {
    let tenant_series = state
        .metrics
        .tenant_labels
        .then_some(state.metrics.tenant_series);
    vec![
        Box::new(load::LoadMetrics {
            load,
            tenant_series,
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
    ]
}

/// The OpenMetrics text of `collectors`, names prefixed `wsplus_`, ending `# EOF`.
pub fn render(collectors: Vec<Box<dyn Collector>>) -> Result<String, ScrapeError> {
    let mut registry = Registry::with_prefix("wsplus");
    for c in collectors {
        registry.register_collector(c);
    }
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &registry)
        .map_err(|_| ScrapeError::Encoding)?;
    Ok(body)
}

#[cfg(test)]
mod tests;
