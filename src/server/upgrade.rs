//! The WebSocket upgrade: every check of docs/protocol.md#handshake, in order,
//! before any frame.
//!
//! path → Origin → token → signature/alg → claims → tenant → registered →
//! enabled → tenant cap.
//! A session is registered with the Broker and joined to its room before the
//! 101 is returned, so anything published after the client sees 101 reaches it.

use std::sync::Arc;
use std::time::SystemTime;

use actix_web::{web, HttpRequest, HttpResponse};
use wsplus_actors::broker::Join;
use wsplus_actors::channels::ChannelName;
use wsplus_actors::counters::SessionStats;
use wsplus_actors::session::{LeaveGuard, Session, SessionParts};
use wsplus_actors::{outbox, AuthStatus, SessionId, SessionInfo, TenantId};

use super::state::{AppState, Listener};
use crate::error::HandshakeError;
use crate::hooks::wire::Verdict;
use crate::settings::HookName;

/// Handles every request on the client port that no static route took.
pub async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match accept(&req, payload, &state).await {
        Ok(resp) => resp,
        Err(e) => {
            state.rejections.add(e);
            // Info, so an operator sees why a client was turned away; the
            // query (which holds the token) is never part of the line.
            log::info!(
                "handshake refused: {} {} path={} remote={}",
                e.status().as_u16(),
                e.reason(),
                req.path(),
                req.peer_addr()
                    .map_or_else(|| "-".to_owned(), |a| a.to_string()),
            );
            let claim = state.listener(req.path()).and_then(Listener::tenant_claim);
            e.response(claim)
        }
    }
}

async fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, HandshakeError> {
    let listener = state.listener(req.path()).ok_or(HandshakeError::NotFound)?;
    check_origin(req, listener)?;
    let token = token_param(req);
    let identity = listener.auth.verify(token.as_deref()).await?;
    check_upgrade(req)?;
    // Registered, then enabled (src/tenants); the cap is the Broker's, at Join.
    let admission = state.tenants.admit(&identity.tenant)?;

    let policy = admission.policy(&listener.policy);
    let grants = listener.channels.as_ref().map(|c| c.grants(&identity));
    let info = Arc::new(SessionInfo {
        id: SessionId::random(),
        listener: policy.id,
        listener_path: policy.path.clone(),
        tenant: TenantId::new(identity.tenant),
        subject: identity.subject,
        auth: if identity.verified {
            AuthStatus::Verified
        } else {
            AuthStatus::None
        },
        scope: policy.scope,
        remote: req.peer_addr(),
        connected_at: SystemTime::now(),
        expires_at: identity.expires_at,
    });
    let server_channels = connect_hook(listener, &info, &identity.claims).await?;
    let (tx, rx) = outbox(policy.outbound_queue_messages, policy.outbound_queue_bytes);
    let stats = Arc::new(SessionStats::default());
    // Armed before the join is sent: if the client goes away while we wait, this
    // future is dropped and the guard releases whatever the Broker registered.
    let guard = LeaveGuard::new(state.broker.clone(), info.clone());
    let joined = state
        .broker
        .send(Join {
            info: info.clone(),
            outbox: tx.clone(),
            stats: stats.clone(),
            tenant_cap: admission.max_connections,
        })
        .await;
    let joined = match joined {
        Ok(Ok(j)) => j,
        Ok(Err(e)) => {
            guard.disarm();
            return Err(e.into());
        }
        Err(_) => return Err(HandshakeError::ShuttingDown),
    };
    // A tenant disabled while the join was on its way: its kick may have
    // reached the Broker before this join did. Dropping the guard leaves.
    state.tenants.admit(info.tenant.as_str())?;
    // Debug, not info: at thousands of handshakes per second a line per accept
    // costs more than the rest of the handshake's logging; the access log still
    // records every connection when it ends.
    log::debug!(
        "session accepted listener={} tenant={} session={} subject={}",
        policy.path,
        info.tenant,
        info.id,
        info.subject.as_deref().unwrap_or("-")
    );
    let channels = match (&listener.channels, grants, joined.channels) {
        (Some(c), Some(grants), Some(hub)) => Some(c.parts(grants, hub, tx, server_channels)),
        // The Broker gives every session of a channels listener its hub.
        _ => None,
    };
    let session = Session::new(SessionParts {
        guard,
        policy,
        route: joined.route,
        counters: state.counters.clone(),
        stats,
        outbox: rx,
        hooks: listener.session_hooks.clone(),
        channels,
    });
    // The handshake was validated above; a failure here drops the session, whose
    // guard tells the Broker it left.
    session
        .start(req, payload)
        .map_err(|_| HandshakeError::NotWebSocket)
}

/// The `connect` hook, when on: after the token, before the join and the 101.
/// Its `channels` become server-side subscriptions in channels mode (ignored
/// on other listeners); a name that is not a valid channel is skipped and
/// logged.
async fn connect_hook(
    listener: &Listener,
    info: &SessionInfo,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<ChannelName>, HandshakeError> {
    let Some(hooks) = listener.hooks.as_ref().filter(|h| h.has(HookName::Connect)) else {
        return Ok(Vec::new());
    };
    let channels = match hooks.connect(info, claims).await {
        Ok(Verdict::Allow(channels)) => channels,
        Ok(Verdict::Deny) => return Err(HandshakeError::HookDenied),
        Err(_) => return Err(HandshakeError::HookUnavailable),
    };
    if listener.channels.is_none() {
        return Ok(Vec::new());
    }
    Ok(channels
        .iter()
        .filter_map(|c| {
            ChannelName::parse(c)
                .inspect_err(|_| {
                    log::warn!(
                        "connect hook named an invalid channel, skipped listener={} tenant={} session={}",
                        info.listener_path,
                        info.tenant,
                        info.id
                    )
                })
                .ok()
        })
        .collect())
}

/// `allowed_origins` protects browsers from cross-site pages: a browser always
/// sends `Origin`, so a request without one is not a browser's and passes (a
/// non-browser client could send any value anyway). A present `Origin` that
/// is not listed (or not text) is refused.
/// The upgrade request itself (RFC 6455 §4.2.1, §4.2.2): checked after the
/// token, so a plain `GET` still learns about path, origin and token first.
fn check_upgrade(req: &HttpRequest) -> Result<(), HandshakeError> {
    use actix_web_actors::ws::HandshakeError as Ws;
    match actix_web_actors::ws::handshake(req) {
        Ok(_) => {}
        // A version header other than 13, 8 or 7.
        Err(Ws::UnsupportedVersion) => return Err(HandshakeError::UnsupportedVersion),
        Err(
            Ws::GetMethodRequired
            | Ws::NoWebsocketUpgrade
            | Ws::NoConnectionUpgrade
            | Ws::NoVersionHeader
            | Ws::BadWebsocketKey,
        ) => return Err(HandshakeError::NotWebSocket),
    }
    // actix accepts the drafts' versions 7 and 8 too; only 13 is spoken here.
    let header = |name| req.headers().get(name).map(|v| v.as_bytes());
    if header("sec-websocket-version") != Some(b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    if !valid_key(header("sec-websocket-key").unwrap_or_default()) {
        return Err(HandshakeError::NotWebSocket);
    }
    if req.version() < actix_web::http::Version::HTTP_11 {
        return Err(HandshakeError::NotWebSocket);
    }
    Ok(())
}

/// A `Sec-WebSocket-Key` must be the base64 of 16 bytes (RFC 6455 §4.1).
fn valid_key(key: &[u8]) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .is_ok_and(|k| k.len() == 16)
}

fn check_origin(req: &HttpRequest, listener: &Listener) -> Result<(), HandshakeError> {
    if listener.allowed_origins.is_empty() {
        return Ok(());
    }
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
        return Ok(());
    };
    match origin.to_str() {
        Ok(o) if listener.allowed_origins.contains(o) => Ok(()),
        _ => Err(HandshakeError::Origin),
    }
}

/// The `token` query parameter (the only place a token is read from),
/// percent-decoded. An empty value counts as missing.
pub fn token_param(req: &HttpRequest) -> Option<String> {
    let query = req.query_string();
    url_query_value(query, "token").filter(|t| !t.is_empty())
}

fn url_query_value(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_the_base64_of_16_bytes() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key(b""));
        assert!(!valid_key(b"abc"));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25j")); // 15 bytes
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ=!"));
    }

    #[test]
    fn token_is_read_from_the_query_only() {
        assert_eq!(
            url_query_value("a=1&token=abc&b=2", "token").as_deref(),
            Some("abc")
        );
        assert_eq!(
            url_query_value("token=a%2Eb", "token").as_deref(),
            Some("a.b")
        );
        assert_eq!(url_query_value("tokens=x", "token"), None);
        assert_eq!(url_query_value("", "token"), None);
        assert_eq!(
            url_query_value("token=%zz%", "token").as_deref(),
            Some("%zz%")
        );
    }
}
