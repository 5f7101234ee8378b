//! `GET /admin/v1/bridges` and `GET /admin/v1/bridges/{name}`: each bridge's
//! state (see [`BridgeView`]). Tokens are never shown: the URL is the dialer's
//! redacted one and the state holds no secret at all.

use actix_web::{web, HttpResponse};

use crate::admin::error::resource;
use crate::admin::ApiError;
use crate::bridge::BridgeView;
use crate::server::state::AppState;

/// Registers the bridge routes (mounted behind the admin bearer token).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin/v1/bridges").route(web::get().to(list)))
        .service(resource("/admin/v1/bridges/{name}").route(web::get().to(one)));
}

/// Every bridge, in configuration order.
async fn list(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.bridges.views())
}

/// One bridge by name; 404 if there is none.
async fn one(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<web::Json<BridgeView>, ApiError> {
    state
        .bridges
        .get(&name)
        .map(|b| web::Json(b.view()))
        .ok_or_else(|| ApiError::NotFound(format!("no bridge named {name:?}")))
}
