//! The verified identity of a connection, fixed for its whole life.

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Serialize;

use crate::ids::{ListenerId, Scope, SessionId, TenantId};

/// How the identity was established.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthStatus {
    /// A JWT was verified at the upgrade.
    Verified,
    /// The listener has `auth.mode = none`.
    None,
}

impl AuthStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthStatus::Verified => "verified",
            AuthStatus::None => "none",
        }
    }
}

/// Everything the broker knows about a connection. Built by the server at the
/// upgrade, after every handshake check passed, and never changed afterwards.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// Unguessable connection id.
    pub id: SessionId,
    /// The listener the connection came in on.
    pub listener: ListenerId,
    /// The listener's path (for admin output and logs).
    pub listener_path: std::sync::Arc<str>,
    /// Verified tenant.
    pub tenant: TenantId,
    /// The token's `sub`, if any.
    pub subject: Option<String>,
    /// How the identity was established.
    pub auth: AuthStatus,
    /// The listener's routing scope.
    pub scope: Scope,
    /// Peer address as seen by the server.
    pub remote: Option<SocketAddr>,
    /// When the upgrade was accepted.
    pub connected_at: SystemTime,
    /// The token's `exp`, if any.
    pub expires_at: Option<SystemTime>,
}

impl SessionInfo {
    /// The `_session` object stamped on every message of this session.
    pub fn stamp(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "websocket",
            "id": self.id.as_str(),
            "tenantId": self.tenant.as_str(),
            "subject": self.subject,
            "authStatus": self.auth.as_str(),
            "routingScope": self.scope.as_str(),
        })
    }
}
