//! `GET /admin/v1/bridges`: every bridge's state, tokens redacted (the URL
//! shown is the dialer's redacted one; tokens are never in the state at all).

use actix_web::{web, HttpResponse};

use crate::server::state::AppState;

/// Registers the bridge routes (behind the admin bearer token).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/v1/bridges", web::get().to(list));
}

/// `[{name, url, connected, connected_since, last_error, reconnects,
/// messages_in, messages_out, dropped, echoes_dropped, into, from}]`
async fn list(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.bridges.views())
}
