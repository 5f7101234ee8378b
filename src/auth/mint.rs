//! Minting HS256 tokens: `wsplus token`, the development token, the demo page.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{Map, Value};

use crate::settings::ListenerSettings;

/// The claims of a minted token.
#[derive(Debug, Clone)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// `{<tenant_claim>: tenant, sub?, iat, exp = now + ttl}`.
    pub fn new(tenant: &str, sub: Option<&str>, ttl_s: u64, tenant_claim: &str) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut m = Map::new();
        m.insert(tenant_claim.to_owned(), Value::from(tenant));
        if let Some(s) = sub {
            m.insert("sub".into(), Value::from(s));
        }
        m.insert("iat".into(), Value::from(now));
        m.insert("exp".into(), Value::from(now + ttl_s));
        Self(m)
    }

    /// The claims `listener` accepts for `tenant`: its tenant claim name, and
    /// its `issuer` and `audience` when configured.
    pub fn for_listener(
        listener: &ListenerSettings,
        tenant: &str,
        sub: Option<&str>,
        ttl_s: u64,
    ) -> Self {
        let mut claims = Self::new(tenant, sub, ttl_s, &listener.tenant.claim);
        if let Some(iss) = &listener.auth.issuer {
            claims = claims.issuer(iss);
        }
        if let Some(aud) = &listener.auth.audience {
            claims = claims.audience(aud);
        }
        claims
    }

    /// Adds `iss`.
    pub fn issuer(mut self, iss: &str) -> Self {
        self.0.insert("iss".into(), Value::from(iss));
        self
    }

    /// Adds `aud`.
    pub fn audience(mut self, aud: &str) -> Self {
        self.0.insert("aud".into(), Value::from(aud));
        self
    }
}

/// Signs `claims` with HS256.
pub fn hs256(secret: &str, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    encode(
        &Header::default(),
        &claims.0,
        &EncodingKey::from_secret(secret.as_bytes())?,
    )
}
