//! Demo mode (`[server] demo = true`, development only): the demo page at
//! `/demo` (web/demo.html) and its token route `GET /demo/token`, which mints
//! a short-lived HS256 token for ANY tenant to ANYONE who asks — for the
//! message-mode panes, or with `mode=channels` for the page's channels view.
//! Without demo mode neither route is registered, so both answer 404.

use actix_web::http::header::CACHE_CONTROL;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::state::AppState;
use crate::auth::mint::Claims;
use crate::settings::{AuthMode, ListenerSettings, Mode, Settings};

/// The demo page (web/demo.html).
pub const DEMO_HTML: &str = include_str!("../../web/demo.html");

/// Longest lifetime `/demo/token` grants, seconds.
pub const MAX_TTL_S: u64 = 3600;
/// Lifetime when the request names none, seconds.
pub const DEFAULT_TTL_S: u64 = 300;
/// Longest tenant or subject `/demo/token` accepts, characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Demo mode as the routes see it: which listener the tokens are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demo {
    /// Index of the listener whose secret signs demo tokens: the first
    /// message-mode hs256 listener, else the first hs256 listener.
    listener: Option<usize>,
    /// Index of the first hs256 channels-mode listener (`mode=channels`).
    channels: Option<usize>,
    /// The client port speaks TLS: token URLs say `wss://`.
    secure: bool,
}

impl Demo {
    /// Demo mode from settings: None when `server.demo` is false. Logs a loud
    /// warning when it is on, since the token route is open to anyone.
    pub fn from_settings(settings: &Settings) -> Option<Demo> {
        if !settings.server.demo {
            return None;
        }
        let demo = Demo {
            listener: token_listener(&settings.listeners),
            channels: settings
                .listeners
                .iter()
                .position(|l| l.auth.mode == AuthMode::Hs256 && l.mode == Mode::Channels),
            secure: settings.server.tls_cert.is_some(),
        };
        match demo.listener.map(|i| &settings.listeners[i]) {
            Some(l) => log::warn!(
                "DEMO MODE ([server] demo = true): serving /demo and /demo/token, which hands out \
                 tokens for ANY tenant to ANYONE who can reach this port (listener {}). \
                 Development only: never enable demo mode in production.",
                l.path
            ),
            None => log::warn!(
                "DEMO MODE ([server] demo = true): serving /demo, but no listener uses hs256, so \
                 /demo/token cannot mint tokens and answers 503. Development only."
            ),
        }
        Some(demo)
    }
}

/// The listener demo tokens are minted for: the first hs256 listener in
/// message mode (the page shows `_session` stamps), else the first hs256 one.
fn token_listener(listeners: &[ListenerSettings]) -> Option<usize> {
    let hs256 = |l: &ListenerSettings| l.auth.mode == AuthMode::Hs256;
    listeners
        .iter()
        .position(|l| hs256(l) && l.mode == Mode::Message)
        .or_else(|| listeners.iter().position(hs256))
}

/// Registers `/demo` and `/demo/token` when demo mode is on; nothing otherwise.
pub fn configure(cfg: &mut web::ServiceConfig, demo: Option<Demo>) {
    let Some(demo) = demo else { return };
    cfg.app_data(web::Data::new(demo))
        .route("/demo", web::get().to(page))
        .route("/demo/token", web::get().to(token));
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(DEMO_HTML)
}

/// Why `/demo/token` refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// `tenant` missing or not a short plain name.
    #[error("tenant: required, 1-64 characters of A-Z a-z 0-9 . _ - @")]
    Tenant,
    /// `sub` present but not a short plain name.
    #[error("sub: 1-64 characters of A-Z a-z 0-9 . _ - @ (or leave it out)")]
    Subject,
    /// `ttl` not an integer in range.
    #[error("ttl: must be an integer from 1 to 3600 (seconds)")]
    Ttl,
    /// `mode` neither `message` nor `channels`.
    #[error("mode: message (the default) or channels")]
    Mode,
    /// A parameter given twice.
    #[error("each of tenant, sub, ttl and mode may be given at most once")]
    Duplicate,
    /// No hs256 listener to mint for.
    #[error("demo mode needs a listener with auth.mode = \"hs256\"; none is configured")]
    NoListener,
    /// `mode=channels` without an hs256 channels-mode listener.
    #[error(
        "mode=channels needs a listener with mode = \"channels\" and auth.mode = \"hs256\"; \
         none is configured"
    )]
    NoChannelsListener,
    /// Signing failed (unusable secret).
    #[error("could not sign a token")]
    Sign,
}

impl TokenError {
    /// The HTTP status answered.
    pub fn status(self) -> StatusCode {
        match self {
            TokenError::Tenant
            | TokenError::Subject
            | TokenError::Ttl
            | TokenError::Mode
            | TokenError::Duplicate => StatusCode::BAD_REQUEST,
            TokenError::NoListener | TokenError::NoChannelsListener => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            TokenError::Sign => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn response(self) -> HttpResponse {
        HttpResponse::build(self.status())
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(json!({ "error": self.to_string() }))
    }
}

/// The validated query of `/demo/token`.
#[derive(Debug, PartialEq, Eq)]
struct TokenRequest {
    tenant: String,
    sub: Option<String>,
    ttl_s: u64,
    /// `mode=channels`: a token for the channels view's listener.
    channels: bool,
}

impl TokenRequest {
    /// Parses `tenant=T&sub=S&ttl=N&mode=M`; other parameters are ignored.
    fn parse(query: &str) -> Result<Self, TokenError> {
        let (mut tenant, mut sub, mut ttl, mut mode) = (None, None, None, None);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "tenant" => &mut tenant,
                "sub" => &mut sub,
                "ttl" => &mut ttl,
                "mode" => &mut mode,
                _ => continue,
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(TokenError::Duplicate);
            }
        }
        let tenant = tenant.filter(|t| plain_name(t)).ok_or(TokenError::Tenant)?;
        if sub.as_deref().is_some_and(|s| !plain_name(s)) {
            return Err(TokenError::Subject);
        }
        let ttl_s = match ttl {
            None => DEFAULT_TTL_S,
            Some(t) => t
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_TTL_S).contains(n))
                .ok_or(TokenError::Ttl)?,
        };
        let channels = match mode.as_deref() {
            None | Some("message") => false,
            Some("channels") => true,
            Some(_) => return Err(TokenError::Mode),
        };
        Ok(Self {
            tenant,
            sub,
            ttl_s,
            channels,
        })
    }
}

/// 1 to [`MAX_NAME_CHARS`] characters of `A-Z a-z 0-9 . _ - @`.
fn plain_name(s: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

async fn token(
    req: HttpRequest,
    state: web::Data<AppState>,
    demo: web::Data<Demo>,
) -> HttpResponse {
    match mint(&req, &state, &demo) {
        Ok(body) => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(body),
        Err(e) => e.response(),
    }
}

fn mint(req: &HttpRequest, state: &AppState, demo: &Demo) -> Result<serde_json::Value, TokenError> {
    let asked = TokenRequest::parse(req.query_string())?;
    let listener = match asked.channels {
        false => demo.listener.ok_or(TokenError::NoListener),
        true => demo.channels.ok_or(TokenError::NoChannelsListener),
    }
    .and_then(|i| state.listeners.get(i).ok_or(TokenError::NoListener))?;
    let l = &listener.settings;
    let claims = Claims::for_listener(l, &asked.tenant, asked.sub.as_deref(), asked.ttl_s);
    let token = listener.auth.mint(&claims).ok_or(TokenError::Sign)?;
    log::info!(
        "demo token issued listener={} tenant={} subject={} ttl_s={}",
        l.path,
        asked.tenant,
        asked.sub.as_deref().unwrap_or("-"),
        asked.ttl_s
    );
    let conn = req.connection_info();
    let scheme = if demo.secure || conn.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    Ok(json!({
        "token": token,
        "url": format!("{scheme}://{}{}", conn.host(), l.path),
        "listener": l.path,
        "mode": l.mode,
        "tenant": asked.tenant,
        "sub": asked.sub,
        "expires_in": asked.ttl_s,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs256(path: &str, mode: Mode) -> ListenerSettings {
        ListenerSettings {
            path: path.into(),
            mode,
            ..Default::default()
        }
    }

    #[test]
    fn parses_and_bounds_the_query() {
        let ok = TokenRequest::parse("tenant=acme&sub=alice&ttl=3600&x=1").unwrap();
        assert_eq!(
            ok,
            TokenRequest {
                tenant: "acme".into(),
                sub: Some("alice".into()),
                ttl_s: 3600,
                channels: false,
            }
        );
        let defaults = TokenRequest::parse("tenant=a.b_c-d%40e").unwrap();
        assert_eq!(defaults.tenant, "a.b_c-d@e");
        assert_eq!(
            (defaults.sub, defaults.ttl_s, defaults.channels),
            (None, DEFAULT_TTL_S, false)
        );
        assert!(
            TokenRequest::parse("tenant=a&mode=channels")
                .unwrap()
                .channels
        );
        assert!(
            !TokenRequest::parse("tenant=a&mode=message")
                .unwrap()
                .channels
        );
        let long = "x".repeat(MAX_NAME_CHARS);
        assert!(TokenRequest::parse(&format!("tenant={long}")).is_ok());

        for (q, want) in [
            ("", TokenError::Tenant),
            ("tenant=", TokenError::Tenant),
            ("tenant=a%20b", TokenError::Tenant),
            ("tenant=%C3%A9", TokenError::Tenant),
            (&format!("tenant={long}x"), TokenError::Tenant),
            ("tenant=a&sub=", TokenError::Subject),
            ("tenant=a&sub=%22x%22", TokenError::Subject),
            ("tenant=a&ttl=0", TokenError::Ttl),
            ("tenant=a&ttl=3601", TokenError::Ttl),
            ("tenant=a&ttl=-1", TokenError::Ttl),
            ("tenant=a&ttl=1.5", TokenError::Ttl),
            ("tenant=a&ttl=99999999999999999999999", TokenError::Ttl),
            ("tenant=a&tenant=b", TokenError::Duplicate),
            ("tenant=a&mode=payload", TokenError::Mode),
            ("tenant=a&mode=", TokenError::Mode),
            (
                "tenant=a&mode=channels&mode=channels",
                TokenError::Duplicate,
            ),
        ] {
            assert_eq!(TokenRequest::parse(q), Err(want), "query {q:?}");
        }
    }

    #[test]
    fn picks_the_first_message_mode_hs256_listener() {
        let mut none = hs256("/open", Mode::Message);
        none.auth.mode = AuthMode::None;
        let ls = [
            none.clone(),
            hs256("/p", Mode::Payload),
            hs256("/m", Mode::Message),
        ];
        assert_eq!(token_listener(&ls), Some(2));
        assert_eq!(token_listener(&ls[..2]), Some(1));
        assert_eq!(token_listener(&[none]), None);
    }
}
