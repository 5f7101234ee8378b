//! JWT verification shared by the hs256 and jwks modes: header screening, the
//! signature check with a key chosen by the server, claim validation, and the
//! tenant and subject extraction.

use std::time::{Duration, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{AuthError, Identity};
use crate::settings::{AuthSettings, TenantFrom, TenantSettings};

/// Tokens longer than this are refused before any parsing (cheap rejection).
pub const MAX_TOKEN_BYTES: usize = 8192;
/// Longest accepted tenant id.
pub const MAX_TENANT_BYTES: usize = 256;

/// Claim rules of one listener.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    validation: Validation,
    tenant_from: TenantFrom,
    tenant_claim: String,
    static_tenant: Option<String>,
}

impl ClaimRules {
    /// Rules for `alg`, from the listener's auth and tenant settings.
    pub fn new(algs: &[Algorithm], auth: &AuthSettings, tenant: &TenantSettings) -> Self {
        let mut v = Validation::new(algs[0]);
        v.algorithms = algs.to_vec();
        v.leeway = auth.leeway_s;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required: Vec<&str> = Vec::new();
        match &auth.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            None => v.iss = None,
        }
        match &auth.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.validate_aud = true;
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        Self {
            validation: v,
            tenant_from: tenant.from,
            tenant_claim: tenant.claim.clone(),
            static_tenant: tenant.static_id.clone(),
        }
    }

    /// Verifies `token` with `key` and extracts the identity.
    pub fn verify(&self, token: &str, key: &DecodingKey) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation)
            .map_err(map_error)?;
        let claims = data.claims;
        let tenant = match self.tenant_from {
            TenantFrom::Static => self.static_tenant.clone().ok_or(AuthError::InvalidTenant)?,
            TenantFrom::Claim => match claims.get(&self.tenant_claim) {
                Some(Value::String(t)) if !t.is_empty() && t.len() <= MAX_TENANT_BYTES => t.clone(),
                _ => return Err(AuthError::InvalidTenant),
            },
        };
        let subject = match claims.get("sub") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        Ok(Identity {
            tenant,
            subject,
            expires_at,
            verified: true,
        })
    }
}

fn map_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::InvalidSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::InvalidIssuer,
        ErrorKind::InvalidAudience => AuthError::InvalidAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::InvalidIssuer,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::InvalidAudience,
        ErrorKind::InvalidClaimFormat(c) if c == "iss" => AuthError::InvalidIssuer,
        ErrorKind::InvalidClaimFormat(c) if c == "aud" => AuthError::InvalidAudience,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthError::AlgorithmNotAllowed,
        _ => AuthError::Malformed,
    }
}

/// Screens the header before any key is looked up: size, segment count, JSON,
/// an `alg` from the allow-list, and no key-bearing headers (keys never come
/// from the token). Returns the header's `kid`.
pub fn screen_header(token: &str, allowed: &[Algorithm]) -> Result<Option<String>, AuthError> {
    use base64::Engine;
    if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
        return Err(AuthError::Malformed);
    }
    let head = token.split('.').next().unwrap_or_default();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&raw).map_err(|_| AuthError::Malformed)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(AuthError::Malformed)?;
    let allowed_alg = allowed.iter().any(|a| format!("{a:?}") == alg);
    if !allowed_alg {
        return Err(AuthError::AlgorithmNotAllowed);
    }
    if ["jku", "x5u", "jwk", "x5c"]
        .iter()
        .any(|k| header.contains_key(*k))
    {
        return Err(AuthError::AlgorithmNotAllowed);
    }
    match header.get("kid") {
        None => Ok(None),
        Some(Value::String(k)) => Ok(Some(k.clone())),
        Some(_) => Err(AuthError::Malformed),
    }
}
