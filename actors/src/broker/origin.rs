//! Publishing into a tenant on behalf of a registered member that must not get
//! the message back (a bridge forwarding both ways): the [`PublishFrom`] handler.

use actix::prelude::*;
use futures_core::future::BoxFuture;

use crate::room::FanoutFrom;

use super::messages::PublishFrom;
use super::Broker;

impl Handler<PublishFrom> for Broker {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: PublishFrom, _ctx: &mut Self::Context) -> Self::Result {
        let room = self
            .rooms
            .get(&(msg.listener, msg.tenant.clone()))
            .map(|r| r.addr.clone());
        let fut: BoxFuture<'static, usize> = match room {
            // The room hands it to the backplane after local delivery.
            Some(room) => Box::pin(async move {
                room.send(FanoutFrom {
                    delivery: msg.delivery,
                    origin: msg.origin,
                })
                .await
                .unwrap_or(0)
            }),
            None => {
                self.backplane()
                    .publish_tenant(msg.listener, &msg.tenant, &msg.delivery);
                Box::pin(async { 0 })
            }
        };
        fut
    }
}
