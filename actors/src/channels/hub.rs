//! ChannelHub: the actor that owns one [`ChannelSpace`] — the channels of one
//! tenant of a channels-mode listener (tenant scope), or of the whole
//! listener (global scope).
//!
//! The Broker starts a tenant's hub together with the tenant's room, on the
//! room's arbiter, and stops it with the room; a session receives the address
//! of its own tenant's hub in its join answer and nothing else, so a channel
//! named by a session can only ever be looked up in its own tenant's space.
//! A global-scope listener has one hub for all its tenants, started with the
//! Broker.

use actix::prelude::*;

use super::name::ChannelName;
use super::space::{
    ChannelOp, ChannelSpace, CountSubscribers, ListChannels, PublishLocal, ServerSubscribe,
    ServerUnsubscribe,
};

/// Stops a hub (its room closed).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StopHub;

/// The actor owning one channel space.
#[derive(Debug)]
pub struct ChannelHub {
    space: ChannelSpace,
    mailbox_capacity: usize,
}

impl ChannelHub {
    /// A hub for `space`; its mailbox holds `mailbox_capacity` messages before
    /// publishers wait.
    pub fn new(space: ChannelSpace, mailbox_capacity: usize) -> Self {
        Self {
            space,
            mailbox_capacity,
        }
    }
}

impl Actor for ChannelHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Give the gauges back: every subscription here ends with the hub.
        let sessions: Vec<_> = self.space.table().sessions().cloned().collect();
        for s in sessions {
            self.space.leave(&s);
        }
    }
}

impl Handler<ChannelOp> for ChannelHub {
    type Result = ();

    fn handle(&mut self, msg: ChannelOp, _ctx: &mut Self::Context) {
        self.space.apply(msg);
    }
}

impl Handler<PublishLocal> for ChannelHub {
    type Result = usize;

    fn handle(&mut self, msg: PublishLocal, _ctx: &mut Self::Context) -> usize {
        self.space.publish(&msg.channel, &msg.delivery)
    }
}

impl Handler<ServerSubscribe> for ChannelHub {
    type Result = ();

    fn handle(&mut self, msg: ServerSubscribe, _ctx: &mut Self::Context) {
        self.space
            .server_subscribe(&msg.session, &msg.outbox, &msg.channel);
    }
}

impl Handler<ServerUnsubscribe> for ChannelHub {
    type Result = bool;

    fn handle(&mut self, msg: ServerUnsubscribe, _ctx: &mut Self::Context) -> bool {
        self.space.end(&msg.session, &msg.channel, msg.reason)
    }
}

impl Handler<ListChannels> for ChannelHub {
    type Result = MessageResult<ListChannels>;

    fn handle(&mut self, _msg: ListChannels, _ctx: &mut Self::Context) -> Self::Result {
        let list: Vec<(ChannelName, usize)> = self
            .space
            .table()
            .channels()
            .map(|(c, n)| (c.clone(), n))
            .collect();
        MessageResult(list)
    }
}

impl Handler<CountSubscribers> for ChannelHub {
    type Result = usize;

    fn handle(&mut self, msg: CountSubscribers, _ctx: &mut Self::Context) -> usize {
        self.space.table().subscriber_count(&msg.channel)
    }
}

impl Handler<StopHub> for ChannelHub {
    type Result = ();

    fn handle(&mut self, _msg: StopHub, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::channels::codec::{push_pub, CommandId, UnsubscribeReason};
    use crate::channels::permissions::{Access, AccessRules, Grants};
    use crate::counters::Counters;
    use crate::delivery::Delivery;
    use crate::ids::{ListenerId, SessionId, TenantId};
    use crate::outbox::{outbox, OutboxReceiver};
    use serde_json::{json, Value};

    fn hub(counters: &Arc<Counters>) -> Addr<ChannelHub> {
        let space = ChannelSpace::new(ListenerId(0), Some(TenantId::new("t")), counters.clone());
        ChannelHub::new(space, 64).start()
    }

    fn ch(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    fn next(rx: &mut OutboxReceiver) -> Option<Value> {
        rx.data.try_recv().map(|d| match d {
            Delivery::Text(s) => serde_json::from_str(&s).unwrap(),
            Delivery::Binary(_) => panic!("binary"),
        })
    }

    fn id(n: u64) -> CommandId {
        CommandId::new(n).unwrap()
    }

    #[actix::test]
    async fn subscribe_publish_unsubscribe() {
        let counters = Arc::new(Counters::new(1));
        let h = hub(&counters);
        let s = SessionId::random();
        let (o, mut rx) = outbox(16, 1 << 20);
        for n in [1, 2] {
            h.send(ChannelOp::Subscribe {
                session: s.clone(),
                outbox: o.clone(),
                channel: ch("a"),
                reply: id(n),
                since: None,
                max: 8,
            })
            .await
            .unwrap();
        }
        assert_eq!(
            next(&mut rx).unwrap(),
            json!({"id": 1, "result": {"channel": "a", "publications": []}})
        );
        assert_eq!(next(&mut rx).unwrap()["id"], 2);
        assert_eq!(counters.listener(ListenerId(0)).channels.subscriptions(), 1);
        assert_eq!(counters.listener(ListenerId(0)).channels.channels(), 1);
        let d = push_pub(&ch("a"), &json!(1), None, &Value::Null);
        // Subscribed twice, delivered once.
        assert_eq!(
            h.send(PublishLocal {
                channel: ch("a"),
                delivery: d.clone()
            })
            .await
            .unwrap(),
            1
        );
        assert_eq!(
            h.send(PublishLocal {
                channel: ch("b"),
                delivery: d
            })
            .await
            .unwrap(),
            0
        );
        assert_eq!(next(&mut rx).unwrap()["push"], "pub");
        assert_eq!(next(&mut rx), None);
        h.send(ChannelOp::Unsubscribe {
            session: s.clone(),
            outbox: o,
            channel: ch("a"),
            reply: id(3),
        })
        .await
        .unwrap();
        assert_eq!(next(&mut rx).unwrap(), json!({"id": 3, "result": {}}));
        assert_eq!(counters.listener(ListenerId(0)).channels.subscriptions(), 0);
        assert_eq!(counters.listener(ListenerId(0)).channels.channels(), 0);
        assert!(h.send(ListChannels).await.unwrap().is_empty());
    }

    #[actix::test]
    async fn limit_and_server_side_subscriptions() {
        let counters = Arc::new(Counters::new(1));
        let h = hub(&counters);
        let s = SessionId::random();
        let (o, mut rx) = outbox(16, 1 << 20);
        let sub = |channel: &str, n| ChannelOp::Subscribe {
            session: s.clone(),
            outbox: o.clone(),
            channel: ch(channel),
            reply: id(n),
            since: Some(crate::channels::codec::StreamPosition {
                epoch: "e".into(),
                offset: 1,
            }),
            max: 1,
        };
        h.send(sub("a", 1)).await.unwrap();
        assert_eq!(next(&mut rx).unwrap()["result"]["recovered"], false);
        h.send(sub("b", 2)).await.unwrap();
        assert_eq!(next(&mut rx).unwrap()["error"]["code"], "limit_exceeded");
        h.send(ServerSubscribe {
            session: s.clone(),
            outbox: o.clone(),
            channel: ch("b"),
        })
        .await
        .unwrap();
        assert_eq!(
            next(&mut rx).unwrap(),
            json!({"push": "subscribe", "channel": "b"})
        );
        assert_eq!(
            h.send(CountSubscribers { channel: ch("b") }).await.unwrap(),
            1
        );
        // A refresh that allows nothing ends the client subscription only.
        let rules = AccessRules {
            subscribe: Access::Claim,
            publish: Access::Claim,
        };
        h.send(ChannelOp::Recheck {
            session: s.clone(),
            rules,
            grants: Arc::new(Grants::default()),
        })
        .await
        .unwrap();
        assert_eq!(
            next(&mut rx).unwrap(),
            json!({"push": "unsubscribe", "channel": "a", "reason": "forbidden"})
        );
        assert_eq!(next(&mut rx), None);
        assert!(h
            .send(ServerUnsubscribe {
                session: s.clone(),
                channel: ch("b"),
                reason: UnsubscribeReason::Admin
            })
            .await
            .unwrap());
        assert_eq!(next(&mut rx).unwrap()["reason"], "admin");
        assert!(!h
            .send(ServerUnsubscribe {
                session: s,
                channel: ch("b"),
                reason: UnsubscribeReason::Admin
            })
            .await
            .unwrap());
    }

    #[actix::test]
    async fn leave_and_slow_consumers_drop_subscriptions() {
        let counters = Arc::new(Counters::new(1));
        let h = hub(&counters);
        let (slow, mut slow_rx) = outbox(1, 1 << 20);
        let (fast, mut fast_rx) = outbox(16, 1 << 20);
        let (s1, s2) = (SessionId::random(), SessionId::random());
        for (s, o) in [(&s1, &slow), (&s2, &fast)] {
            h.send(ServerSubscribe {
                session: s.clone(),
                outbox: o.clone(),
                channel: ch("a"),
            })
            .await
            .unwrap();
        }
        // The slow one's queue is full with its subscribe push.
        let d = push_pub(&ch("a"), &json!(1), None, &Value::Null);
        assert_eq!(
            h.send(PublishLocal {
                channel: ch("a"),
                delivery: d.clone()
            })
            .await
            .unwrap(),
            1
        );
        assert_eq!(
            slow_rx.control.try_recv(),
            Some(crate::outbox::Control::Close(
                crate::close::CloseCode::SlowConsumer
            ))
        );
        assert_eq!(
            h.send(CountSubscribers { channel: ch("a") }).await.unwrap(),
            1
        );
        h.send(ChannelOp::Leave { session: s2 }).await.unwrap();
        assert_eq!(
            h.send(CountSubscribers { channel: ch("a") }).await.unwrap(),
            0
        );
        assert_eq!(counters.listener(ListenerId(0)).channels.channels(), 0);
        assert_eq!(next(&mut fast_rx).unwrap()["push"], "subscribe");
        assert_eq!(next(&mut fast_rx).unwrap()["push"], "pub");
    }
}
