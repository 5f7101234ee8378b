//! Handshake authentication: turns the `token` query parameter into a verified
//! [`Identity`], per listener, according to `[listeners.auth]` and
//! `[listeners.tenant]`.
//!
//! Modes: `none` (static tenant, no token), `hs256` (shared secret from an
//! environment variable or file), `jwks` (RS256/ES256 keys fetched from a JWKS
//! endpoint). Keys never come from the token.

mod error;
pub mod http;
pub mod jwks;
pub mod jwt;
pub mod mint;
pub mod secret;
pub mod tenant;

use std::time::{Duration, SystemTime};

pub use error::AuthError;
pub use secret::{hs256_secret, SecretError};

use jsonwebtoken::{Algorithm, DecodingKey};

use crate::env::Env;
use crate::settings::{AuthMode, ListenerSettings, TenantFrom};
use crate::tenants::TenantRegistry;

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
    /// Every claim of the verified token (empty for `auth.mode = none`): what
    /// channels mode reads its permission patterns from, and what the
    /// `connect` hook hands to the backend.
    pub claims: serde_json::Map<String, serde_json::Value>,
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
    /// jwks mode without `jwks_uri` (validation normally catches this).
    #[error("{key}: required when auth.mode = \"jwks\"")]
    MissingJwksUri {
        /// Full key path.
        key: String,
    },
}

/// The algorithms a jwks listener accepts.
const JWKS_ALGS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// How a listener verifies tokens.
enum Verifier {
    /// `auth.mode = none`: no token, the static tenant.
    None,
    /// A shared secret; HS256 only.
    Hs256 {
        key: DecodingKey,
        rules: jwt::ClaimRules,
        /// Kept to sign demo tokens ([`Authenticator::mint`]).
        secret: String,
    },
    /// Keys from a JWKS endpoint; RS256 and ES256, chosen by `kid`.
    Jwks {
        keys: jwks::Jwks,
        rules: jwt::ClaimRules,
    },
    /// Each registered tenant's own JWKS, chosen by the token's `iss`.
    Tenant(tenant::TenantVerifier),
}

/// Verifies a screened token with the key its `kid` names in `keys`.
async fn verify_with_jwks(
    token: &str,
    screened: &jwt::Screened,
    keys: &jwks::Jwks,
    rules: &jwt::ClaimRules,
) -> Result<Identity, AuthError> {
    let key = keys.key(screened.kid.as_deref()).await?;
    // An RS256 key never verifies an ES256 token and vice versa.
    if key.alg != screened.alg {
        return Err(AuthError::AlgorithmNotAllowed);
    }
    rules.verify(token, key.alg, &key.key)
}

/// Shortest HS256 secret that draws no warning: the hash's output size
/// (RFC 7518 §3.2). Shorter ones still work, as other JWT tools accept them.
const MIN_SECRET_BYTES: usize = 32;

/// Logs a warning naming `key` (never the secret) when an HS256 secret is
/// shorter than [`MIN_SECRET_BYTES`]; `serve` and `wsplus token` both call it.
pub fn warn_if_short(key: &str, secret: &str) {
    if secret.len() < MIN_SECRET_BYTES {
        log::warn!(
            "{key}: the HS256 secret is {} bytes; RFC 7518 asks for at least \
             {MIN_SECRET_BYTES} (256 bits), and a short one can be guessed offline \
             from any token",
            secret.len()
        );
    }
}

/// Verifies handshake tokens for one listener.
pub struct Authenticator {
    mode: AuthMode,
    static_tenant: Option<String>,
    verifier: Verifier,
    /// True when the secret was generated for this run (development default).
    generated: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the authenticator of `listeners[index]`. `dev_default` is true in
    /// the development default (see `server::dev`): a missing HS256 secret is
    /// then generated for this run instead of being an error.
    /// A jwks listener starts its fetcher task here, so this must run inside
    /// the actix `System`.
    pub fn new(
        index: usize,
        listener: &ListenerSettings,
        env: &Env,
        dev_default: bool,
        tenants: &TenantRegistry,
    ) -> Result<Self, SetupError> {
        let static_tenant = match listener.tenant.from {
            TenantFrom::Static => listener.tenant.static_id.clone(),
            TenantFrom::Claim => None,
        };
        let auth = &listener.auth;
        let mut generated = false;
        let verifier = match auth.mode {
            AuthMode::None => Verifier::None,
            AuthMode::Hs256 => {
                let key = format!("listeners[{index}].auth");
                let secret = match secret::hs256_secret(auth, env) {
                    Ok(s) => s,
                    Err(_) if dev_default => {
                        generated = true;
                        secret::generate()
                    }
                    Err(e) => return Err(SetupError::Secret { key, problem: e }),
                };
                warn_if_short(&key, &secret);
                let decoding = DecodingKey::from_secret(secret.as_bytes()).map_err(|_| {
                    SetupError::Secret {
                        key,
                        problem: secret::SecretError::Unusable,
                    }
                })?;
                Verifier::Hs256 {
                    key: decoding,
                    rules: jwt::ClaimRules::new(&[Algorithm::HS256], auth, &listener.tenant),
                    secret,
                }
            }
            AuthMode::Jwks => {
                let uri = auth
                    .jwks_uri
                    .clone()
                    .ok_or_else(|| SetupError::MissingJwksUri {
                        key: format!("listeners[{index}].auth.jwks_uri"),
                    })?;
                Verifier::Jwks {
                    keys: jwks::Jwks::start(
                        listener.path.clone(),
                        uri,
                        Duration::from_secs(auth.jwks_refresh_s),
                    ),
                    rules: jwt::ClaimRules::new(&JWKS_ALGS, auth, &listener.tenant),
                }
            }
            AuthMode::Tenant => Verifier::Tenant(tenant::TenantVerifier::start(
                &listener.path,
                auth,
                &listener.tenant,
                tenants,
            )),
        };
        Ok(Self {
            mode: auth.mode,
            static_tenant,
            verifier,
            generated,
        })
    }

    /// The listener's auth mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// True once the authenticator can verify tokens (jwks: the first fetch
    /// has succeeded). `/readyz` reports it. A tenant listener is always
    /// ready: one tenant's identity provider being down must not take the
    /// node out of service for every other tenant.
    pub fn ready(&self) -> bool {
        match &self.verifier {
            Verifier::None | Verifier::Hs256 { .. } | Verifier::Tenant(_) => true,
            Verifier::Jwks { keys, .. } => keys.ready(),
        }
    }

    /// Verifies a token from the `token` query parameter.
    pub async fn verify(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        match &self.verifier {
            Verifier::None => Ok(Identity {
                tenant: self.static_tenant.clone().ok_or(AuthError::InvalidTenant)?,
                subject: None,
                expires_at: None,
                verified: false,
                claims: serde_json::Map::new(),
            }),
            Verifier::Hs256 { key, rules, .. } => {
                let token = token.ok_or(AuthError::MissingToken)?;
                let screened = jwt::screen_header(token, &[Algorithm::HS256])?;
                rules.verify(token, screened.alg, key)
            }
            Verifier::Jwks { keys, rules } => {
                let token = token.ok_or(AuthError::MissingToken)?;
                let screened = jwt::screen_header(token, &JWKS_ALGS)?;
                verify_with_jwks(token, &screened, keys, rules).await
            }
            Verifier::Tenant(tenants) => {
                tenants.verify(token.ok_or(AuthError::MissingToken)?).await
            }
        }
    }

    /// Signs `claims` with this listener's HS256 secret (the demo token route).
    /// None unless the mode is hs256.
    pub fn mint(&self, claims: &mint::Claims) -> Option<String> {
        match &self.verifier {
            Verifier::Hs256 { secret, .. } => mint::hs256(secret, claims).ok(),
            Verifier::None | Verifier::Jwks { .. } | Verifier::Tenant(_) => None,
        }
    }

    /// True when this run generated the HS256 secret (development default
    /// with the secret unset): tokens minted with it work until the process
    /// stops.
    pub fn generated_secret(&self) -> bool {
        self.generated
    }
}
