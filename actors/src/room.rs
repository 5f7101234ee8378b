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

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::backplane::{Backplane, LocalBackplane};
use crate::close::CloseCode;
use crate::counters::{Counters, DropReason};
use crate::delivery::Delivery;
use crate::ids::{ListenerId, SessionId, TenantId};
use crate::outbox::{Outbox, PushError};

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
}

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
        }
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

    fn handle(&mut self, msg: Fanout, _ctx: &mut Self::Context) -> usize {
        let delivered = self.deliver(&msg.delivery);
        self.backplane
            .publish_tenant(self.listener, &self.tenant, &msg.delivery);
        delivered
    }
}

impl Handler<LocalFanout> for TenantRoom {
    type Result = usize;

    fn handle(&mut self, msg: LocalFanout, _ctx: &mut Self::Context) -> usize {
        self.deliver(&msg.delivery)
    }
}

impl Handler<FanoutFrom> for TenantRoom {
    type Result = usize;

    fn handle(&mut self, msg: FanoutFrom, _ctx: &mut Self::Context) -> usize {
        let delivered = self.deliver_except(&msg.delivery, Some(&msg.origin));
        self.backplane
            .publish_tenant(self.listener, &self.tenant, &msg.delivery);
        delivered
    }
}

impl TenantRoom {
    /// Pushes `delivery` into every member's queue; closes slow consumers.
    fn deliver(&mut self, delivery: &Delivery) -> usize {
        self.deliver_except(delivery, None)
    }

    /// Like [`TenantRoom::deliver`], skipping the member `skip`.
    fn deliver_except(&mut self, delivery: &Delivery, skip: Option<&SessionId>) -> usize {
        let mut delivered = 0;
        let mut gone: Vec<SessionId> = Vec::new();
        for member in self.members.iter().filter(|m| Some(&m.id) != skip) {
            match member.outbox.push(delivery.clone()) {
                Ok(()) => delivered += 1,
                Err(PushError::Full) => {
                    log::warn!(
                        "slow consumer closed tenant={} session={} queued_bytes={}",
                        self.tenant,
                        member.id,
                        member.outbox.queued_bytes()
                    );
                    self.counters.add_dropped(DropReason::SlowConsumer);
                    member.outbox.close(CloseCode::SlowConsumer);
                    gone.push(member.id.clone());
                }
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
        delivered
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
    use crate::outbox::{outbox, Control};

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

    #[actix::test]
    async fn slow_consumer_is_closed_and_removed() {
        let r = room("a");
        let (slow, mut slow_rx) = outbox(1, 1 << 20);
        let (fast, mut fast_rx) = outbox(8, 1 << 20);
        r.send(AddMember {
            tenant: TenantId::new("a"),
            id: SessionId::random(),
            outbox: slow,
        })
        .await
        .unwrap();
        r.send(AddMember {
            tenant: TenantId::new("a"),
            id: SessionId::random(),
            outbox: fast,
        })
        .await
        .unwrap();
        assert_eq!(
            r.send(Fanout {
                delivery: Delivery::Text("1".into())
            })
            .await
            .unwrap(),
            2
        );
        assert_eq!(
            r.send(Fanout {
                delivery: Delivery::Text("2".into())
            })
            .await
            .unwrap(),
            1
        );
        assert_eq!(
            slow_rx.control.try_recv(),
            Some(Control::Close(CloseCode::SlowConsumer))
        );
        assert_eq!(
            r.send(Fanout {
                delivery: Delivery::Text("3".into())
            })
            .await
            .unwrap(),
            1
        );
        assert_eq!(fast_rx.data.try_recv(), Some(Delivery::Text("1".into())));
        assert_eq!(fast_rx.data.try_recv(), Some(Delivery::Text("2".into())));
        assert_eq!(fast_rx.data.try_recv(), Some(Delivery::Text("3".into())));
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
