//! GlobalRouter: one per global-scope listener, fanning its sessions' messages
//! out to every room of the listener, so a flood on a global listener never
//! queues in the Broker's mailbox (shared with joins and admin calls).
//!
//! The Broker tells it which rooms exist ([`RouterRoom`]); sessions send it
//! [`PublishGlobal`]. A room that is full (or holding its publishers back for
//! a full member) is waited for, not skipped: the router stops taking
//! messages meanwhile, its bounded mailbox fills, and the publishing sessions
//! stop reading their sockets. After local delivery the message goes to the
//! backplane for the other nodes.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::backplane::Backplane;
use crate::delivery::Delivery;
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
    /// Its address while it lives.
    pub room: Option<Addr<TenantRoom>>,
}

/// The fan-out actor of one global-scope listener.
#[derive(Debug)]
pub struct GlobalRouter {
    listener: ListenerId,
    rooms: HashMap<TenantId, Addr<TenantRoom>>,
    backplane: Arc<dyn Backplane>,
    mailbox_capacity: usize,
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
        }
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
        for room in self.rooms.values() {
            let fanout = LocalFanout {
                delivery: msg.delivery.clone(),
            };
            match room.try_send(fanout) {
                Ok(()) | Err(SendError::Closed(_)) => {}
                Err(SendError::Full(fanout)) => busy.push((room.clone(), fanout)),
            }
        }
        if !busy.is_empty() {
            // In order per room: nothing else is taken until these are in.
            ctx.wait(
                async move {
                    for (room, fanout) in busy {
                        let _ = room.send(fanout).await;
                    }
                }
                .into_actor(self),
            );
        }
        self.backplane.publish_global(self.listener, &msg.delivery);
    }
}
