//! What a tenant's handshake may do once its token is verified: refused
//! ([`Refusal`]), or admitted with the limits of its record ([`Admission`]).

use std::sync::Arc;

use wsplus_actors::ListenerPolicy;

/// The limits a tenant record puts in place of the listener's. `None` = the
/// listener's setting applies; `Some(0)` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admission {
    /// Sessions of the tenant, all listeners and nodes.
    pub max_connections: Option<usize>,
    /// Messages per second per connection.
    pub rate_limit_per_s: Option<u32>,
}

impl Admission {
    /// The listener's policy with the tenant's per-connection rate in place of
    /// the listener's (the same policy when the record does not set one).
    pub fn policy(&self, listener: &Arc<ListenerPolicy>) -> Arc<ListenerPolicy> {
        match self.rate_limit_per_s {
            Some(rate) if rate != listener.rate_limit_per_s => Arc::new(ListenerPolicy {
                rate_limit_per_s: rate,
                ..ListenerPolicy::clone(listener)
            }),
            Some(_) | None => listener.clone(),
        }
    }
}

/// Why a tenant may not connect (after its token was verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `policy = "registered"` and the tenant has no record.
    #[error("unknown tenant")]
    Unknown,
    /// The tenant's record says `enabled = false`.
    #[error("tenant disabled")]
    Disabled,
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsplus_actors::{Mode, Scope};

    #[test]
    fn the_record_rate_replaces_the_listener_rate() {
        let mut l = ListenerPolicy::for_tests(0, "/ws", Mode::Payload, Scope::Tenant);
        l.rate_limit_per_s = 10;
        let l = Arc::new(l);
        assert!(Arc::ptr_eq(&Admission::default().policy(&l), &l));
        let none = Admission {
            rate_limit_per_s: Some(0),
            ..Admission::default()
        };
        assert_eq!(none.policy(&l).rate_limit_per_s, 0);
        assert_eq!(l.rate_limit_per_s, 10, "the listener's policy is untouched");
    }
}
