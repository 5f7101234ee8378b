//! `POST /admin/v1/publish`: an operator's message to one session, one tenant
//! or every session of a listener; answers `{"delivered": n}`, the number of
//! session queues that took it. In message mode the message carries the admin
//! `_session` of docs/protocol.md#frames-and-messages; in payload mode a string
//! payload is sent as a text frame as is and any other JSON value as its JSON
//! text.
//!
//! Everything is checked before anything is sent: a missing or superfluous
//! target is a 400, an unknown listener or session a 404. A tenant needs no
//! registration, so one with nobody connected is a valid target that nobody
//! receives: `{"delivered": 0}`, as for global scope on an empty listener.

use actix_web::web;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wsplus_actors::broker::{Publish, Target};
use wsplus_actors::protocol::{admin_stamp, encode_value};
use wsplus_actors::{Mode, Scope, SessionId, TenantId};

use super::error::{resource, ApiError};
use super::{listeners, sessions};
use crate::server::state::AppState;

/// Registers the publish route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin/v1/publish").route(web::post().to(publish)));
}

/// The body of `POST /admin/v1/publish`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Path of the listener whose sessions receive the message.
    pub listener: String,
    /// Who receives it: one session, one tenant, or everyone on the listener.
    pub scope: Scope,
    /// The tenant (tenant scope; optional in session scope, where it must be
    /// the session's).
    pub tenant: Option<String>,
    /// The session id (session scope only).
    pub session: Option<String>,
    /// The message (on a channels-mode listener: the publication's `data`).
    pub payload: Value,
    /// The channel (channels-mode listeners only, where it is required).
    pub channel: Option<String>,
}

/// The reply of `POST /admin/v1/publish`.
#[derive(Debug, Serialize)]
pub struct Delivered {
    /// Session queues that accepted the message.
    pub delivered: usize,
    /// The publication's offset in the channel's history (when history is on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// A non-empty optional field, or a 400 naming it.
fn required<'a>(value: &'a Option<String>, field: &str, scope: Scope) -> Result<&'a str, ApiError> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::BadRequest(format!(
            "{field} is required with scope {:?}",
            scope.as_str()
        ))),
    }
}

/// A 400 when `value` is given although `scope` does not use it.
fn absent(value: &Option<String>, field: &str, scope: Scope) -> Result<(), ApiError> {
    match value {
        Some(_) => Err(ApiError::BadRequest(format!(
            "{field} must not be given with scope {:?}",
            scope.as_str()
        ))),
        None => Ok(()),
    }
}

/// The recipients and the `_session.tenantId` of a publish, checked against
/// the live sessions where the target is one session.
async fn target(
    state: &AppState,
    req: &PublishRequest,
) -> Result<(Target, Option<String>), ApiError> {
    match req.scope {
        Scope::Session => {
            let id = required(&req.session, "session", req.scope)?;
            let s = sessions::find(state, id).await?;
            let matches =
                s.listener == req.listener && req.tenant.as_ref().is_none_or(|t| *t == s.tenant);
            if !matches {
                return Err(ApiError::unknown("session", id));
            }
            Ok((Target::Session(SessionId::from_string(id)), Some(s.tenant)))
        }
        Scope::Tenant => {
            absent(&req.session, "session", req.scope)?;
            let tenant = required(&req.tenant, "tenant", req.scope)?;
            Ok((
                Target::Tenant(TenantId::new(tenant)),
                Some(tenant.to_owned()),
            ))
        }
        Scope::Global => {
            absent(&req.session, "session", req.scope)?;
            absent(&req.tenant, "tenant", req.scope)?;
            Ok((Target::Global, None))
        }
    }
}

async fn publish(
    state: web::Data<AppState>,
    body: web::Json<PublishRequest>,
) -> Result<web::Json<Delivered>, ApiError> {
    let req = body.into_inner();
    let listener = listeners::find(&state, &req.listener)?;
    match (&req.channel, listener.policy.mode) {
        (Some(channel), Mode::Channels) => {
            let published = super::channels::publish(
                &state,
                &req.listener,
                req.scope,
                req.tenant.as_deref(),
                channel,
                &req.payload,
            )
            .await?;
            return Ok(web::Json(Delivered {
                delivered: published.delivered,
                offset: published.offset,
            }));
        }
        (None, Mode::Channels) => {
            return Err(ApiError::BadRequest(
                "channel is required on a channels-mode listener".into(),
            ))
        }
        (Some(_), Mode::Payload | Mode::Message) => {
            return Err(ApiError::BadRequest(
                "channel is only for channels-mode listeners".into(),
            ))
        }
        (None, Mode::Payload | Mode::Message) => {}
    }
    let (target, tenant) = target(&state, &req).await?;
    let stamp = admin_stamp(tenant.as_deref(), req.scope.as_str());
    let delivery = encode_value(listener.policy.mode, req.payload, &stamp);
    let delivered = state
        .broker
        .send(Publish {
            listener: listener.policy.id,
            target,
            delivery,
        })
        .await?;
    Ok(web::Json(Delivered {
        delivered,
        offset: None,
    }))
}
