//! The tenant limit a channel space enforces itself: `max_channels`, how many
//! channels with subscribers one tenant may have in one space (a listener's
//! channels of that tenant).
//!
//! The limit lives in the tenant registry (the server crate), which the admin
//! API changes at run time. Rather than copying it into every hub and pushing
//! each change to them, a space asks [`TenantChannelLimits`] at the one moment
//! the limit matters — a subscribe that would bring a channel into existence
//! — so a change applies to the next subscribe, on every hub, with no message
//! and no restart. The lookup reads an in-memory snapshot (no I/O, no lock
//! held across an await) and only happens when a channel is created, never on
//! the publish path.
//!
//! The count is this node's: in a cluster each node bounds the channels its
//! own sessions opened (see docs/decisions.md).

use std::fmt;

use crate::ids::TenantId;

/// Where a channel space reads its tenant's `max_channels`.
pub trait TenantChannelLimits: Send + Sync + fmt::Debug {
    /// The most channels with subscribers `tenant` may have in one space;
    /// `None` = no limit.
    fn max_channels(&self, tenant: &TenantId) -> Option<usize>;
}

/// No tenant has a channel limit (tests, and servers without a registry).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoChannelLimits;

impl TenantChannelLimits for NoChannelLimits {
    fn max_channels(&self, _tenant: &TenantId) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;
    use crate::channels::codec::CommandId;
    use crate::channels::space::{ChannelOp, ChannelSpace};
    use crate::channels::ChannelName;
    use crate::counters::Counters;
    use crate::delivery::Delivery;
    use crate::ids::{ListenerId, SessionId};
    use crate::outbox::{outbox, Outbox, OutboxReceiver};

    /// A limit the test changes while the space runs (0 = none).
    #[derive(Debug, Default)]
    struct Fixed(AtomicUsize);

    impl TenantChannelLimits for Fixed {
        fn max_channels(&self, tenant: &TenantId) -> Option<usize> {
            assert_eq!(tenant.as_str(), "t", "asked about the space's own tenant");
            Some(self.0.load(Ordering::Relaxed)).filter(|n| *n > 0)
        }
    }

    struct Client {
        id: SessionId,
        outbox: Outbox,
        rx: OutboxReceiver,
        n: u64,
    }

    impl Client {
        fn new() -> Self {
            let (outbox, rx) = outbox(64, 1 << 20);
            Self {
                id: SessionId::random(),
                outbox,
                rx,
                n: 0,
            }
        }

        /// Subscribes to `channel`; the error code, or `None` when subscribed.
        fn subscribe(&mut self, space: &mut ChannelSpace, channel: &str) -> Option<String> {
            self.n += 1;
            space.apply(ChannelOp::Subscribe {
                session: self.id.clone(),
                outbox: self.outbox.clone(),
                channel: ChannelName::parse(channel).unwrap(),
                reply: CommandId::new(self.n).unwrap(),
                since: None,
                max: 100,
                subject: None,
            });
            let Some(Delivery::Text(t)) = self.rx.data.try_recv() else {
                panic!("no reply");
            };
            let v: Value = serde_json::from_str(&t).unwrap();
            v["error"]["code"].as_str().map(str::to_owned)
        }
    }

    fn space(limit: &Arc<Fixed>, tenant: Option<&str>) -> ChannelSpace {
        ChannelSpace::new(
            ListenerId(0),
            tenant.map(TenantId::new),
            Arc::new(Counters::new(1)),
        )
        .with_limits(limit.clone())
    }

    #[test]
    fn a_new_channel_beyond_the_limit_is_refused_and_existing_ones_stay_joinable() {
        let limit = Arc::new(Fixed(AtomicUsize::new(2)));
        let mut s = space(&limit, Some("t"));
        let (mut a, mut b) = (Client::new(), Client::new());
        assert_eq!(a.subscribe(&mut s, "x"), None);
        assert_eq!(a.subscribe(&mut s, "y"), None);
        assert_eq!(a.subscribe(&mut s, "z").as_deref(), Some("limit_exceeded"));
        assert_eq!(b.subscribe(&mut s, "z").as_deref(), Some("limit_exceeded"));
        assert_eq!(b.subscribe(&mut s, "x"), None, "an existing channel");
        assert_eq!(a.subscribe(&mut s, "x"), None, "subscribed again");
        assert_eq!(s.table().channel_count(), 2);
        // A server-side subscription is held to the same bound.
        let z = ChannelName::parse("z").unwrap();
        assert!(!s.server_subscribe(&b.id, &b.outbox, &z, None));
        assert!(
            b.rx.data.try_recv().is_none(),
            "nothing pushed when refused"
        );
        // A channel with no subscriber left frees its slot.
        s.leave(&a.id);
        assert_eq!(s.table().channel_count(), 1);
        assert_eq!(b.subscribe(&mut s, "z"), None);
        // The limit is read at each new channel: lowering it refuses the
        // next one and closes nothing; 0 (none) lets everything in.
        limit.0.store(1, Ordering::Relaxed);
        assert_eq!(a.subscribe(&mut s, "w").as_deref(), Some("limit_exceeded"));
        assert_eq!(a.subscribe(&mut s, "x"), None);
        assert_eq!(s.table().channel_count(), 2);
        limit.0.store(0, Ordering::Relaxed);
        assert_eq!(a.subscribe(&mut s, "w"), None);
        assert!(s.server_subscribe(&a.id, &a.outbox, &ChannelName::parse("v").unwrap(), None));
    }

    #[test]
    fn a_global_space_has_no_tenant_limit() {
        let limit = Arc::new(Fixed(AtomicUsize::new(1)));
        let mut s = space(&limit, None);
        let mut a = Client::new();
        assert_eq!(a.subscribe(&mut s, "x"), None);
        assert_eq!(a.subscribe(&mut s, "y"), None);
    }
}
