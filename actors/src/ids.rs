//! Newtypes for identity and routing, so a tenant can never be passed where a
//! session id is expected (and the other way round).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A verified tenant identifier. Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// Wraps an already verified tenant string.
    pub fn new(s: impl Into<Arc<str>>) -> Self {
        Self(s.into())
    }

    /// The tenant as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({:?})", &*self.0)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An unguessable connection id (128 random bits, UUID v4 text form).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// A fresh random id. Collisions are checked by the Broker at join time.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string().into())
    }

    /// Wraps an id received from outside (admin API path, cluster peer).
    pub fn from_string(s: impl Into<Arc<str>>) -> Self {
        Self(s.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", &*self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Index of a listener in the server's listener table (stable for the process).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ListenerId(pub u16);

/// Where a client's message goes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Back to the sender only.
    Session,
    /// Every session of the sender's tenant on the same listener, sender included.
    Tenant,
    /// Every session on the listener.
    Global,
}

impl Scope {
    /// The wire name (`session`, `tenant`, `global`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Session => "session",
            Scope::Tenant => "tenant",
            Scope::Global => "global",
        }
    }
}

/// How frames map to messages on a listener.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Frames are opaque payloads, delivered as received.
    Payload,
    /// Frames are JSON objects stamped with the verified `_session`.
    Message,
    /// The `wsplus.v1` protocol: commands, replies and channel pushes.
    Channels,
}

impl Mode {
    /// The wire name (`payload`, `message`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Payload => "payload",
            Mode::Message => "message",
            Mode::Channels => "channels",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_unique_and_long() {
        let a = SessionId::random();
        let b = SessionId::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 36);
    }
}
