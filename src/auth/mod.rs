//! Handshake authentication: turns the `token` query parameter into a verified
//! [`Identity`], per listener, according to `[listeners.auth]` and
//! `[listeners.tenant]`.
//!
//! Modes: `none` (static tenant, no token), `hs256` (shared secret from an
//! environment variable or file), `jwks` (RS256/ES256 keys fetched from a JWKS
//! endpoint). Keys never come from the token.

mod error;
pub mod jwt;
pub mod mint;
mod secret;

use std::time::SystemTime;

pub use error::AuthError;

use jsonwebtoken::{Algorithm, DecodingKey};

use crate::env::Env;
use crate::settings::{AuthMode, ListenerSettings, TenantFrom};

/// What a verified token (or a `none` listener) says about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Verified tenant.
    pub tenant: String,
    /// `sub`, when present.
    pub subject: Option<String>,
    /// `exp`, when present.
    pub expires_at: Option<SystemTime>,
    /// True when a token was verified (false for `auth.mode = none`).
    pub verified: bool,
}

/// Why an authenticator could not be built (bad or missing secret...). Printed
/// at start-up; never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The secret could not be read.
    #[error("{key}: {problem}")]
    Secret {
        /// Full key path.
        key: String,
        /// What is wrong (never the secret itself).
        problem: secret::SecretError,
    },
    /// The mode is not available in this build.
    #[error("{key}: auth mode {mode:?} is not available yet")]
    Unsupported {
        /// Full key path.
        key: String,
        /// The mode.
        mode: AuthMode,
    },
}

/// Verifies handshake tokens for one listener.
pub struct Authenticator {
    mode: AuthMode,
    static_tenant: Option<String>,
    hs256: Option<(DecodingKey, jwt::ClaimRules)>,
    /// hs256: the secret, kept to sign demo tokens ([`Authenticator::mint`]).
    signing_secret: Option<String>,
    dev_token: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the authenticator of `listeners[index]`. `dev_default` is true when
    /// the configuration is the embedded default (development conveniences).
    pub fn new(
        index: usize,
        listener: &ListenerSettings,
        env: &Env,
        dev_default: bool,
    ) -> Result<Self, SetupError> {
        let static_tenant = match listener.tenant.from {
            TenantFrom::Static => listener.tenant.static_id.clone(),
            TenantFrom::Claim => None,
        };
        match listener.auth.mode {
            AuthMode::None => Ok(Self {
                mode: AuthMode::None,
                static_tenant,
                hs256: None,
                signing_secret: None,
                dev_token: None,
            }),
            AuthMode::Hs256 => {
                let key = format!("listeners[{index}].auth");
                let (secret, generated) = match secret::hs256_secret(&listener.auth, env) {
                    Ok(s) => (s, false),
                    Err(_) if dev_default => (secret::generate(), true),
                    Err(e) => return Err(SetupError::Secret { key, problem: e }),
                };
                let rules =
                    jwt::ClaimRules::new(&[Algorithm::HS256], &listener.auth, &listener.tenant);
                let dev_token = generated.then(|| {
                    mint::hs256(
                        &secret,
                        &mint::Claims::new("demo", Some("demo-user"), 3600, &listener.tenant.claim),
                    )
                });
                let decoding = DecodingKey::from_secret(secret.as_bytes()).map_err(|_| {
                    SetupError::Secret {
                        key,
                        problem: secret::SecretError::Unusable,
                    }
                })?;
                Ok(Self {
                    mode: AuthMode::Hs256,
                    static_tenant,
                    hs256: Some((decoding, rules)),
                    signing_secret: Some(secret),
                    dev_token: dev_token.and_then(Result::ok),
                })
            }
            mode => Err(SetupError::Unsupported {
                key: format!("listeners[{index}].auth.mode"),
                mode,
            }),
        }
    }

    /// The listener's auth mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// True once the authenticator can verify tokens (JWKS: keys loaded).
    pub fn ready(&self) -> bool {
        true
    }

    /// Verifies a token from the `token` query parameter.
    pub async fn verify(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        match self.mode {
            AuthMode::None => Ok(Identity {
                tenant: self.static_tenant.clone().ok_or(AuthError::InvalidTenant)?,
                subject: None,
                expires_at: None,
                verified: false,
            }),
            AuthMode::Hs256 => {
                let token = token.ok_or(AuthError::MissingToken)?;
                jwt::screen_header(token, &[Algorithm::HS256])?;
                let (key, rules) = self.hs256.as_ref().ok_or(AuthError::UnknownKey)?;
                rules.verify(token, key)
            }
            AuthMode::Jwks => Err(AuthError::UnknownKey),
        }
    }

    /// Signs `claims` with this listener's HS256 secret (the demo token route).
    /// None unless the mode is hs256.
    pub fn mint(&self, claims: &mint::Claims) -> Option<String> {
        mint::hs256(self.signing_secret.as_deref()?, claims).ok()
    }

    /// A ready-to-use development token for tenant `demo`, when this run
    /// generated its own secret (embedded default with the secret unset).
    pub fn dev_token(&self) -> Option<String> {
        self.dev_token.clone()
    }
}
