//! Handshake failures and their HTTP statuses, in one place
//! (docs/protocol.md#handshake). The close codes of established sessions live
//! in `wsplus_actors::CloseCode`.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;
use wsplus_actors::broker::JoinError;

use crate::auth::AuthError;
use crate::tenants::Refusal;

/// Why an upgrade request was refused before any frame was exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// No listener at this path.
    #[error("no listener at this path")]
    NotFound,
    /// `Origin` not in `allowed_origins`.
    #[error("origin not allowed")]
    Origin,
    /// Token missing or refused.
    #[error("unauthorized")]
    Auth(AuthError),
    /// `tenants.policy = "registered"` and the tenant has no record.
    #[error("tenant not registered")]
    UnknownTenant,
    /// The tenant's record says `enabled = false`.
    #[error("tenant disabled")]
    TenantDisabled,
    /// The tenant's `max_connections` or the listener's
    /// `max_connections_per_tenant` reached.
    #[error("too many connections for this tenant")]
    TenantLimit,
    /// `limits.max_connections` reached.
    #[error("server connection limit reached")]
    ServerFull,
    /// Shutting down.
    #[error("server shutting down")]
    ShuttingDown,
    /// Not a WebSocket upgrade request (after every check above passed):
    /// upgrade headers missing, a `Sec-WebSocket-Key` that is not the base64
    /// of 16 bytes, or a request below HTTP/1.1 (RFC 6455 §4.2.1).
    #[error("not a websocket upgrade request")]
    NotWebSocket,
    /// A `Sec-WebSocket-Version` other than 13 (RFC 6455 §4.2.2): 426 with
    /// `Sec-WebSocket-Version: 13`.
    #[error("unsupported websocket version: this server speaks version 13")]
    UnsupportedVersion,
    /// The `connect` hook answered `{"allow": false}`.
    #[error("refused by the backend")]
    HookDenied,
    /// The `connect` hook gave no usable answer (fail closed).
    #[error("the backend could not decide")]
    HookUnavailable,
}

impl HandshakeError {
    /// The HTTP status answered.
    pub fn status(self) -> StatusCode {
        match self {
            HandshakeError::NotFound => StatusCode::NOT_FOUND,
            HandshakeError::Origin
            | HandshakeError::UnknownTenant
            | HandshakeError::TenantDisabled
            | HandshakeError::HookDenied => StatusCode::FORBIDDEN,
            HandshakeError::Auth(_) => StatusCode::UNAUTHORIZED,
            HandshakeError::TenantLimit => StatusCode::TOO_MANY_REQUESTS,
            HandshakeError::ServerFull
            | HandshakeError::ShuttingDown
            | HandshakeError::HookUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            HandshakeError::NotWebSocket => StatusCode::BAD_REQUEST,
            HandshakeError::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
        }
    }

    /// The `reason` in the body and the `rejected` counter label.
    pub fn reason(self) -> &'static str {
        match self {
            HandshakeError::NotFound => "not_found",
            HandshakeError::Origin => "origin",
            HandshakeError::Auth(e) => e.reason(),
            HandshakeError::UnknownTenant => "unknown_tenant",
            HandshakeError::TenantDisabled => "tenant_disabled",
            HandshakeError::TenantLimit => "tenant_limit",
            HandshakeError::ServerFull => "server_full",
            HandshakeError::ShuttingDown => "shutting_down",
            HandshakeError::NotWebSocket => "not_websocket",
            HandshakeError::UnsupportedVersion => "unsupported_version",
            HandshakeError::HookDenied => "hook_denied",
            HandshakeError::HookUnavailable => "hook_unavailable",
        }
    }

    /// The refusals that are not a token's, in counter order (after
    /// [`AuthError::ALL`]).
    const OTHERS: [HandshakeError; 11] = [
        HandshakeError::Origin,
        HandshakeError::UnknownTenant,
        HandshakeError::TenantDisabled,
        HandshakeError::TenantLimit,
        HandshakeError::NotFound,
        HandshakeError::ServerFull,
        HandshakeError::ShuttingDown,
        HandshakeError::NotWebSocket,
        HandshakeError::UnsupportedVersion,
        HandshakeError::HookDenied,
        HandshakeError::HookUnavailable,
    ];

    /// Every counted refusal, in counter order.
    pub fn all() -> impl Iterator<Item = HandshakeError> {
        AuthError::ALL
            .into_iter()
            .map(HandshakeError::Auth)
            .chain(Self::OTHERS)
    }

    /// Every counted reason label, in counter order.
    pub fn all_reasons() -> impl Iterator<Item = &'static str> {
        Self::all().map(Self::reason)
    }

    /// Position in [`HandshakeError::all`] (counter index).
    fn index(self) -> usize {
        let auth = AuthError::ALL.len();
        match self {
            HandshakeError::Auth(e) => e.index(),
            HandshakeError::Origin => auth,
            HandshakeError::UnknownTenant => auth + 1,
            HandshakeError::TenantDisabled => auth + 2,
            HandshakeError::TenantLimit => auth + 3,
            HandshakeError::NotFound => auth + 4,
            HandshakeError::ServerFull => auth + 5,
            HandshakeError::ShuttingDown => auth + 6,
            HandshakeError::NotWebSocket => auth + 7,
            HandshakeError::UnsupportedVersion => auth + 8,
            HandshakeError::HookDenied => auth + 9,
            HandshakeError::HookUnavailable => auth + 10,
        }
    }

    /// The JSON response `{"error": "...", "reason": "..."}`. Never echoes input.
    /// `tenant_claim` is the listener's tenant claim (claim mode): an
    /// `invalid_tenant` body names it, since the configuration is no secret
    /// and "invalid tenant" alone leaves the token's issuer guessing.
    pub fn response(self, tenant_claim: Option<&str>) -> HttpResponse {
        #[derive(Serialize)]
        struct Body {
            error: String,
            reason: &'static str,
        }
        let error = match (self, tenant_claim) {
            (HandshakeError::Auth(AuthError::InvalidTenant), Some(claim)) => {
                format!("invalid tenant: the token needs claim {claim:?} (a non-empty string)")
            }
            (HandshakeError::Auth(e), _) => e.to_string(),
            (other, _) => other.to_string(),
        };
        let mut resp = HttpResponse::build(self.status());
        if self == HandshakeError::UnsupportedVersion {
            resp.insert_header(("Sec-WebSocket-Version", "13"));
        }
        resp.json(Body {
            error,
            reason: self.reason(),
        })
    }
}

impl From<AuthError> for HandshakeError {
    fn from(e: AuthError) -> Self {
        HandshakeError::Auth(e)
    }
}

impl From<Refusal> for HandshakeError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Unknown => HandshakeError::UnknownTenant,
            Refusal::Disabled => HandshakeError::TenantDisabled,
        }
    }
}

impl From<JoinError> for HandshakeError {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::TenantLimit => HandshakeError::TenantLimit,
            JoinError::ServerFull => HandshakeError::ServerFull,
            JoinError::ShuttingDown => HandshakeError::ShuttingDown,
            // A 128-bit id collision: refuse this one attempt; the client retries.
            JoinError::DuplicateId => HandshakeError::ServerFull,
            // The listener table and the Broker disagree (a bug): the server
            // cannot serve this listener now.
            JoinError::UnknownListener(_) => HandshakeError::ServerFull,
        }
    }
}

/// Handshake rejection counters by reason (stats and metrics).
#[derive(Debug)]
pub struct Rejections {
    counts: Vec<AtomicU64>,
}

impl Default for Rejections {
    fn default() -> Self {
        Self {
            counts: HandshakeError::all_reasons()
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl Rejections {
    /// Counts one rejection.
    pub fn add(&self, e: HandshakeError) {
        self.counts[e.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// `(reason, count)` for every reason, zeros included.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        HandshakeError::all_reasons()
            .zip(&self.counts)
            .map(|(r, c)| (r, c.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_unique_and_counted() {
        let all: Vec<_> = HandshakeError::all_reasons().collect();
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(all.len(), dedup.len());
        for (i, e) in HandshakeError::all().enumerate() {
            assert_eq!(e.index(), i, "{e:?}");
        }
        let r = Rejections::default();
        r.add(HandshakeError::Auth(AuthError::Expired));
        r.add(HandshakeError::TenantLimit);
        let snap = r.snapshot();
        assert!(snap.contains(&("expired", 1)));
        assert!(snap.contains(&("tenant_limit", 1)));
        assert!(snap.contains(&("origin", 0)));
    }
}
