//! The admin API on its own port (DESIGN §9): health, readiness, and (behind a
//! bearer token) stats, listings, kicks, publish and Prometheus metrics.

use actix_web::{web, HttpResponse};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;

use crate::env::Env;
use crate::server::state::AppState;
use crate::settings::Settings;

/// Admin settings resolved at start.
pub struct AdminConfig {
    /// The bearer token (from `admin.token_env`, or generated for this run).
    token: String,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &"[redacted]")
            .finish()
    }
}

impl AdminConfig {
    /// Reads the token from the environment variable named by `admin.token_env`;
    /// when unset or empty, generates one and returns it for printing once.
    pub fn from_settings(settings: &Settings, env: &Env) -> (Self, Option<String>) {
        match env.var(&settings.admin.token_env) {
            Some(t) if !t.is_empty() => (Self { token: t }, None),
            _ => {
                let t = Alphanumeric.sample_string(&mut rand::rng(), 40);
                (Self { token: t.clone() }, Some(t))
            }
        }
    }

    /// Constant-time check of an `Authorization` header value.
    pub fn authorized(&self, header: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        presented.as_bytes().ct_eq(self.token.as_bytes()).into()
    }
}

/// Registers the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let not_ready: Vec<&str> = state
        .listeners
        .iter()
        .filter(|l| !l.auth.ready())
        .map(|l| l.settings.path.as_str())
        .collect();
    if let Some(degraded) = state.cluster.unready() {
        return HttpResponse::ServiceUnavailable().json(degraded);
    }
    if not_ready.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"status": "not_ready", "waiting_for_keys": not_ready}))
    }
}
