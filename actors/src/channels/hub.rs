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
//!
//! A burst is not a slow consumer, as in a room: when a subscriber's queue is
//! at its bound the hub keeps the push for it, closes its [`Gate`] (the
//! sockets of the listener's channel sessions using this hub are not read)
//! and stops taking messages until the subscriber drained; one still full
//! after `slow_consumer_timeout` is closed with 4009.
//!
//! With history on, the hub keeps the space's streams
//! ([`super::history`]) and outlives its room: every
//! [`super::history::PRUNE_EVERY`] it drops expired publications and, once it
//! has neither subscriptions nor streams, tells its owner (the Broker) it
//! went idle; the Broker stops it when its room is gone too.

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::gate::Gate;
use crate::outbox::push_when_space;

use super::history::{page, Page, PRUNE_EVERY};
use super::name::ChannelName;
use super::space::{
    ChannelOp, ChannelSpace, CountSubscribers, LaterReply, ListChannels, LocalFacts, PublishLocal,
    Published, ReadHistory, ServerSubscribe, ServerUnsubscribe, StreamStatus,
};
use crate::backplane::HistoryError;
use crate::channels::codec::StreamPosition;

/// A hub's address with the gate its publishers wait at: what a session of
/// a channels listener gets from its join.
#[derive(Debug, Clone)]
pub struct HubRoute {
    /// The hub of the session's channel space.
    pub hub: Addr<ChannelHub>,
    /// Closed while the hub holds its publishers back.
    pub gate: Gate,
}

/// Stops a hub (its room closed).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StopHub;

/// A hub with history has no subscription and no stream left (sent to its
/// owner every prune while it stays so).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct HubWentIdle {
    /// The hub.
    pub hub: Addr<ChannelHub>,
    /// Its listener.
    pub listener: crate::ids::ListenerId,
    /// Its tenant.
    pub tenant: crate::ids::TenantId,
}

/// The actor owning one channel space.
#[derive(Debug)]
pub struct ChannelHub {
    space: ChannelSpace,
    mailbox_capacity: usize,
    gate: Gate,
    slow_consumer_timeout: Duration,
    /// Told when the hub went idle (history on).
    owner: Option<Recipient<HubWentIdle>>,
    prune_every: Duration,
}

impl ChannelHub {
    /// A hub for `space`; its mailbox holds `mailbox_capacity` messages before
    /// publishers wait; a subscriber full for `slow_consumer_timeout` is closed.
    pub fn new(
        space: ChannelSpace,
        mailbox_capacity: usize,
        slow_consumer_timeout: Duration,
    ) -> Self {
        Self {
            space,
            mailbox_capacity,
            gate: Gate::new(),
            slow_consumer_timeout,
            owner: None,
            prune_every: PRUNE_EVERY,
        }
    }

    /// Tells `owner` when the hub went idle (see [`HubWentIdle`]).
    pub fn with_owner(mut self, owner: Recipient<HubWentIdle>) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Prunes history every `every` instead of [`PRUNE_EVERY`] (tests).
    pub fn with_prune_every(mut self, every: Duration) -> Self {
        self.prune_every = every;
        self
    }

    /// The gate the sessions using this hub wait at.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// Holds the hub (and its publishers) back until the pushes that found a
    /// full queue are delivered or their subscribers closed.
    fn hold_back(&mut self, ctx: &mut Context<Self>) {
        let held = self.space.take_held();
        if held.is_empty() {
            return;
        }
        self.gate.close();
        let since = Instant::now();
        let deadline = since + self.slow_consumer_timeout;
        let wait = async move {
            let mut outcome = Vec::with_capacity(held.len());
            for (id, outbox, delivery) in held {
                outcome.extend(push_when_space(vec![(id, outbox)], delivery, deadline).await);
            }
            outcome
        };
        ctx.wait(wait.into_actor(self).map(move |outcome, act, ctx| {
            for (id, outbox, pushed) in outcome {
                act.space.settle(&id, &outbox, pushed);
            }
            act.space.counters().add_backpressure(since.elapsed());
            act.gate.open();
            // Settling may have queued replies to slow consumers' peers.
            act.hold_back(ctx);
        }));
    }
}

impl ChannelHub {
    /// Runs the space's cluster round trips off the handler; each result is
    /// applied in a later step of this actor.
    fn run_jobs(&mut self, ctx: &mut Context<Self>) {
        for job in self.space.take_jobs() {
            ctx.spawn(job.0.into_actor(self).map(|done, act, ctx| {
                act.space.finish(done);
                act.after(ctx);
            }));
        }
    }

    /// What every step ends with: held pushes, then new round trips.
    fn after(&mut self, ctx: &mut Context<Self>) {
        self.hold_back(ctx);
        self.run_jobs(ctx);
    }
}

impl Actor for ChannelHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        if self.space.history_on() {
            ctx.run_interval(self.prune_every, |act, ctx| {
                act.space.prune();
                let (Some(owner), Some(tenant)) = (&act.owner, act.space.tenant()) else {
                    return;
                };
                if act.space.is_idle() {
                    owner.do_send(HubWentIdle {
                        hub: ctx.address(),
                        listener: act.space.listener(),
                        tenant: tenant.clone(),
                    });
                }
            });
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Nobody may wait at the gate of a hub that is gone.
        self.gate.open();
        // Give the gauges back: every subscription here ends with the hub.
        let sessions: Vec<_> = self.space.table().sessions().cloned().collect();
        for s in sessions {
            self.space.leave(&s);
        }
    }
}

impl Handler<ChannelOp> for ChannelHub {
    type Result = ();

    fn handle(&mut self, msg: ChannelOp, ctx: &mut Self::Context) {
        if let Some(later) = self.space.apply(msg) {
            self.answer_later(later, ctx);
        }
        self.after(ctx);
    }
}

impl ChannelHub {
    /// Awaits a reply that needs other nodes (without holding the hub), then
    /// queues it like any other.
    fn answer_later(&mut self, later: LaterReply, ctx: &mut Context<Self>) {
        ctx.spawn(
            later
                .into_actor(self)
                .map(|(session, outbox, text), act, ctx| {
                    act.space.reply_to(&session, &outbox, text);
                    act.hold_back(ctx);
                }),
        );
    }
}

impl Handler<LocalFacts> for ChannelHub {
    type Result = MessageResult<LocalFacts>;

    fn handle(&mut self, msg: LocalFacts, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.space.facts(&msg.channel))
    }
}

impl Handler<PublishLocal> for ChannelHub {
    type Result = ResponseFuture<Result<Published, HistoryError>>;

    fn handle(&mut self, msg: PublishLocal, ctx: &mut Self::Context) -> Self::Result {
        if msg.forward && self.space.history_on() && self.space.history().is_none() {
            // Numbered by the cluster, delivered here when it comes back.
            return self.space.append_cluster(&msg.channel, &msg.delivery);
        }
        let published = if msg.forward {
            self.space.publish_everywhere(&msg.channel, &msg.delivery)
        } else {
            let position = msg.position.as_ref();
            Published {
                delivered: self.space.publish_at(&msg.channel, &msg.delivery, position),
                offset: position.map(|p| p.offset),
            }
        };
        self.after(ctx);
        Box::pin(std::future::ready(Ok(published)))
    }
}

impl Handler<StreamStatus> for ChannelHub {
    type Result = ResponseFuture<Option<(StreamPosition, usize)>>;

    fn handle(&mut self, msg: StreamStatus, _ctx: &mut Self::Context) -> Self::Result {
        let now = std::time::Instant::now();
        if let Some(h) = self.space.history() {
            return Box::pin(std::future::ready(h.status(&msg.channel, now)));
        }
        let read = self.space.read(&msg.channel, Some(0));
        Box::pin(async move {
            let s = read.await.ok()?;
            let position = StreamPosition {
                epoch: s.epoch,
                offset: s.offset,
            };
            Some((position, s.publications.len()))
        })
    }
}

impl Handler<ReadHistory> for ChannelHub {
    type Result = ResponseFuture<Option<Page>>;

    fn handle(&mut self, msg: ReadHistory, _ctx: &mut Self::Context) -> Self::Result {
        let now = std::time::Instant::now();
        if let Some(h) = self.space.history() {
            return Box::pin(std::future::ready(Some(h.query(
                &msg.channel,
                msg.limit,
                None,
                now,
            ))));
        }
        let read = self.space.read(&msg.channel, Some(0));
        Box::pin(async move {
            let s = read.await.ok()?;
            let position = StreamPosition {
                epoch: s.epoch,
                offset: s.offset,
            };
            Some(page(position, s.publications.into_iter(), msg.limit, None))
        })
    }
}

impl Handler<ServerSubscribe> for ChannelHub {
    type Result = bool;

    fn handle(&mut self, msg: ServerSubscribe, ctx: &mut Self::Context) -> bool {
        let done = self.space.server_subscribe(
            &msg.session,
            &msg.outbox,
            &msg.channel,
            msg.subject.as_ref(),
        );
        self.after(ctx);
        done
    }
}

impl Handler<ServerUnsubscribe> for ChannelHub {
    type Result = bool;

    fn handle(&mut self, msg: ServerUnsubscribe, ctx: &mut Self::Context) -> bool {
        let ended = self.space.end(&msg.session, &msg.channel, msg.reason);
        self.hold_back(ctx);
        ended
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
        ChannelHub::new(space, 64, std::time::Duration::from_millis(100)).start()
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

    /// Publishes `d` to `channel` here only; how many queues took it.
    async fn publish_here(h: &Addr<ChannelHub>, channel: &str, d: Delivery) -> usize {
        h.send(PublishLocal {
            channel: ch(channel),
            delivery: d,
            forward: false,
            position: None,
        })
        .await
        .unwrap()
        .unwrap()
        .delivered
    }

    #[actix::test]
    async fn a_burst_waits_for_the_subscriber_and_loses_nothing() {
        let counters = Arc::new(Counters::new(1));
        let space = ChannelSpace::new(ListenerId(0), None, counters.clone());
        let hub = ChannelHub::new(space, 64, std::time::Duration::from_secs(10));
        let gate = hub.gate();
        let h = hub.start();
        let (o, mut rx) = outbox(2, 1 << 20);
        let s = SessionId::random();
        h.send(ServerSubscribe {
            session: s.clone(),
            outbox: o,
            channel: ch("a"),
            subject: None,
        })
        .await
        .unwrap();
        for i in 0..3 {
            let d = push_pub(&ch("a"), &json!(i), None, &Value::Null);
            let publish = PublishLocal {
                channel: ch("a"),
                delivery: d,
                forward: false,
                position: None,
            };
            if i < 2 {
                h.send(publish).await.unwrap().unwrap();
            } else {
                // Queued behind the held-back one: the hub takes it once the
                // subscriber drained.
                h.do_send(publish);
            }
        }
        assert!(!gate.is_open(), "publishers are held back");
        let mut got = Vec::new();
        while got.len() < 4 {
            if let Some(v) = next(&mut rx) {
                got.push(v);
            } else {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(got[0]["push"], "subscribe");
        assert_eq!(
            got[1..]
                .iter()
                .map(|v| v["data"].clone())
                .collect::<Vec<_>>(),
            [json!(0), json!(1), json!(2)]
        );
        assert_eq!(
            h.send(CountSubscribers { channel: ch("a") }).await.unwrap(),
            1
        );
        assert!(gate.is_open());
        assert_eq!(rx.control.try_recv(), None);
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
                subject: None,
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
        assert_eq!(publish_here(&h, "a", d.clone()).await, 1);
        assert_eq!(publish_here(&h, "b", d).await, 0);
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
            subject: None,
        };
        h.send(sub("a", 1)).await.unwrap();
        assert_eq!(next(&mut rx).unwrap()["result"]["recovered"], false);
        h.send(sub("b", 2)).await.unwrap();
        assert_eq!(next(&mut rx).unwrap()["error"]["code"], "limit_exceeded");
        h.send(ServerSubscribe {
            session: s.clone(),
            outbox: o.clone(),
            channel: ch("b"),
            subject: None,
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
                subject: None,
            })
            .await
            .unwrap();
        }
        // The slow one's queue is full with its subscribe push: the hub waits
        // for it (100 ms here), then closes it 4009.
        let d = push_pub(&ch("a"), &json!(1), None, &Value::Null);
        let n = publish_here(&h, "a", d.clone()).await;
        assert_eq!(n, 2);
        let n = h.send(CountSubscribers { channel: ch("a") }).await.unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            slow_rx.control.try_recv(),
            Some(crate::outbox::Control::Close(
                crate::close::CloseCode::SlowConsumer
            ))
        );
        h.send(ChannelOp::Leave { session: s2 }).await.unwrap();
        assert_eq!(
            h.send(CountSubscribers { channel: ch("a") }).await.unwrap(),
            0
        );
        assert_eq!(counters.listener(ListenerId(0)).channels.channels(), 0);
        assert_eq!(counters.listener(ListenerId(0)).channels.subscriptions(), 0);
        assert_eq!(next(&mut fast_rx).unwrap()["push"], "subscribe");
        assert_eq!(next(&mut fast_rx).unwrap()["push"], "pub");
    }

    #[actix::test]
    async fn a_slow_consumer_closed_is_a_leave_for_the_others() {
        use crate::channels::presence::PresenceMode;
        use crate::ids::{Mode, Scope};
        let counters = Arc::new(Counters::new(1));
        let mut policy =
            crate::policy::ListenerPolicy::for_tests(0, "/c", Mode::Channels, Scope::Tenant);
        policy.presence = PresenceMode::JoinLeave;
        let space = ChannelSpace::new(ListenerId(0), Some(TenantId::new("t")), counters.clone())
            .with_listener(&policy);
        let h = ChannelHub::new(space, 64, std::time::Duration::from_millis(100)).start();
        let (slow, mut slow_rx) = outbox(1, 1 << 20);
        let (fast, mut fast_rx) = outbox(16, 1 << 20);
        let (s1, s2) = (
            SessionId::from_string("slow"),
            SessionId::from_string("fast"),
        );
        for (s, o) in [(&s1, &slow), (&s2, &fast)] {
            h.send(ServerSubscribe {
                session: s.clone(),
                outbox: o.clone(),
                channel: ch("a"),
                subject: Some(Arc::from("u")),
            })
            .await
            .unwrap();
        }
        // The slow one's queue holds its subscribe push: the join of the fast
        // one waits for it, then it is closed 4009, which is its leave.
        h.send(CountSubscribers { channel: ch("a") }).await.unwrap();
        assert_eq!(
            slow_rx.control.try_recv(),
            Some(crate::outbox::Control::Close(
                crate::close::CloseCode::SlowConsumer
            ))
        );
        assert_eq!(next(&mut fast_rx).unwrap()["push"], "subscribe");
        assert_eq!(
            next(&mut fast_rx).unwrap(),
            json!({"push": "leave", "channel": "a", "client": {"id": "slow", "subject": "u"}})
        );
        assert_eq!(next(&mut fast_rx), None);
        assert_eq!(next(&mut slow_rx).unwrap()["push"], "subscribe");
    }
}
