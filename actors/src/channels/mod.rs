//! Channels mode: the `wsplus.v1` protocol (topics inside a tenant, token
//! refresh, server pushes).
//!
//! Plain types first, each with its tests: channel names ([`name`]), the
//! error catalogue ([`error`]), the codec ([`codec`]), permissions
//! ([`permissions`]) and the subscription table ([`table`]) that a
//! TenantRoom (tenant scope) or a listener's channel hub (global scope) owns,
//! so a channel key never leaves the space it belongs to.

pub mod codec;
pub mod counters;
pub mod error;
pub mod history;
pub mod hooks;
pub mod hub;
pub mod limits;
pub mod name;
pub mod permissions;
pub mod presence;
pub mod recovery;
pub mod refresh;
pub mod space;
pub mod table;

use std::time::Duration;

pub use codec::{Command, CommandId, Request, PROTOCOL};
pub use error::{ChannelError, ErrorCode};
pub use limits::{NoChannelLimits, TenantChannelLimits};
pub use name::ChannelName;
pub use permissions::{Access, AccessRules, Grants};
pub use table::{ChannelTable, Subscribed, SubscriptionOrigin, Unsubscribed};

/// The enforced `[listeners.channels]` settings of a channels-mode listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelsPolicy {
    /// Who may subscribe and publish.
    pub access: AccessRules,
    /// The token claim holding the patterns (claim mode).
    pub claim: String,
    /// Client subscriptions per session.
    pub max_per_session: usize,
    /// Publications kept per channel (history; 0 = off).
    pub history_size: usize,
    /// How long a publication stays in history (0 = off).
    pub history_ttl: Duration,
    /// Track who is subscribed.
    pub presence: bool,
    /// Push join/leave to subscribers.
    pub join_leave: bool,
    /// Push `expiring` this long before the token's `exp`.
    pub refresh_notice: Duration,
}

impl ChannelsPolicy {
    /// The documented defaults (`any`/`any`, 128 subscriptions, 30 s notice).
    pub fn defaults() -> Self {
        Self {
            access: AccessRules {
                subscribe: Access::Any,
                publish: Access::Any,
            },
            claim: "channels".into(),
            max_per_session: 128,
            history_size: 0,
            history_ttl: Duration::ZERO,
            presence: false,
            join_leave: false,
            refresh_notice: Duration::from_secs(30),
        }
    }

    /// History is on when both its size and its lifetime are set.
    pub fn history(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }
}
