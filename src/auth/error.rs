//! Why a handshake token was refused. Each variant is one `reason` of the 401
//! body and one label of the `rejected` counters (docs/protocol.md#handshake).

/// A refused token. Never carries the token or any part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum AuthError {
    /// No `token` query parameter.
    #[error("missing token")]
    MissingToken,
    /// Not a well-formed JWT (segments, base64, JSON, size).
    #[error("malformed token")]
    Malformed,
    /// `alg` not allowed for the listener's mode (or `none`).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// No key with the token's `kid` (or no keys at all).
    #[error("unknown signing key")]
    UnknownKey,
    /// Signature does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` missing or different from the configured issuer.
    #[error("invalid issuer")]
    InvalidIssuer,
    /// `aud` missing or not containing the configured audience.
    #[error("invalid audience")]
    InvalidAudience,
    /// Tenant claim missing, not a string, empty or too long.
    #[error("invalid tenant")]
    InvalidTenant,
}

impl AuthError {
    /// Every variant, in counter order.
    pub const ALL: [AuthError; 10] = [
        AuthError::MissingToken,
        AuthError::Malformed,
        AuthError::AlgorithmNotAllowed,
        AuthError::UnknownKey,
        AuthError::InvalidSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::InvalidIssuer,
        AuthError::InvalidAudience,
        AuthError::InvalidTenant,
    ];

    /// Position in [`AuthError::ALL`] (counter index).
    pub fn index(self) -> usize {
        match self {
            AuthError::MissingToken => 0,
            AuthError::Malformed => 1,
            AuthError::AlgorithmNotAllowed => 2,
            AuthError::UnknownKey => 3,
            AuthError::InvalidSignature => 4,
            AuthError::Expired => 5,
            AuthError::NotYetValid => 6,
            AuthError::InvalidIssuer => 7,
            AuthError::InvalidAudience => 8,
            AuthError::InvalidTenant => 9,
        }
    }

    /// The machine-readable reason (docs/protocol.md#handshake).
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::Malformed => "malformed",
            AuthError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::InvalidSignature => "invalid_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::InvalidIssuer => "invalid_issuer",
            AuthError::InvalidAudience => "invalid_audience",
            AuthError::InvalidTenant => "invalid_tenant",
        }
    }
}
