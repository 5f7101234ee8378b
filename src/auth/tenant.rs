//! `auth.mode = "tenant"`: each registered tenant brings its own identity
//! provider. The token's `iss` selects the tenant whose `issuer` it equals
//! (exact string compare), that tenant's JWKS verifies it (RS256/ES256, the
//! cache, refetch and fail-closed rules of [`super::jwks`]), and the session's
//! tenant is the record's id. A tenant claim that names another tenant is
//! `invalid_tenant`; an `iss` no tenant has is `invalid_issuer`.
//!
//! One key cache per tenant with an issuer, kept in step with the registry:
//! a task follows the registry's snapshots, starts a cache for a new (issuer,
//! JWKS URI) pair, keeps the running cache of an unchanged one and drops the
//! others (which stops their fetchers). Handshakes read the current set from a
//! watch channel.
//!
//! `iss` is read from the token before its signature is checked, only to pick
//! the keys; the claim is then verified like every other one, so a token that
//! names another tenant's issuer can only be verified by that tenant's keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::watch;

use super::jwks::Jwks;
use super::jwt::{self, ClaimRules};
use super::{AuthError, Identity, JWKS_ALGS};
use crate::settings::{AuthSettings, TenantFrom, TenantSettings};
use crate::tenants::registry::View;
use crate::tenants::TenantRegistry;

/// The keys and rules of one tenant.
struct Provider {
    tenant: String,
    jwks_uri: String,
    keys: Jwks,
    /// The listener's rules with `iss` = the tenant's issuer and the tenant
    /// fixed to its id.
    rules: ClaimRules,
}

/// Providers by issuer.
type Providers = HashMap<String, Arc<Provider>>;

/// The tenant-mode verifier of one listener.
pub struct TenantVerifier {
    providers: watch::Receiver<Arc<Providers>>,
    /// The claim that, when present, must name the tenant the issuer selects.
    tenant_claim: String,
}

impl TenantVerifier {
    /// Starts one key cache per tenant with an issuer and a task that keeps
    /// them in step with `registry`. Must run inside the actix `System`.
    pub fn start(
        listener: &str,
        auth: &AuthSettings,
        tenant: &TenantSettings,
        registry: &TenantRegistry,
    ) -> Self {
        let sync = Reconciler {
            listener: listener.to_owned(),
            auth: auth.clone(),
            refresh: Duration::from_secs(auth.jwks_refresh_s),
        };
        let mut views = registry.subscribe();
        let first = sync.reconcile(&Providers::new(), &views.borrow_and_update());
        let (tx, providers) = watch::channel(Arc::new(first));
        actix_rt::spawn(async move {
            while views.changed().await.is_ok() {
                let view = views.borrow_and_update().clone();
                let next = sync.reconcile(&tx.borrow(), &view);
                if tx.send(Arc::new(next)).is_err() {
                    return;
                }
            }
        });
        Self {
            providers,
            tenant_claim: tenant.claim.clone(),
        }
    }

    /// Verifies `token` with the keys of the tenant its `iss` selects.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let screened = jwt::screen_header(token, &JWKS_ALGS)?;
        let claims = unverified_claims(token)?;
        let iss = match claims.get("iss") {
            Some(Value::String(iss)) => iss,
            _ => return Err(AuthError::InvalidIssuer),
        };
        let provider = self
            .providers
            .borrow()
            .get(iss)
            .cloned()
            .ok_or(AuthError::InvalidIssuer)?;
        let identity =
            super::verify_with_jwks(token, &screened, &provider.keys, &provider.rules).await?;
        match claims.get(&self.tenant_claim) {
            None => Ok(identity),
            Some(Value::String(t)) if *t == provider.tenant => Ok(identity),
            Some(_) => Err(AuthError::InvalidTenant),
        }
    }
}

/// What the sync task needs to build providers.
struct Reconciler {
    listener: String,
    auth: AuthSettings,
    refresh: Duration,
}

impl Reconciler {
    /// The providers for `view`, reusing those of `current` whose tenant,
    /// issuer and JWKS URI are unchanged.
    fn reconcile(&self, current: &Providers, view: &View) -> Providers {
        let mut next = Providers::new();
        for record in view.records() {
            let spec = &record.spec;
            let (Some(issuer), Some(uri)) = (&spec.issuer, &spec.jwks_uri) else {
                continue;
            };
            let kept = current
                .get(issuer)
                .filter(|p| p.tenant == spec.id && p.jwks_uri == *uri)
                .cloned();
            let provider = kept.unwrap_or_else(|| {
                log::info!(
                    "tenant identity provider listener={} tenant={} issuer={issuer}",
                    self.listener,
                    spec.id
                );
                let auth = AuthSettings {
                    issuer: Some(issuer.clone()),
                    ..self.auth.clone()
                };
                let fixed = TenantSettings {
                    from: TenantFrom::Static,
                    claim: String::new(),
                    static_id: Some(spec.id.clone()),
                };
                Arc::new(Provider {
                    tenant: spec.id.clone(),
                    jwks_uri: uri.clone(),
                    keys: Jwks::start(
                        format!("{} tenant {}", self.listener, spec.id),
                        uri.clone(),
                        self.refresh,
                    ),
                    rules: ClaimRules::new(&JWKS_ALGS, &auth, &fixed),
                })
            });
            next.insert(issuer.clone(), provider);
        }
        next
    }
}

/// The token's claims, read without verification (only to choose the keys).
fn unverified_claims(token: &str) -> Result<Map<String, Value>, AuthError> {
    use base64::Engine;
    let payload = token.split('.').nth(1).ok_or(AuthError::Malformed)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&raw).map_err(|_| AuthError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_from_the_payload_segment() {
        use base64::Engine;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!("{}.{}.sig", enc("{}"), enc(r#"{"iss":"https://a/"}"#));
        assert_eq!(unverified_claims(&token).unwrap()["iss"], "https://a/");
        assert_eq!(unverified_claims("a.!!.c"), Err(AuthError::Malformed));
        let not_object = format!("x.{}.y", enc("[1]"));
        assert_eq!(unverified_claims(&not_object), Err(AuthError::Malformed));
    }
}
