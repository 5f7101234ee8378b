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
///
/// `jsonwebtoken` checks the signature, `exp` and `nbf` (with the leeway);
/// `iss` and `aud` are checked here afterwards, strictly and in a fixed order
/// (`iss` must be a string; `aud` a string or an array of strings), so a
/// token failing several checks always gets the same reason.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    /// One validation per allowed algorithm (jsonwebtoken wants a single
    /// algorithm family per validation).
    validations: Vec<(Algorithm, Validation)>,
    issuer: Option<String>,
    audience: Option<String>,
    tenant_from: TenantFrom,
    tenant_claim: String,
    static_tenant: Option<String>,
    leeway: Duration,
}

impl ClaimRules {
    /// Rules for `algs`, from the listener's auth and tenant settings.
    pub fn new(algs: &[Algorithm], auth: &AuthSettings, tenant: &TenantSettings) -> Self {
        let validation = |alg: Algorithm| {
            let mut v = Validation::new(alg);
            v.leeway = auth.leeway_s;
            v.validate_exp = true;
            v.validate_nbf = true;
            v.iss = None;
            v.validate_aud = false;
            v.set_required_spec_claims::<&str>(&[]);
            v
        };
        Self {
            validations: algs.iter().map(|a| (*a, validation(*a))).collect(),
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            tenant_from: tenant.from,
            tenant_claim: tenant.claim.clone(),
            static_tenant: tenant.static_id.clone(),
            leeway: Duration::from_secs(auth.leeway_s),
        }
    }

    /// Verifies `token` (screened: its header says `alg`) with `key` and
    /// extracts the identity. The session's
    /// deadline is `exp + leeway_s`: a token accepted thanks to the leeway is
    /// not closed the moment it is admitted.
    pub fn verify(
        &self,
        token: &str,
        alg: Algorithm,
        key: &DecodingKey,
    ) -> Result<Identity, AuthError> {
        let (_, validation) = self
            .validations
            .iter()
            .find(|(a, _)| *a == alg)
            .ok_or(AuthError::AlgorithmNotAllowed)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
            .map_err(map_error)?;
        // jsonwebtoken accepts `exp == now` (and rounds a fractional `exp`);
        // docs/protocol.md#handshake wants `exp` in the future (RFC 7519: now
        // before exp).
        let expires_at = deadline(data.claims.get("exp"), self.leeway);
        if expires_at.is_some_and(|at| at <= SystemTime::now()) {
            return Err(AuthError::Expired);
        }
        self.check_iss_aud(&data.claims)?;
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
        Ok(Identity {
            tenant,
            subject,
            expires_at,
            verified: true,
            claims,
        })
    }

    fn check_iss_aud(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        if let Some(want) = &self.issuer {
            match claims.get("iss") {
                Some(Value::String(iss)) if iss == want => {}
                _ => return Err(AuthError::InvalidIssuer),
            }
        }
        if let Some(want) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => aud == want,
                Some(Value::Array(auds)) => {
                    auds.iter().all(Value::is_string) && auds.iter().any(|a| a == want)
                }
                _ => false,
            };
            if !ok {
                return Err(AuthError::InvalidAudience);
            }
        }
        Ok(())
    }
}

/// The session deadline: `exp` (seconds since the epoch; RFC 7519's
/// NumericDate may have a fraction) plus the leeway. `None` without a numeric
/// `exp`, or when the deadline lies beyond what the clock can represent
/// (hundreds of billions of years: never, in practice).
fn deadline(exp: Option<&Value>, leeway: Duration) -> Option<SystemTime> {
    let secs = Duration::try_from_secs_f64(exp?.as_f64()?).ok()?;
    SystemTime::UNIX_EPOCH
        .checked_add(secs)?
        .checked_add(leeway)
}

fn map_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::InvalidSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthError::AlgorithmNotAllowed,
        _ => AuthError::Malformed,
    }
}

/// What the header screening found: the (allowed) algorithm and the `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screened {
    /// `alg`, one of the listener's allowed algorithms.
    pub alg: Algorithm,
    /// `kid`, when present.
    pub kid: Option<String>,
}

/// Headers that would let a token name its own key; refused outright.
const KEY_BEARING_HEADERS: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

/// Screens the header before any key is looked up: size, segment count, JSON,
/// an `alg` from the allow-list, and no key-bearing headers (keys never come
/// from the token). Cheap: a token over [`MAX_TOKEN_BYTES`] is refused before
/// any decoding.
pub fn screen_header(token: &str, allowed: &[Algorithm]) -> Result<Screened, AuthError> {
    use base64::Engine;
    if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
        return Err(AuthError::Malformed);
    }
    let head = token.split('.').next().unwrap_or_default();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| AuthError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&raw).map_err(|_| AuthError::Malformed)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(AuthError::Malformed)?;
    let alg = alg
        .parse::<Algorithm>()
        .ok()
        .filter(|a| allowed.contains(a))
        .ok_or(AuthError::AlgorithmNotAllowed)?;
    if KEY_BEARING_HEADERS.iter().any(|k| header.contains_key(*k)) {
        return Err(AuthError::AlgorithmNotAllowed);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(AuthError::Malformed),
    };
    Ok(Screened { alg, kid })
}
