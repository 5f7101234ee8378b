//! `GET /admin/v1/stats`: cluster-wide figures from the Broker plus this
//! node's handshake rejections by reason.

use std::collections::BTreeMap;

use actix_web::web;
use serde::Serialize;
use wsplus_actors::broker::GetStats;

use super::error::{resource, ApiError};
use crate::server::state::AppState;

/// Registers the stats route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin/v1/stats").route(web::get().to(stats)));
}

/// The body of `GET /admin/v1/stats` (`Stats` in docs/admin-api.yaml).
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Open connections.
    pub connections: usize,
    /// Distinct tenants with at least one connection.
    pub tenants: usize,
    /// Messages accepted from clients.
    pub messages_in: u64,
    /// Messages written to clients.
    pub messages_out: u64,
    /// Messages dropped, all reasons.
    pub dropped: u64,
    /// Handshakes refused, by reason (every reason listed, zeros included).
    pub rejected: BTreeMap<&'static str, u64>,
    /// Seconds since start.
    pub uptime_s: u64,
}

async fn stats(state: web::Data<AppState>) -> Result<web::Json<Stats>, ApiError> {
    let s = state.broker.send(GetStats).await?;
    Ok(web::Json(Stats {
        connections: s.connections,
        tenants: s.tenants,
        messages_in: s.messages_in,
        messages_out: s.messages_out,
        dropped: s.dropped,
        rejected: state.rejections.snapshot().into_iter().collect(),
        uptime_s: s.uptime_s,
    }))
}
