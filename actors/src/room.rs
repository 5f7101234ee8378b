//! TenantRoom: one per (listener, tenant) with at least one session.
//!
//! It is the only holder of its tenant's delivery queues, so a message handed to
//! a room can reach only that tenant. Created by the Broker on the first join and
//! stopped by the Broker when the last session leaves.
//!
//! A message from one of the room's own sessions ([`Fanout`]) is handed to the
//! backplane after local delivery, so other nodes deliver it to their sessions
//! of the tenant; a message that is for this node only ([`LocalFanout`]: global
//! or admin fan-out by the Broker, or a message from another node) is not.
//!
//! A burst is not a slow consumer: when a member's queue is at its bound, the
//! room keeps the message for it, closes its [`Gate`] (its publishers' sockets
//! are no longer read) and stops taking messages (admin publishes, bridges
//! and global fan-out wait in its bounded mailbox) until the member has
//! drained to half its bounds. A member still full after
//! `slow_consumer_timeout` is closed with 4009 and removed; the room goes on.
//! Nothing is lost for anyone else, and no queue grows past its bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::backplane::{Backplane, LocalBackplane};
use crate::close::CloseCode;
use crate::counters::{Counters, DropReason};
use crate::delivery::Delivery;
use crate::gate::Gate;
use crate::ids::{ListenerId, SessionId, TenantId};
use crate::outbox::{push_when_space, Outbox, PushError};

/// Adds a session's queue to the room. Refused (returns `false`) when the tenant
/// is not the room's own.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct AddMember {
    /// Must equal the room's tenant.
    pub tenant: TenantId,
    /// The session.
    pub id: SessionId,
    /// Where its deliveries go.
    pub outbox: Outbox,
}

/// Removes a session (it left, or was closed).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RemoveMember {
    /// The session.
    pub id: SessionId,
}

/// A tenant message from one of this room's sessions: delivered to every member,
/// then handed to the backplane for the other nodes. Returns how many local
/// queues accepted it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "usize")]
pub struct Fanout {
    /// The serialized message, shared by all deliveries.
    pub delivery: Delivery,
}

/// Delivers a message to every member of this node only (global and admin
/// fan-out, messages from other nodes); returns how many queues accepted it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "usize")]
pub struct LocalFanout {
    /// The serialized message, shared by all deliveries.
    pub delivery: Delivery,
}

/// A tenant message published on behalf of `origin` (a bridge): delivered to
/// every member except `origin`, so a bridge that both publishes into and
/// forwards from the tenant never receives its own publications back; then
/// handed to the backplane like [`Fanout`]. Returns how many queues took it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "usize")]
pub struct FanoutFrom {
    /// The serialized message, shared by all deliveries.
    pub delivery: Delivery,
    /// The member that must not receive it.
    pub origin: SessionId,
}

/// Stops the room (sent by the Broker when its last session left).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StopRoom;

#[derive(Debug)]
struct Member {
    id: SessionId,
    outbox: Outbox,
}

/// The per-tenant fan-out actor.
#[derive(Debug)]
pub struct TenantRoom {
    listener: ListenerId,
    tenant: TenantId,
    members: Vec<Member>,
    index: HashMap<SessionId, usize>,
    counters: Arc<Counters>,
    mailbox_capacity: usize,
    backplane: Arc<dyn Backplane>,
    /// Closed while a member's queue is full: publishers hold back.
    gate: Gate,
    /// How long a full member may hold the room back before it is closed.
    slow_consumer_timeout: Duration,
}

/// Default of `limits.slow_consumer_timeout_ms`.
pub const DEFAULT_SLOW_CONSUMER_TIMEOUT: Duration = Duration::from_secs(2);

impl TenantRoom {
    /// An empty room for one tenant of one listener.
    pub fn new(
        listener: ListenerId,
        tenant: TenantId,
        counters: Arc<Counters>,
        mailbox_capacity: usize,
    ) -> Self {
        Self {
            listener,
            tenant,
            members: Vec::new(),
            index: HashMap::new(),
            counters,
            mailbox_capacity,
            backplane: Arc::new(LocalBackplane),
            gate: Gate::new(),
            slow_consumer_timeout: DEFAULT_SLOW_CONSUMER_TIMEOUT,
        }
    }

    /// Closes a member that stays full for `timeout` (default 2 s).
    pub fn with_slow_consumer_timeout(mut self, timeout: Duration) -> Self {
        self.slow_consumer_timeout = timeout;
        self
    }

    /// The gate this room's publishers wait at.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// Hands the room's own tenant messages to `backplane` after local delivery.
    pub fn with_backplane(mut self, backplane: Arc<dyn Backplane>) -> Self {
        self.backplane = backplane;
        self
    }

    fn remove(&mut self, id: &SessionId) {
        if let Some(pos) = self.index.remove(id) {
            self.members.swap_remove(pos);
            if let Some(moved) = self.members.get(pos) {
                self.index.insert(moved.id.clone(), pos);
            }
        }
    }
}

impl Actor for TenantRoom {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        log::debug!(
            "room started listener={} tenant={}",
            self.listener.0,
            self.tenant
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Nobody may wait at the gate of a room that is gone.
        self.gate.open();
        log::debug!(
            "room stopped listener={} tenant={}",
            self.listener.0,
            self.tenant
        );
    }
}

impl Handler<AddMember> for TenantRoom {
    type Result = bool;

    fn handle(&mut self, msg: AddMember, _ctx: &mut Self::Context) -> bool {
        if msg.tenant != self.tenant {
            log::error!(
                "room refused a session of another tenant room_tenant={} tenant={} session={}",
                self.tenant,
                msg.tenant,
                msg.id
            );
            return false;
        }
        self.remove(&msg.id);
        self.index.insert(msg.id.clone(), self.members.len());
        self.members.push(Member {
            id: msg.id,
            outbox: msg.outbox,
        });
        true
    }
}

impl Handler<RemoveMember> for TenantRoom {
    type Result = ();

    fn handle(&mut self, msg: RemoveMember, _ctx: &mut Self::Context) {
        self.remove(&msg.id);
    }
}

impl Handler<Fanout> for TenantRoom {
    type Result = usize;

    fn handle(&mut self, msg: Fanout, ctx: &mut Self::Context) -> usize {
        let delivered = self.deliver(&msg.delivery, None, ctx);
        self.backplane
            .publish_tenant(self.listener, &self.tenant, &msg.delivery);
        delivered
    }
}

impl Handler<LocalFanout> for TenantRoom {
    type Result = usize;

    fn handle(&mut self, msg: LocalFanout, ctx: &mut Self::Context) -> usize {
        self.deliver(&msg.delivery, None, ctx)
    }
}

impl Handler<FanoutFrom> for TenantRoom {
    type Result = usize;

    fn handle(&mut self, msg: FanoutFrom, ctx: &mut Self::Context) -> usize {
        let delivered = self.deliver(&msg.delivery, Some(&msg.origin), ctx);
        self.backplane
            .publish_tenant(self.listener, &self.tenant, &msg.delivery);
        delivered
    }
}

impl TenantRoom {
    /// Pushes `delivery` into every member's queue but `skip`'s. Returns how
    /// many queues took it or will: a member whose queue is full gets it once
    /// it has drained (the room waits for that), or is closed with 4009.
    fn deliver(
        &mut self,
        delivery: &Delivery,
        skip: Option<&SessionId>,
        ctx: &mut Context<Self>,
    ) -> usize {
        let mut delivered = 0;
        let mut gone: Vec<SessionId> = Vec::new();
        let mut full: Vec<(SessionId, Outbox)> = Vec::new();
        for member in self.members.iter().filter(|m| Some(&m.id) != skip) {
            match member.outbox.push(delivery.clone()) {
                Ok(()) => delivered += 1,
                Err(PushError::Full) => full.push((member.id.clone(), member.outbox.clone())),
                Err(PushError::Closed) => gone.push(member.id.clone()),
            }
        }
        for id in &gone {
            self.remove(id);
        }
        self.counters
            .listener(self.listener)
            .deliveries
            .add(delivered as u64);
        let waiting = full.len();
        if waiting > 0 {
            self.hold_back(delivery.clone(), full, ctx);
        }
        delivered + waiting
    }

    /// Stops taking messages and holds publishers back until every member of
    /// `full` has taken `delivery`, closing those that cannot within
    /// `slow_consumer_timeout`.
    fn hold_back(
        &mut self,
        delivery: Delivery,
        full: Vec<(SessionId, Outbox)>,
        ctx: &mut Context<Self>,
    ) {
        self.gate.close();
        let since = Instant::now();
        let deadline = since + self.slow_consumer_timeout;
        let wait = push_when_space(full, delivery, deadline);
        ctx.wait(wait.into_actor(self).map(move |outcome, act, _ctx| {
            for (id, outbox, pushed) in outcome {
                match pushed {
                    Ok(()) => act.counters.listener(act.listener).deliveries.add(1),
                    Err(PushError::Full) => {
                        log::warn!(
                            "slow consumer closed tenant={} session={} queued_bytes={}",
                            act.tenant,
                            id,
                            outbox.queued_bytes()
                        );
                        act.counters.add_dropped(DropReason::SlowConsumer);
                        outbox.close(CloseCode::SlowConsumer);
                        act.remove(&id);
                    }
                    Err(PushError::Closed) => act.remove(&id),
                }
            }
            act.counters.add_backpressure(since.elapsed());
            act.gate.open();
        }));
    }
}

impl Handler<StopRoom> for TenantRoom {
    type Result = ();

    fn handle(&mut self, _msg: StopRoom, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{outbox, Control, OutboxReceiver};

    fn room(tenant: &str) -> Addr<TenantRoom> {
        TenantRoom::new(
            ListenerId(0),
            TenantId::new(tenant),
            Arc::new(Counters::new(1)),
            64,
        )
        .start()
    }

    #[actix::test]
    async fn fans_out_to_members_only_of_its_tenant() {
        let r = room("a");
        let (o1, mut r1) = outbox(8, 1 << 20);
        let (o2, mut r2) = outbox(8, 1 << 20);
        let (o3, mut r3) = outbox(8, 1 << 20);
        assert!(r
            .send(AddMember {
                tenant: TenantId::new("a"),
                id: SessionId::random(),
                outbox: o1
            })
            .await
            .unwrap());
        assert!(r
            .send(AddMember {
                tenant: TenantId::new("a"),
                id: SessionId::random(),
                outbox: o2
            })
            .await
            .unwrap());
        assert!(!r
            .send(AddMember {
                tenant: TenantId::new("b"),
                id: SessionId::random(),
                outbox: o3
            })
            .await
            .unwrap());
        let n = r
            .send(Fanout {
                delivery: Delivery::Text("x".into()),
            })
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(r1.data.try_recv(), Some(Delivery::Text("x".into())));
        assert_eq!(r2.data.try_recv(), Some(Delivery::Text("x".into())));
        assert_eq!(r3.data.try_recv(), None);
    }

    #[actix::test]
    async fn fanout_from_skips_its_origin() {
        let r = room("a");
        let origin = SessionId::random();
        let (o1, mut r1) = outbox(8, 1 << 20);
        let (o2, mut r2) = outbox(8, 1 << 20);
        for (id, o) in [(origin.clone(), o1), (SessionId::random(), o2)] {
            r.send(AddMember {
                tenant: TenantId::new("a"),
                id,
                outbox: o,
            })
            .await
            .unwrap();
        }
        let n = r
            .send(FanoutFrom {
                delivery: Delivery::Text("x".into()),
                origin,
            })
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(r1.data.try_recv(), None);
        assert_eq!(r2.data.try_recv(), Some(Delivery::Text("x".into())));
    }

    /// A room with a 200 ms slow-consumer timeout, a member whose queue holds
    /// one message and one with room for eight; returns the room, its gate and
    /// both receivers.
    async fn room_with_a_small_member() -> (Addr<TenantRoom>, Gate, OutboxReceiver, OutboxReceiver)
    {
        let room = TenantRoom::new(
            ListenerId(0),
            TenantId::new("a"),
            Arc::new(Counters::new(1)),
            64,
        )
        .with_slow_consumer_timeout(Duration::from_millis(200));
        let gate = room.gate();
        let r = room.start();
        let (small, small_rx) = outbox(1, 1 << 20);
        let (big, big_rx) = outbox(8, 1 << 20);
        for o in [small, big] {
            r.send(AddMember {
                tenant: TenantId::new("a"),
                id: SessionId::random(),
                outbox: o,
            })
            .await
            .unwrap();
        }
        (r, gate, small_rx, big_rx)
    }

    fn text(s: &str) -> Delivery {
        Delivery::Text(s.into())
    }

    #[actix::test]
    async fn a_full_member_holds_the_room_back_until_it_drains_and_loses_nothing() {
        let (r, gate, mut small_rx, mut big_rx) = room_with_a_small_member().await;
        assert_eq!(
            r.send(Fanout {
                delivery: text("1")
            })
            .await
            .unwrap(),
            2
        );
        // "2" does not fit the small queue: the room keeps it for it and
        // holds its publishers back.
        assert_eq!(
            r.send(Fanout {
                delivery: text("2")
            })
            .await
            .unwrap(),
            2
        );
        assert!(!gate.is_open(), "publishers are held back");
        let later = r.send(Fanout {
            delivery: text("3"),
        });
        assert_eq!(big_rx.data.recv().await, Some(text("1")));
        assert_eq!(big_rx.data.recv().await, Some(text("2")));
        // The small member drains: it gets "2", then "3"; nobody is closed.
        assert_eq!(small_rx.data.recv().await, Some(text("1")));
        assert_eq!(small_rx.data.recv().await, Some(text("2")));
        assert_eq!(later.await.unwrap(), 2);
        assert_eq!(small_rx.data.recv().await, Some(text("3")));
        assert_eq!(big_rx.data.recv().await, Some(text("3")));
        assert!(gate.is_open(), "open again once the member drained");
        assert_eq!(small_rx.control.try_recv(), None);
    }

    #[actix::test]
    async fn a_member_full_past_the_timeout_is_closed_4009_and_the_room_goes_on() {
        let (r, gate, mut small_rx, mut big_rx) = room_with_a_small_member().await;
        let t0 = std::time::Instant::now();
        r.send(Fanout {
            delivery: text("1"),
        })
        .await
        .unwrap();
        r.send(Fanout {
            delivery: text("2"),
        })
        .await
        .unwrap();
        // Taken only once the small member is gone.
        assert_eq!(
            r.send(Fanout {
                delivery: text("3")
            })
            .await
            .unwrap(),
            1
        );
        let held = t0.elapsed();
        assert!(held >= Duration::from_millis(200), "{held:?}");
        assert!(held < Duration::from_millis(1200), "{held:?}");
        assert!(gate.is_open());
        assert_eq!(
            small_rx.control.try_recv(),
            Some(Control::Close(CloseCode::SlowConsumer))
        );
        assert_eq!(
            small_rx.data.try_recv(),
            Some(text("1")),
            "an unbroken prefix"
        );
        assert_eq!(small_rx.data.try_recv(), None);
        for want in ["1", "2", "3"] {
            assert_eq!(big_rx.data.try_recv(), Some(text(want)));
        }
    }

    #[actix::test]
    async fn remove_and_closed_receivers() {
        let r = room("a");
        let id = SessionId::random();
        let (o1, rx1) = outbox(8, 1 << 20);
        let (o2, _rx2) = outbox(8, 1 << 20);
        r.send(AddMember {
            tenant: TenantId::new("a"),
            id: id.clone(),
            outbox: o1,
        })
        .await
        .unwrap();
        r.send(AddMember {
            tenant: TenantId::new("a"),
            id: SessionId::random(),
            outbox: o2,
        })
        .await
        .unwrap();
        drop(rx1);
        assert_eq!(
            r.send(Fanout {
                delivery: Delivery::Text("x".into())
            })
            .await
            .unwrap(),
            1
        );
        r.send(RemoveMember { id }).await.unwrap();
        assert_eq!(
            r.send(Fanout {
                delivery: Delivery::Text("y".into())
            })
            .await
            .unwrap(),
            1
        );
    }
}
