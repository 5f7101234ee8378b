//! The admin API on its own port (docs/admin-api.yaml): health, readiness, and
//! (behind a bearer token) stats, listings, kicks, publish and Prometheus
//! metrics.
//!
//! Layout: [`auth`] guards everything but the health checks, [`error`] maps
//! every failure to a status and `{"error": "..."}`, and each route group
//! lives in its own module registered by [`protected`].

pub mod auth;
pub mod bridges;
pub mod channels;
pub mod console;
pub mod error;
mod health;
pub mod history;
pub mod listeners;
pub mod publish;
pub mod sessions;
pub mod stats;
pub mod tenant_settings;
pub mod tenants;

use actix_web::web;

pub use auth::{require_token, AdminConfig};
pub use error::ApiError;

use crate::settings::AdminSettings;

/// Registers the whole admin API: extractor settings (body limit, JSON
/// errors), the public health routes, every [`protected`] route and a JSON
/// 404 for the rest. The server wraps it in [`require_token`].
pub fn configure(cfg: &mut web::ServiceConfig, settings: &AdminSettings) {
    cfg.app_data(error::json_config(settings.max_body_bytes))
        .app_data(error::path_config())
        .app_data(error::query_config())
        .configure(health::configure)
        .configure(console::configure)
        .configure(protected)
        .default_service(web::to(error::not_found));
}

/// Registers every route that needs the bearer token, one line per module.
/// Add a route group here with one `.configure(...)` line; [`require_token`]
/// covers it without further work.
pub fn protected(cfg: &mut web::ServiceConfig) {
    cfg.configure(stats::configure)
        .configure(listeners::configure)
        .configure(tenants::configure)
        .configure(tenant_settings::configure)
        .configure(sessions::configure)
        .configure(publish::configure)
        .configure(channels::configure)
        .configure(crate::metrics::routes)
        .configure(bridges::configure);
}
