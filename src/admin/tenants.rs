//! Tenant routes: `GET /admin/v1/tenants`, and a tenant's sessions
//! (`GET`, and `DELETE` to close them all with 4003, optionally on one
//! listener). A tenant exists while it has sessions; without any, 404.

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

/// `?listener=` of `DELETE /admin/v1/tenants/{tenant}/sessions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KickQuery {
    /// Limit to the listener with this path.
    pub listener: Option<String>,
}

async fn tenants(state: web::Data<AppState>) -> Result<web::Json<Vec<TenantView>>, ApiError> {
    Ok(web::Json(state.broker.send(ListTenants).await?))
}

async fn sessions(
    state: web::Data<AppState>,
    tenant: web::Path<String>,
) -> Result<web::Json<Vec<SessionView>>, ApiError> {
    let tenant = tenant.into_inner();
    let rows = state
        .broker
        .send(ListSessions {
            tenant: TenantId::new(tenant.as_str()),
        })
        .await?;
    if rows.is_empty() {
        return Err(ApiError::unknown("tenant", &tenant));
    }
    Ok(web::Json(rows))
}

async fn kick(
    state: web::Data<AppState>,
    tenant: web::Path<String>,
    query: web::Query<KickQuery>,
) -> Result<web::Json<Closed>, ApiError> {
    let tenant = tenant.into_inner();
    let listener = match &query.listener {
        Some(path) => Some(listeners::find(&state, path)?.policy.id),
        None => None,
    };
    let closed = state
        .broker
        .send(KickTenant {
            tenant: TenantId::new(tenant.as_str()),
            listener,
            code: CloseCode::Kicked,
        })
        .await?;
    if closed == 0 {
        return Err(ApiError::unknown("tenant", &tenant));
    }
    Ok(web::Json(Closed { closed }))
}
