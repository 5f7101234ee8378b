//! The catalogue of close codes the broker sends. The table with meanings lives
//! in `docs/protocol.md`.

use serde::Serialize;

/// A close code sent by the broker, with its documented meaning.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
pub enum CloseCode {
    /// 1000: normal close.
    Normal,
    /// 1001: server shutting down.
    GoingAway,
    /// 1002: the peer broke the WebSocket protocol (bad opcode, unmasked frame...).
    ProtocolError,
    /// 1007: a text frame that is not valid UTF-8.
    InvalidPayload,
    /// 1008: policy violation.
    Policy,
    /// 1009: frame larger than `max_message_bytes`.
    TooBig,
    /// 4001: token expired.
    TokenExpired,
    /// 4002: session timeout reached.
    SessionTimeout,
    /// 4003: disconnected by an administrator.
    Kicked,
    /// 4008: rate limit exceeded.
    RateLimited,
    /// 4009: slow consumer, outbound queue full.
    SlowConsumer,
}

impl CloseCode {
    /// Every code, in table order (used to size counters).
    pub const ALL: [CloseCode; 11] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::InvalidPayload,
        CloseCode::Policy,
        CloseCode::TooBig,
        CloseCode::TokenExpired,
        CloseCode::SessionTimeout,
        CloseCode::Kicked,
        CloseCode::RateLimited,
        CloseCode::SlowConsumer,
    ];

    /// The numeric code on the wire.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidPayload => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::TokenExpired => 4001,
            CloseCode::SessionTimeout => 4002,
            CloseCode::Kicked => 4003,
            CloseCode::RateLimited => 4008,
            CloseCode::SlowConsumer => 4009,
        }
    }

    /// The short reason text sent in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal close",
            CloseCode::GoingAway => "server shutting down",
            CloseCode::ProtocolError => "protocol error",
            CloseCode::InvalidPayload => "invalid utf-8 in text frame",
            CloseCode::Policy => "policy violation",
            CloseCode::TooBig => "message too big",
            CloseCode::TokenExpired => "token expired",
            CloseCode::SessionTimeout => "session timeout",
            CloseCode::Kicked => "disconnected by administrator",
            CloseCode::RateLimited => "rate limit exceeded",
            CloseCode::SlowConsumer => "slow consumer",
        }
    }

    /// Position in [`CloseCode::ALL`] (counter index).
    pub fn index(self) -> usize {
        match self {
            CloseCode::Normal => 0,
            CloseCode::GoingAway => 1,
            CloseCode::ProtocolError => 2,
            CloseCode::InvalidPayload => 3,
            CloseCode::Policy => 4,
            CloseCode::TooBig => 5,
            CloseCode::TokenExpired => 6,
            CloseCode::SessionTimeout => 7,
            CloseCode::Kicked => 8,
            CloseCode::RateLimited => 9,
            CloseCode::SlowConsumer => 10,
        }
    }

    /// Whether a well-behaved client should reconnect after this close.
    pub fn should_reconnect(self) -> bool {
        match self {
            CloseCode::GoingAway
            | CloseCode::TokenExpired
            | CloseCode::SessionTimeout
            | CloseCode::RateLimited
            | CloseCode::SlowConsumer => true,
            CloseCode::Normal
            | CloseCode::ProtocolError
            | CloseCode::InvalidPayload
            | CloseCode::Policy
            | CloseCode::TooBig
            | CloseCode::Kicked => false,
        }
    }
}

/// A numeric close code that is not in the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown close code {0}")]
pub struct UnknownCloseCode(pub u16);

impl TryFrom<u16> for CloseCode {
    type Error = UnknownCloseCode;

    fn try_from(code: u16) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .ok_or(UnknownCloseCode(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips() {
        for (i, c) in CloseCode::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }

    #[test]
    fn numeric_codes_round_trip_and_unknown_ones_are_refused() {
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::try_from(c.code()), Ok(c));
        }
        for n in [0, 999, 1003, 1011, 4000, 4004, 4010, u16::MAX] {
            assert_eq!(CloseCode::try_from(n), Err(UnknownCloseCode(n)));
        }
    }
}
