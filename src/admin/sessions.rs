//! One session: `GET /admin/v1/sessions/{id}` and `DELETE` (close it with
//! 4003); 404 when no node has it.

use actix_web::web;
use wsplus_actors::broker::{GetSession, Kick, SessionView};
use wsplus_actors::{CloseCode, SessionId};

use super::error::{resource, ApiError};
use super::tenants::Closed;
use crate::server::state::AppState;

/// Registers the session routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/admin/v1/sessions/{id}")
            .route(web::get().to(session))
            .route(web::delete().to(kick)),
    );
}

/// The session `id`, cluster-wide, or a 404.
pub async fn find(state: &AppState, id: &str) -> Result<SessionView, ApiError> {
    state
        .broker
        .send(GetSession {
            id: SessionId::from_string(id),
        })
        .await?
        .ok_or_else(|| ApiError::unknown("session", id))
}

async fn session(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<SessionView>, ApiError> {
    Ok(web::Json(find(&state, &id).await?))
}

async fn kick(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<Closed>, ApiError> {
    let found = state
        .broker
        .send(Kick {
            id: SessionId::from_string(id.as_str()),
            code: CloseCode::Kicked,
        })
        .await?;
    if !found {
        return Err(ApiError::unknown("session", &id));
    }
    Ok(web::Json(Closed { closed: 1 }))
}
