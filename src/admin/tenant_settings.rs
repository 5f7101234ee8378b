//! Tenant records (`tenants` of the config file and admin-API changes):
//! `GET /admin/v1/tenant-settings` lists them; `GET|PUT|PATCH|DELETE
//! /admin/v1/tenants/{id}/settings` reads, creates or replaces, merges, and
//! deletes the API change of one. A change applies at once and persists in
//! the tenant store; see docs/tenants.md.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::Value;

use super::error::{resource, ApiError};
use crate::server::state::AppState;
use crate::tenants::{ChangeError, TenantRecord};

/// Registers the tenant settings routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin/v1/tenant-settings").route(web::get().to(list)))
        .service(
            resource("/admin/v1/tenants/{id}/settings")
                .route(web::get().to(get))
                .route(web::put().to(put))
                .route(web::patch().to(patch))
                .route(web::delete().to(delete)),
        );
}

/// The body of `DELETE`: the record that applies now (the config file's), if any.
#[derive(Debug, Serialize)]
pub struct Deleted {
    /// The tenant.
    pub id: String,
    /// The config file's record, in force again; `null` when there is none.
    pub record: Option<TenantRecord>,
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            ChangeError::NotFound(id) => ApiError::unknown("tenant", &id),
            ChangeError::ConfigOnly(_) | ChangeError::IssuerTaken(_) => {
                ApiError::Conflict(e.to_string())
            }
            ChangeError::Store(e) => {
                log::error!("tenant change not applied: {e}");
                ApiError::StoreUnavailable
            }
        }
    }
}

async fn list(state: web::Data<AppState>) -> web::Json<Vec<TenantRecord>> {
    web::Json(state.tenants.view().records().cloned().collect())
}

async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<TenantRecord>, ApiError> {
    state
        .tenants
        .view()
        .get(&id)
        .cloned()
        .map(web::Json)
        .ok_or_else(|| ApiError::unknown("tenant", &id))
}

async fn put(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let (record, _created) = state.tenants.put(&id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(record))
}

async fn patch(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<web::Json<TenantRecord>, ApiError> {
    Ok(web::Json(
        state.tenants.patch(&id, body.into_inner()).await?,
    ))
}

async fn delete(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<Deleted>, ApiError> {
    let record = state.tenants.delete(&id).await?;
    Ok(web::Json(Deleted {
        id: id.into_inner(),
        record,
    }))
}
