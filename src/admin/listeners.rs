//! `GET /admin/v1/listeners`: every listener with its settings, redacted the
//! same way as `check-config` (secrets are never in settings; the names of
//! their variables and files are shown, URL credentials and queries are not).

use actix_web::web;

use super::error::{resource, ApiError};
use crate::redact;
use crate::server::state::{AppState, Listener};
use crate::settings::ListenerSettings;

/// Registers the listeners route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin/v1/listeners").route(web::get().to(listeners)));
}

async fn listeners(
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<ListenerSettings>>, ApiError> {
    Ok(web::Json(
        state
            .listeners
            .iter()
            .map(|l| {
                let mut s = l.settings.clone();
                redact::listener(&mut s);
                s
            })
            .collect(),
    ))
}

/// The listener at `path`, or a 404 naming it.
pub fn find<'a>(state: &'a AppState, path: &str) -> Result<&'a Listener, ApiError> {
    state
        .listener(path)
        .ok_or_else(|| ApiError::unknown("listener", path))
}
