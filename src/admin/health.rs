//! `/healthz` (liveness) and `/readyz` (listeners bound, JWKS loaded;
//! docs/operations.md#health-checks): the only admin routes served without a
//! token. A clustered node adds its backplane state to the `/readyz` body; an
//! unreachable Redis does not make it unready (docs/decisions.md).

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
    let (mut res, mut body) = if not_ready.is_empty() {
        (HttpResponse::Ok(), json!({"status": "ready"}))
    } else {
        (
            HttpResponse::ServiceUnavailable(),
            json!({"status": "not_ready", "waiting_for_keys": not_ready}),
        )
    };
    if let Some(cluster) = state.cluster.readyz_part() {
        body["cluster"] = cluster;
    }
    res.json(body)
}
