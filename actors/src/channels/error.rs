//! The catalogue of `wsplus.v1` error codes, the channel-protocol counterpart
//! of [`crate::close::CloseCode`]: one exhaustive `code()` with no catch-all
//! arm, the same table in `docs/protocol.md`.

use std::borrow::Cow;

/// An error code of a reply `{"id": n, "error": {"code": ...}}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ErrorCode {
    /// The line is not a JSON object with a valid `id`, a field is missing or
    /// of the wrong type, a channel name is invalid, or the frame is binary.
    BadRequest,
    /// `op` names no operation.
    UnknownOp,
    /// The session may not subscribe or publish there.
    Forbidden,
    /// `max_per_session` subscriptions reached, or the subscribe would open
    /// a channel beyond the tenant's `max_channels`.
    LimitExceeded,
    /// The operation is not enabled on this listener (presence, history, rpc).
    NotAvailable,
    /// The command exceeded the rate limit (`on_rate_limit = "drop"`).
    RateLimited,
    /// `refresh`: the new token was refused (`reason` says why).
    InvalidToken,
    /// A hook or Redis could not answer.
    Unavailable,
}

impl ErrorCode {
    /// Every code, in table order.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::Forbidden,
        ErrorCode::LimitExceeded,
        ErrorCode::NotAvailable,
        ErrorCode::RateLimited,
        ErrorCode::InvalidToken,
        ErrorCode::Unavailable,
    ];

    /// The wire name.
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::NotAvailable => "not_available",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The default human-readable message.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad request",
            ErrorCode::UnknownOp => "unknown op",
            ErrorCode::Forbidden => "permission denied",
            ErrorCode::LimitExceeded => "too many subscriptions",
            ErrorCode::NotAvailable => "not enabled on this listener",
            ErrorCode::RateLimited => "rate limit exceeded",
            ErrorCode::InvalidToken => "token refused",
            ErrorCode::Unavailable => "temporarily unavailable",
        }
    }
}

/// The error object of a reply: a code, a message, and for `invalid_token`
/// the reason (one of the handshake's 401 reasons or `identity_changed`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChannelError {
    /// The catalogue code.
    pub code: ErrorCode,
    /// What went wrong, for people; never contains a token.
    pub message: Cow<'static, str>,
    /// `invalid_token` only.
    pub reason: Option<&'static str>,
}

impl ChannelError {
    /// An error with the code's default message.
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: Cow::Borrowed(code.message()),
            reason: None,
        }
    }

    /// `bad_request` with a specific message.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code: ErrorCode::BadRequest,
            message: message.into(),
            reason: None,
        }
    }

    /// `invalid_token` with its reason.
    pub fn invalid_token(reason: &'static str) -> Self {
        Self {
            code: ErrorCode::InvalidToken,
            message: Cow::Borrowed(ErrorCode::InvalidToken.message()),
            reason: Some(reason),
        }
    }
}

impl From<ErrorCode> for ChannelError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_snake_case() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        assert!(names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }
}
