//! Channel names: 1–200 bytes of `A-Z a-z 0-9 _ - . : @ / =`. Validated once,
//! when a command or an admin request names a channel; afterwards a
//! [`ChannelName`] is known good and cheap to clone (shared string), so the
//! channel tables key on it without copying.

use std::fmt;
use std::sync::Arc;

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 200;

/// A valid channel name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

/// Why a string is not a channel name (the `bad_request` message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    /// The empty string.
    #[error("channel must not be empty")]
    Empty,
    /// More than [`MAX_CHANNEL_BYTES`].
    #[error("channel must be at most 200 bytes")]
    TooLong,
    /// A byte outside the allowed set.
    #[error("channel may only contain A-Z a-z 0-9 _ - . : @ / =")]
    BadCharacter,
}

/// Whether `b` may appear in a channel name.
pub fn allowed_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-.:@/=".contains(&b)
}

impl ChannelName {
    /// Validates `s`.
    pub fn parse(s: &str) -> Result<Self, ChannelNameError> {
        if s.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if s.len() > MAX_CHANNEL_BYTES {
            return Err(ChannelNameError::TooLong);
        }
        if !s.bytes().all(allowed_byte) {
            return Err(ChannelNameError::BadCharacter);
        }
        Ok(Self(s.into()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelName({:?})", &*self.0)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet_up_to_200_bytes() {
        for ok in [
            "a",
            "news",
            "user:42/inbox",
            "A-Z_a.z@x=y",
            &"x".repeat(200),
        ] {
            assert_eq!(ChannelName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(ChannelName::parse(""), Err(ChannelNameError::Empty));
        assert_eq!(
            ChannelName::parse(&"x".repeat(201)),
            Err(ChannelNameError::TooLong)
        );
        for bad in ["a b", "a*", "é", "a\n", "a\0", "{sub}", "a,b", "#", "a?"] {
            assert_eq!(
                ChannelName::parse(bad),
                Err(ChannelNameError::BadCharacter),
                "{bad:?}"
            );
        }
    }
}
