//! Channel history in the admin API: `GET /admin/v1/channels/{channel}/history`
//! (the newest `limit` kept publications, as the `history` op returns them)
//! and the `history` object of the channel detail.
//!
//! A listener without history answers 400 on the history route and has no
//! `history` in its channel details; a channel without a stream on this node
//! has none either.

use actix::Addr;
use actix_web::web;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wsplus_actors::broker::{ChannelSpaceKey, ChannelStreamStatus, ReadChannelHistory};
use wsplus_actors::channels::ChannelName;
use wsplus_actors::Broker;

use super::channels::{channel_name, space};
use super::error::ApiError;
use super::listeners;
use crate::server::state::AppState;

/// `?listener=L&tenant=T&limit=N`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// The channels-mode listener's path.
    pub listener: String,
    /// The tenant (tenant-scope listeners only).
    pub tenant: Option<String>,
    /// The newest `limit` publications (all when absent).
    pub limit: Option<u64>,
}

/// A channel's stream in the channel detail.
#[derive(Debug, Serialize)]
pub struct StreamView {
    /// The stream's epoch.
    pub epoch: String,
    /// Its last offset.
    pub offset: u64,
    /// Publications it keeps now.
    pub size: usize,
}

/// The answer of the history route.
#[derive(Debug, Serialize)]
pub struct HistoryView {
    /// The stream's epoch.
    pub epoch: String,
    /// Its last offset.
    pub offset: u64,
    /// `{offset, data, _session}`, oldest first.
    pub publications: Vec<Value>,
}

/// The stream of `channel` in `space`, when it has one.
pub async fn status(
    broker: Addr<Broker>,
    space: ChannelSpaceKey,
    channel: ChannelName,
) -> Result<Option<StreamView>, ApiError> {
    let status = broker.send(ChannelStreamStatus { space, channel }).await?;
    Ok(status.map(|(p, size)| StreamView {
        epoch: p.epoch,
        offset: p.offset,
        size,
    }))
}

/// A kept `pub` push as a `publications` entry (without `push` and `channel`).
fn entry(push: &str) -> Value {
    let mut map: Map<String, Value> = serde_json::from_str(push).unwrap_or_default();
    map.remove("push");
    map.remove("channel");
    Value::Object(map)
}

/// `GET /admin/v1/channels/{channel}/history`.
pub async fn read(
    state: web::Data<AppState>,
    channel: web::Path<String>,
    q: web::Query<HistoryQuery>,
) -> Result<web::Json<HistoryView>, ApiError> {
    let space = space(&state, &q.listener, q.tenant.as_deref())?;
    let channel = channel_name(&channel)?;
    if listeners::find(&state, &q.listener)?
        .policy
        .history
        .is_none()
    {
        return Err(ApiError::BadRequest(format!(
            "listener {:?} keeps no history",
            q.listener
        )));
    }
    let page = state
        .broker
        .send(ReadChannelHistory {
            space,
            channel,
            limit: q.limit,
        })
        .await?
        .ok_or(ApiError::Unavailable)?;
    Ok(web::Json(HistoryView {
        epoch: page.position.epoch,
        offset: page.position.offset,
        publications: page
            .publications
            .unwrap_or_default()
            .iter()
            .map(|p| entry(p))
            .collect(),
    }))
}
