//! Static assets on the client port: the browser client at `/wsplus.js`.

use actix_web::{web, HttpResponse};

/// The dependency-free browser client (web/wsplus.js).
pub const WSPLUS_JS: &str = include_str!("../../web/wsplus.js");

/// Registers the static routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/wsplus.js", web::get().to(wsplus_js));
}

async fn wsplus_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(WSPLUS_JS)
}
