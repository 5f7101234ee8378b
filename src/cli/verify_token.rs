//! `wsplus verify-token`: decode a JWT and give the verdict a listener of the
//! configuration would give at the handshake, with the exact 401 reason and a
//! one-line explanation of it. The verdict comes from the listener's own
//! [`Authenticator`] (a jwks listener fetches its keys), so it cannot drift
//! from what `serve` does; only the explanation is added here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Map, Value};

use crate::auth::jwt::{MAX_TENANT_BYTES, MAX_TOKEN_BYTES};
use crate::auth::{AuthError, Authenticator, Identity};
use crate::cluster::RedisTarget;
use crate::env::Env;
use crate::settings::{AuthMode, ListenerSettings, TenantFrom};
use crate::tenants::TenantRegistry;

/// Arguments of `wsplus verify-token`.
#[derive(Debug, clap::Args)]
pub struct VerifyTokenArgs {
    /// Configuration whose listener judges the token (default:
    /// config/default.toml, else built in).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Path of that listener (default: the first).
    #[arg(long)]
    pub listener: Option<String>,
    /// The token (as it would be given in `?token=`).
    pub token: String,
}

/// Prints the decoded header and claims and the verdict; exit 0 when the
/// listener accepts the token, 1 when it refuses it or cannot judge it.
pub fn run(args: VerifyTokenArgs) -> ExitCode {
    let (settings, index) = match super::listener(args.config.as_deref(), args.listener.as_deref())
    {
        Ok(x) => x,
        Err(problem) => {
            eprintln!("{problem}");
            return ExitCode::FAILURE;
        }
    };
    let listener = &settings.listeners[index];
    let decoded = Decoded::new(&args.token);
    println!("header: {}", decoded.show(&decoded.header));
    println!("claims: {}", decoded.show(&decoded.claims));
    let token = (!args.token.is_empty()).then_some(args.token.as_str());
    let system = actix_rt::System::new();
    let verdict = system.block_on(async {
        // The registered tenants as `serve` sees them (a tenant-mode listener
        // verifies with their identity providers).
        let redis = RedisTarget::from_settings(&settings.cluster, &Env::process())
            .map_err(|e| e.to_string())?;
        let tenants = std::sync::Arc::new(
            TenantRegistry::open(&settings.tenants, redis.as_ref()).map_err(|e| e.to_string())?,
        );
        tenants.connect().await.map_err(|e| e.to_string())?;
        // Built inside the System: a jwks listener starts fetching here.
        let auth = Authenticator::new(index, listener, &Env::process(), false, &tenants)
            .map_err(|e| e.to_string())?;
        let verdict = auth.verify(token).await;
        Ok::<_, String>((verdict, auth.ready()))
    });
    match verdict {
        Ok((Ok(identity), _)) => {
            println!("ok: tenant {}, {}", identity.tenant, expiry(&identity));
            ExitCode::SUCCESS
        }
        Ok((Err(e), keys_loaded)) => {
            let why = explain(e, &decoded, listener, keys_loaded);
            println!("{}: {why}", e.reason());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `expires in 59m`, or `no expiry`.
fn expiry(identity: &Identity) -> String {
    match identity.expires_at {
        Some(at) => {
            let left = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            format!("expires in {}", human(left.as_secs()))
        }
        None => "no expiry".into(),
    }
}

/// `45s`, `59m`, `23h59m`, `3d4h`: the two largest units, rounded down.
fn human(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// The token's header and claims as JSON objects, when they decode.
struct Decoded {
    header: Option<Map<String, Value>>,
    claims: Option<Map<String, Value>>,
}

impl Decoded {
    fn new(token: &str) -> Self {
        let mut parts = token.split('.');
        let mut next = || {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts.next()?)
                .ok()?;
            serde_json::from_slice::<Map<String, Value>>(&raw).ok()
        };
        let header = next();
        let claims = next();
        Self { header, claims }
    }

    fn show(&self, part: &Option<Map<String, Value>>) -> String {
        match part {
            Some(m) => Value::Object(m.clone()).to_string(),
            None => "(not base64url-encoded JSON)".into(),
        }
    }

    fn header(&self, name: &str) -> Option<&Value> {
        self.header.as_ref()?.get(name)
    }

    fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.as_ref()?.get(name)
    }

    /// Seconds from now to the numeric claim `name` (negative: in the past).
    fn seconds_until(&self, name: &str) -> Option<i64> {
        let at = self.claim(name)?.as_f64()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        Some((at - now) as i64)
    }
}

/// One line saying why `e` was the verdict, from the decoded token and the
/// listener's settings.
fn explain(e: AuthError, d: &Decoded, l: &ListenerSettings, keys_loaded: bool) -> String {
    let auth = &l.auth;
    let quoted = |v: Option<&Value>| v.map_or("missing".to_owned(), Value::to_string);
    match e {
        AuthError::MissingToken => "the token is empty".into(),
        AuthError::Malformed => format!(
            "not a JWT the listener reads: three base64url segments, a JSON header with a \
             string alg (and kid, when present), at most {MAX_TOKEN_BYTES} bytes"
        ),
        AuthError::AlgorithmNotAllowed => {
            let own_key = ["jku", "x5u", "jwk", "x5c"]
                .into_iter()
                .find(|k| d.header(k).is_some());
            match own_key {
                Some(k) => format!(
                    "the header names its own key ({k}); keys come from the configuration only"
                ),
                None => format!(
                    "alg {} is not accepted by auth.mode = {} (accepts {})",
                    quoted(d.header("alg")),
                    mode_name(auth.mode),
                    match auth.mode {
                        AuthMode::Jwks | AuthMode::Tenant => "RS256, ES256",
                        AuthMode::Hs256 | AuthMode::None => "HS256",
                    }
                ),
            }
        }
        AuthError::UnknownKey => match (d.header("kid"), keys_loaded) {
            (_, false) => "no keys could be fetched from the listener's jwks_uri".into(),
            (None, true) => "the header has no kid; a jwks listener picks the key by kid".into(),
            (Some(kid), true) => format!("no key with kid {kid} in the listener's JWKS"),
        },
        AuthError::InvalidSignature => match auth.mode {
            AuthMode::Jwks | AuthMode::Tenant => format!(
                "the signature does not verify with the JWKS key {}",
                quoted(d.header("kid"))
            ),
            AuthMode::Hs256 | AuthMode::None => format!(
                "the signature does not match the listener's secret ({})",
                secret_source(l)
            ),
        },
        AuthError::Expired => match d.seconds_until("exp") {
            Some(s) => format!(
                "exp was {} ago (leeway {}s)",
                human(s.unsigned_abs()),
                auth.leeway_s
            ),
            None => "exp is in the past".into(),
        },
        AuthError::NotYetValid => match d.seconds_until("nbf") {
            Some(s) => format!(
                "nbf is {} from now (leeway {}s)",
                human(s.unsigned_abs()),
                auth.leeway_s
            ),
            None => "nbf is in the future".into(),
        },
        AuthError::InvalidIssuer if auth.mode == AuthMode::Tenant => format!(
            "iss is {}, and no registered tenant has that issuer",
            quoted(d.claim("iss"))
        ),
        AuthError::InvalidIssuer => format!(
            "iss is {}, the listener requires {:?}",
            quoted(d.claim("iss")),
            auth.issuer.as_deref().unwrap_or_default()
        ),
        AuthError::InvalidAudience => format!(
            "aud is {}, the listener requires {:?} (a string, or an array of strings containing it)",
            quoted(d.claim("aud")),
            auth.audience.as_deref().unwrap_or_default()
        ),
        AuthError::InvalidTenant => tenant_problem(d, l),
    }
}

/// Why no tenant could be read: the claim missing (listing what the token
/// has), not a string, empty or too long; or no static tenant configured.
fn tenant_problem(d: &Decoded, l: &ListenerSettings) -> String {
    if l.tenant.from == TenantFrom::Static || l.auth.mode == AuthMode::None {
        return "the listener has no tenant.static_id".into();
    }
    let claim = &l.tenant.claim;
    match d.claim(claim) {
        Some(v) if l.auth.mode == AuthMode::Tenant => format!(
            "claim {claim:?} is {v}, not the registered tenant whose issuer is {}",
            d.claim("iss")
                .map_or("missing".to_owned(), Value::to_string)
        ),
        None => {
            let mut has: Vec<&str> = d
                .claims
                .iter()
                .flat_map(|m| m.keys())
                .map(String::as_str)
                .collect();
            has.sort_unstable();
            format!("claim {claim:?} missing (token has: {})", has.join(", "))
        }
        Some(Value::String(t)) if t.is_empty() => format!("claim {claim:?} is empty"),
        Some(Value::String(t)) => format!(
            "claim {claim:?} is {} bytes, at most {MAX_TENANT_BYTES} are allowed",
            t.len()
        ),
        Some(other) => format!("claim {claim:?} must be a string, got {other}"),
    }
}

/// Where the listener's HS256 secret comes from, by name (never the value).
fn secret_source(l: &ListenerSettings) -> String {
    match (&l.auth.secret_file, &l.auth.secret_env) {
        (Some(path), _) => format!("file {path}"),
        (None, Some(var)) => format!("variable {var}"),
        (None, None) => "none configured".into(),
    }
}

fn mode_name(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::None => "none",
        AuthMode::Hs256 => "hs256",
        AuthMode::Jwks => "jwks",
        AuthMode::Tenant => "tenant",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_the_two_largest_units() {
        assert_eq!(human(0), "0s");
        assert_eq!(human(45), "45s");
        assert_eq!(human(3599), "59m");
        assert_eq!(human(3600), "1h");
        assert_eq!(human(86_399), "23h59m");
        assert_eq!(human(86_400 * 3 + 3600 * 4 + 7), "3d4h");
        assert_eq!(human(86_400 * 2 + 59), "2d");
    }

    #[test]
    fn a_missing_tenant_claim_lists_what_the_token_has() {
        let d = Decoded::new("eyJhbGciOiJIUzI1NiJ9.eyJvcmciOiJhY21lIiwic3ViIjoiYm9iIn0.sig");
        let l = ListenerSettings::default();
        assert_eq!(
            tenant_problem(&d, &l),
            "claim \"tenant_id\" missing (token has: org, sub)"
        );
    }
}
