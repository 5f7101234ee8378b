//! Channel routes of channels-mode listeners: the listing and the detail of a
//! channel space, server-side subscriptions of a session, and the channel
//! branch of `POST /admin/v1/publish`.
//!
//! A channel space is named by `listener` and, on a tenant-scope listener,
//! `tenant` (required there, refused on a global-scope listener, whose
//! channels every tenant shares). Channel names in paths are percent-decoded
//! by the router and then validated like a client's (`bad_request` → 400).
//!
//! In a cluster every route is cluster-wide: listings and details sum every
//! node's subscribers (and list every node's present clients), and a
//! server-side (un)subscription reaches a session on any node.

use actix_web::web;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wsplus_actors::broker::{
    ChannelDetail, ChannelSpaceKey, ListChannelSpace, PublishToChannel, SessionSubscription,
    SubscriptionChange,
};
use wsplus_actors::channels::codec::{push_pub, UnsubscribeReason};
use wsplus_actors::channels::presence::PresentClient;
use wsplus_actors::channels::space::Published;
use wsplus_actors::channels::ChannelName;
use wsplus_actors::protocol::admin_stamp;
use wsplus_actors::{Mode, Scope, SessionId, TenantId};

use super::error::{resource, ApiError};
use super::listeners;
use crate::server::state::{AppState, Listener};

/// Registers the channel routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin/v1/channels").route(web::get().to(list)))
        .service(resource("/admin/v1/channels/{channel}").route(web::get().to(detail)))
        .service(
            resource("/admin/v1/channels/{channel}/history")
                .route(web::get().to(super::history::read)),
        )
        .service(resource("/admin/v1/sessions/{id}/subscriptions").route(web::post().to(subscribe)))
        .service(
            resource("/admin/v1/sessions/{id}/subscriptions/{channel}")
                .route(web::delete().to(unsubscribe)),
        );
}

/// `?listener=L&tenant=T`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceQuery {
    /// The channels-mode listener's path.
    pub listener: String,
    /// The tenant (tenant-scope listeners only).
    pub tenant: Option<String>,
}

/// One row of the listing, and the detail of a channel.
#[derive(Debug, Serialize)]
pub struct ChannelView {
    /// The channel.
    pub channel: String,
    /// Its subscribers.
    pub subscribers: usize,
    /// Its stream (detail only, history on and the channel has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<super::history::StreamView>,
    /// Who they are (detail, on a listener with `presence = true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<Vec<PresentClient>>,
}

/// The body of `POST /admin/v1/sessions/{id}/subscriptions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// The channel.
    pub channel: String,
}

/// `{}`.
#[derive(Debug, Serialize)]
pub struct Empty {}

/// A valid channel name, or a 400.
pub fn channel_name(s: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse(s).map_err(|e| ApiError::BadRequest(format!("channel: {e}")))
}

/// The listener at `path`, when it is in channels mode (else a 400).
fn channels_listener<'a>(state: &'a AppState, path: &str) -> Result<&'a Listener, ApiError> {
    let l = listeners::find(state, path)?;
    if l.policy.mode != Mode::Channels {
        return Err(ApiError::BadRequest(format!(
            "listener {path:?} is not in channels mode"
        )));
    }
    Ok(l)
}

/// The channel space `listener` + `tenant` names, checked against the
/// listener's scope.
pub fn space(
    state: &AppState,
    listener: &str,
    tenant: Option<&str>,
) -> Result<ChannelSpaceKey, ApiError> {
    let l = channels_listener(state, listener)?;
    let tenant = match (l.policy.scope, tenant) {
        (Scope::Global, None) => None,
        (Scope::Global, Some(_)) => {
            return Err(ApiError::BadRequest(
                "tenant must not be given for a global-scope listener".into(),
            ))
        }
        (_, Some(t)) if !t.is_empty() => Some(TenantId::new(t)),
        (_, _) => {
            return Err(ApiError::BadRequest(
                "tenant is required for a tenant-scope listener".into(),
            ))
        }
    };
    Ok(ChannelSpaceKey {
        listener: l.policy.id,
        tenant,
    })
}

async fn list(
    state: web::Data<AppState>,
    q: web::Query<SpaceQuery>,
) -> Result<web::Json<Vec<ChannelView>>, ApiError> {
    let space = space(&state, &q.listener, q.tenant.as_deref())?;
    let mut rows: Vec<ChannelView> = state
        .broker
        .send(ListChannelSpace { space })
        .await?
        .into_iter()
        .map(|(c, n)| ChannelView {
            channel: c.as_str().to_owned(),
            subscribers: n,
            history: None,
            presence: None,
        })
        .collect();
    rows.sort_by(|a, b| a.channel.cmp(&b.channel));
    Ok(web::Json(rows))
}

async fn detail(
    state: web::Data<AppState>,
    channel: web::Path<String>,
    q: web::Query<SpaceQuery>,
) -> Result<web::Json<ChannelView>, ApiError> {
    let space = space(&state, &q.listener, q.tenant.as_deref())?;
    let presence = channels_listener(&state, &q.listener)?
        .policy
        .presence
        .is_on();
    let channel = channel_name(&channel)?;
    let facts = state
        .broker
        .send(ChannelDetail {
            space: space.clone(),
            channel: channel.clone(),
        })
        .await?;
    let history = super::history::status(state.broker.clone(), space, channel.clone()).await?;
    Ok(web::Json(ChannelView {
        channel: channel.as_str().to_owned(),
        subscribers: facts.subscribers,
        presence: presence.then_some(facts.clients),
        history,
    }))
}

async fn subscribe(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<SubscribeRequest>,
) -> Result<web::Json<Empty>, ApiError> {
    let channel = channel_name(&body.channel)?;
    change(&state, &id, channel, None).await
}

async fn unsubscribe(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<web::Json<Empty>, ApiError> {
    let (id, channel) = path.into_inner();
    let channel = channel_name(&channel)?;
    change(&state, &id, channel, Some(UnsubscribeReason::Admin)).await
}

/// Subscribes (`end = None`) or unsubscribes a session.
async fn change(
    state: &AppState,
    id: &str,
    channel: ChannelName,
    end: Option<UnsubscribeReason>,
) -> Result<web::Json<Empty>, ApiError> {
    let s = super::sessions::find(state, id).await?;
    channels_listener(state, &s.listener)?;
    let change = state
        .broker
        .send(SessionSubscription {
            id: SessionId::from_string(id),
            channel,
            end,
        })
        .await?;
    match change {
        SubscriptionChange::Done => Ok(web::Json(Empty {})),
        SubscriptionChange::NoSession => Err(ApiError::unknown("session", id)),
        SubscriptionChange::MaxChannels => Err(ApiError::Conflict(format!(
            "limit_exceeded: tenant {:?} has max_channels channels on listener {:?}",
            s.tenant, s.listener
        ))),
    }
}

/// The channel branch of `POST /admin/v1/publish`: the `pub` push with the
/// admin `_session`, to every subscriber of the channel in the space.
pub async fn publish(
    state: &AppState,
    listener: &str,
    scope: Scope,
    tenant: Option<&str>,
    channel: &str,
    data: &Value,
) -> Result<Published, ApiError> {
    let l = channels_listener(state, listener)?;
    if scope != l.policy.scope {
        return Err(ApiError::BadRequest(format!(
            "scope must be {:?}, the listener's",
            l.policy.scope.as_str()
        )));
    }
    let space = space(state, listener, tenant)?;
    let channel = channel_name(channel)?;
    let stamp = admin_stamp(tenant, scope.as_str());
    let delivery = push_pub(&channel, data, None, &stamp);
    // The cluster's history could not number it: nothing was published.
    state
        .broker
        .send(PublishToChannel {
            space,
            channel,
            delivery,
        })
        .await?
        .map_err(|_| ApiError::Unavailable)
}
