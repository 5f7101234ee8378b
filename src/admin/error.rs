//! The admin API's one error type and its mapping to HTTP statuses and
//! `{"error": "..."}` bodies (docs/admin-api.yaml), used by every handler, by
//! the auth middleware, by actix's JSON/path/query extractors and for unknown
//! paths and methods, so no admin response is ever a non-JSON error.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

/// Everything an admin request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer <token>` header, or the wrong token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The request is well-formed HTTP but its content is not acceptable.
    #[error("{0}")]
    BadRequest(String),
    /// The path names nothing (unknown route, listener, session...).
    #[error("{0}")]
    NotFound(String),
    /// The path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is larger than `admin.max_body_bytes`.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The broker did not answer (shutting down or overloaded).
    #[error("broker unavailable")]
    Unavailable,
    /// The request conflicts with the current state (e.g. an issuer another
    /// tenant has).
    #[error("{0}")]
    Conflict(String),
    /// A change could not be persisted; nothing changed (details in the log).
    #[error("tenant store unavailable; nothing was changed")]
    StoreUnavailable,
}

impl ApiError {
    /// A 404 for "no such `what`" (`listener`, `session`...).
    pub fn unknown(what: &str, id: &str) -> Self {
        ApiError::NotFound(format!("unknown {what} {id:?}"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable | ApiError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.json(json!({ "error": self.to_string() }))
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(_: actix::MailboxError) -> Self {
        ApiError::Unavailable
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(e: JsonPayloadError) -> Self {
        match e {
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge { limit },
            // Unreachable with [`json_config`], which accepts any content type.
            JsonPayloadError::ContentType => {
                ApiError::BadRequest("unsupported content type".into())
            }
            JsonPayloadError::Deserialize(e) => {
                ApiError::BadRequest(format!("invalid JSON body: {e}"))
            }
            JsonPayloadError::Serialize(_) | JsonPayloadError::Payload(_) => {
                ApiError::BadRequest("unreadable request body".into())
            }
            // JsonPayloadError is non-exhaustive.
            _ => ApiError::BadRequest("invalid request body".into()),
        }
    }
}

/// The JSON body extractor's settings: `limit` bytes at most, every failure
/// answered by [`ApiError`]. The body is read as JSON whatever its declared
/// `Content-Type` (docs/admin-api.yaml, docs/decisions.md), so `curl -d` and
/// clients that send no or a form content type work; a body that is not JSON is
/// a 400. Refusing other types would protect nothing: a cross-site form cannot
/// carry the bearer token.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(false)
        .content_type(|_| true)
        .error_handler(|e, _| ApiError::from(e).into())
}

/// The path extractor's settings: failures answered by [`ApiError`].
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|e: PathError, _| ApiError::BadRequest(format!("invalid path: {e}")).into())
}

/// The query extractor's settings: failures answered by [`ApiError`].
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e: QueryPayloadError, _| {
        ApiError::BadRequest(format!("invalid query: {e}")).into()
    })
}

/// A resource at `path` whose wrong methods get a JSON 405 (actix's default
/// is an empty body).
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// The admin server's default service: a JSON 404 for unknown paths.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route {}", req.path())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: JsonPayloadError) -> StatusCode {
        ApiError::from(e).status_code()
    }

    #[test]
    fn json_extractor_errors_map_to_their_statuses() {
        let limit = 10;
        assert_eq!(
            status(JsonPayloadError::OverflowKnownLength { length: 11, limit }),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(JsonPayloadError::Overflow { limit }),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(JsonPayloadError::ContentType),
            StatusCode::BAD_REQUEST
        );
        let bad = serde_json::from_str::<u8>("x").unwrap_err();
        assert_eq!(
            status(JsonPayloadError::Deserialize(bad)),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn unauthorized_asks_for_a_bearer_token() {
        let res = ApiError::Unauthorized.error_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
    }
}
