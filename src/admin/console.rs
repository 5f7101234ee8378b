//! The admin console: `GET /` on the admin port and its assets under
//! `/console/`, static files built into the binary (web/console). They are the
//! only admin responses served without a token: they hold no data. The page
//! asks for the token, keeps it in the tab's `sessionStorage` and calls the
//! admin API with it, like any other client.
//!
//! The page allows only its own scripts and styles (CSP `default-src
//! 'self'`, no inline code) and may not be framed.

use actix_web::{web, HttpResponse};

/// The console page.
pub const INDEX_HTML: &str = include_str!("../../web/console/index.html");
/// Its script.
pub const CONSOLE_JS: &str = include_str!("../../web/console/console.js");
/// Its stylesheet.
pub const CONSOLE_CSS: &str = include_str!("../../web/console/console.css");

/// The paths served without a token.
pub const PUBLIC_PATHS: [&str; 3] = ["/", "/console/console.js", "/console/console.css"];

/// Registers the console routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/console/console.js", web::get().to(script))
        .route("/console/console.css", web::get().to(style));
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(body)
}

async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}
