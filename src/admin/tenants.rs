//! Tenant routes: `GET /admin/v1/tenants`, and a tenant's sessions
//! (`GET`, and `DELETE` to close them with 4003, optionally on one listener
//! and optionally only one user's).
//!
//! Tenants need no registration, so any tenant name is a valid target: one
//! with nobody connected has no sessions (`[]`) and nothing to close
//! (`{"closed": 0}`), not a 404. An unknown `listener` is still a 404.

use actix_web::web;
use serde::{Deserialize, Serialize};
use wsplus_actors::broker::{KickTenant, ListSessions, ListTenants, SessionView, TenantView};
use wsplus_actors::{CloseCode, TenantId};

use super::error::{resource, ApiError};
use super::listeners;
use crate::server::state::AppState;

/// Registers the tenant routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin/v1/tenants").route(web::get().to(tenants)))
        .service(
            resource("/admin/v1/tenants/{tenant}/sessions")
                .route(web::get().to(sessions))
                .route(web::delete().to(kick)),
        );
}

/// The body of the DELETE routes: how many sessions were told to close.
#[derive(Debug, Serialize)]
pub struct Closed {
    /// Sessions closed with 4003.
    pub closed: usize,
}

/// `?listener=&subject=` of `DELETE /admin/v1/tenants/{tenant}/sessions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KickQuery {
    /// Limit to the listener with this path.
    pub listener: Option<String>,
    /// Limit to the sessions of this user (the token's `sub`).
    pub subject: Option<String>,
}

async fn tenants(state: web::Data<AppState>) -> Result<web::Json<Vec<TenantView>>, ApiError> {
    Ok(web::Json(state.broker.send(ListTenants).await?))
}

async fn sessions(
    state: web::Data<AppState>,
    tenant: web::Path<String>,
) -> Result<web::Json<Vec<SessionView>>, ApiError> {
    let rows = state
        .broker
        .send(ListSessions {
            tenant: TenantId::new(tenant.into_inner()),
        })
        .await?;
    Ok(web::Json(rows))
}

async fn kick(
    state: web::Data<AppState>,
    tenant: web::Path<String>,
    query: web::Query<KickQuery>,
) -> Result<web::Json<Closed>, ApiError> {
    let query = query.into_inner();
    let listener = match &query.listener {
        Some(path) => Some(listeners::find(&state, path)?.policy.id),
        None => None,
    };
    if query.subject.as_deref() == Some("") {
        return Err(ApiError::BadRequest("subject must not be empty".into()));
    }
    let closed = state
        .broker
        .send(KickTenant {
            tenant: TenantId::new(tenant.into_inner()),
            listener,
            subject: query.subject,
            code: CloseCode::Kicked,
        })
        .await?;
    Ok(web::Json(Closed { closed }))
}
