//! `/healthz` (liveness) and `/readyz` (listeners bound, JWKS loaded, cluster
//! backend reachable): the only admin routes served without a token.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::resource;
use crate::server::state::AppState;

/// Registers the health routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/readyz").route(web::get().to(readyz)));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let not_ready: Vec<&str> = state
        .listeners
        .iter()
        .filter(|l| !l.auth.ready())
        .map(|l| l.settings.path.as_str())
        .collect();
    if let Some(degraded) = state.cluster.unready() {
        return HttpResponse::ServiceUnavailable().json(degraded);
    }
    if not_ready.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"status": "not_ready", "waiting_for_keys": not_ready}))
    }
}
