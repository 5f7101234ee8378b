//! Bearer-token authentication of the admin API: the token (configured or
//! generated), its constant-time check, and the middleware that guards every
//! route but the health checks — unknown paths included, so nothing about the
//! API can be learnt without the token.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use rand::distr::{Alphanumeric, SampleString};

use super::error::ApiError;
use crate::env::Env;
use crate::settings::Settings;

/// Paths served without a token (liveness and readiness probes; the console's
/// page and assets are listed in [`super::console::PUBLIC_PATHS`]).
pub const PUBLIC_PATHS: [&str; 2] = ["/healthz", "/readyz"];

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

    /// Constant-time check of an `Authorization` header value
    /// (`Bearer <token>`, the scheme case-insensitive, one or more spaces
    /// after it as RFC 9110 allows).
    pub fn authorized(&self, header: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        let Some((scheme, presented)) = header.and_then(|h| h.split_once(' ')) else {
            return false;
        };
        let presented = presented.trim_start_matches(' ');
        scheme.eq_ignore_ascii_case("bearer")
            && bool::from(presented.as_bytes().ct_eq(self.token.as_bytes()))
    }
}

/// Middleware (`middleware::from_fn`): lets [`PUBLIC_PATHS`] through and
/// answers everything else without the right bearer token with a JSON 401.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let allowed = PUBLIC_PATHS.contains(&req.path())
        || super::console::PUBLIC_PATHS.contains(&req.path())
        || {
            let header = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            req.app_data::<web::Data<AdminConfig>>()
                .is_some_and(|cfg| cfg.authorized(header))
        };
    if allowed {
        next.call(req)
            .await
            .map(ServiceResponse::map_into_left_body)
    } else {
        Ok(req
            .into_response(ApiError::Unauthorized.error_response())
            .map_into_right_body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AdminConfig {
        AdminConfig {
            token: "s3cret".into(),
        }
    }

    #[test]
    fn only_the_bearer_token_is_accepted() {
        let c = config();
        assert!(c.authorized(Some("Bearer s3cret")));
        assert!(c.authorized(Some("bearer s3cret")));
        assert!(c.authorized(Some("Bearer   s3cret")));
        assert!(!c.authorized(Some("Bearer s3cret x")));
        assert!(!c.authorized(Some("Bearer s3cre")));
        assert!(!c.authorized(Some("Basic s3cret")));
        assert!(!c.authorized(Some("s3cret")));
        assert!(!c.authorized(None));
    }
}
