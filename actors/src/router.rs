//! GlobalRouter: one per global-scope listener, fanning its sessions' messages
//! out to every room of the listener, so a flood on a global listener never
//! queues in the Broker's mailbox (shared with joins and admin calls).
//!
//! The Broker tells it which rooms exist, with their gates ([`RouterRoom`]);
//! sessions send it [`PublishGlobal`]. A room that is busy — holding its
//! publishers back for a full member (its gate closed), or with a full
//! mailbox — is waited for, not skipped and not piled into: the router closes
//! its own gate (which every session of the listener reads its socket
//! through, as a tenant listener's sessions read through their room's gate),
//! stops taking messages, and hands the message to each busy room once that
//! room's gate is open and its mailbox takes it. So a global flood queues no
//! more in the rooms' mailboxes than a tenant flood does, and a room's
//! arbiter is not left with a full mailbox to drain in one go while rooms of
//! other listeners on it wait. After local delivery the message goes to the
//! backplane for the other nodes.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::backplane::Backplane;
use crate::delivery::Delivery;
use crate::gate::Gate;
use crate::ids::{ListenerId, TenantId};
use crate::room::{LocalFanout, TenantRoom};

/// A client message on a global-scope listener.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct PublishGlobal {
    /// The serialized message.
    pub delivery: Delivery,
}

/// A room of the listener opened (`Some`) or closed (`None`); from the Broker.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RouterRoom {
    /// The room's tenant.
    pub tenant: TenantId,
    /// Its address and gate while it lives.
    pub room: Option<(Addr<TenantRoom>, Gate)>,
}

/// The fan-out actor of one global-scope listener.
#[derive(Debug)]
pub struct GlobalRouter {
    listener: ListenerId,
    rooms: HashMap<TenantId, (Addr<TenantRoom>, Gate)>,
    backplane: Arc<dyn Backplane>,
    mailbox_capacity: usize,
    /// Closed while a message waits for a busy room.
    gate: Gate,
}

impl GlobalRouter {
    /// A router with no rooms yet.
    pub fn new(
        listener: ListenerId,
        backplane: Arc<dyn Backplane>,
        mailbox_capacity: usize,
    ) -> Self {
        Self {
            listener,
            rooms: HashMap::new(),
            backplane,
            mailbox_capacity,
            gate: Gate::new(),
        }
    }

    /// The gate the listener's sessions read their sockets through.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }
}

impl Actor for GlobalRouter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<RouterRoom> for GlobalRouter {
    type Result = ();

    fn handle(&mut self, msg: RouterRoom, _ctx: &mut Self::Context) {
        match msg.room {
            Some(room) => self.rooms.insert(msg.tenant, room),
            None => self.rooms.remove(&msg.tenant),
        };
    }
}

impl Handler<PublishGlobal> for GlobalRouter {
    type Result = ();

    fn handle(&mut self, msg: PublishGlobal, ctx: &mut Self::Context) {
        let mut busy = Vec::new();
        for (room, gate) in self.rooms.values() {
            let fanout = LocalFanout {
                delivery: msg.delivery.clone(),
            };
            if !gate.is_open() {
                busy.push((room.clone(), gate.clone(), fanout));
                continue;
            }
            match room.try_send(fanout) {
                Ok(()) | Err(SendError::Closed(_)) => {}
                Err(SendError::Full(fanout)) => busy.push((room.clone(), gate.clone(), fanout)),
            }
        }
        if !busy.is_empty() {
            // In order per room: nothing else is taken until these are in.
            self.gate.close();
            let own = self.gate.clone();
            ctx.wait(
                async move {
                    for (room, gate, fanout) in busy {
                        gate.opened().await;
                        let _ = room.send(fanout).await;
                    }
                    own.open();
                }
                .into_actor(self),
            );
        }
        self.backplane.publish_global(self.listener, &msg.delivery);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backplane::LocalBackplane;
    use crate::counters::Counters;
    use crate::ids::SessionId;
    use crate::outbox::outbox;
    use crate::room::AddMember;

    fn text(s: &str) -> Delivery {
        Delivery::Text(s.into())
    }

    /// A room holding its publishers back (a member's queue at its bound) is
    /// not piled into: the router closes its own gate and hands the message
    /// over once the room's gate opens, in order.
    #[actix::test]
    async fn a_room_holding_publishers_back_closes_the_routers_gate_until_it_drains() {
        let tenant = TenantId::new("a");
        let room = TenantRoom::new(
            ListenerId(0),
            tenant.clone(),
            Arc::new(Counters::new(1)),
            64,
        )
        .with_slow_consumer_timeout(Duration::from_secs(30));
        let room_gate = room.gate();
        let room = room.start();
        let (o, mut r) = outbox(1, 1 << 20);
        room.send(AddMember {
            tenant: tenant.clone(),
            id: SessionId::random(),
            outbox: o,
        })
        .await
        .unwrap();
        let router = GlobalRouter::new(ListenerId(0), Arc::new(LocalBackplane), 64);
        let gate = router.gate();
        let router = router.start();
        router
            .send(RouterRoom {
                tenant,
                room: Some((room.clone(), room_gate.clone())),
            })
            .await
            .unwrap();
        for m in ["1", "2"] {
            room.send(LocalFanout { delivery: text(m) }).await.unwrap();
        }
        assert!(
            !room_gate.is_open(),
            "the member's queue holds one: the room waits"
        );
        router
            .send(PublishGlobal {
                delivery: text("3"),
            })
            .await
            .unwrap();
        assert!(!gate.is_open(), "the router waits for the room");
        for m in ["1", "2", "3"] {
            let got = tokio::time::timeout(Duration::from_secs(5), r.data.recv()).await;
            assert_eq!(got.unwrap(), Some(text(m)));
        }
        tokio::time::timeout(Duration::from_secs(5), gate.opened())
            .await
            .expect("the router's gate opens once the room took the message");
    }
}
