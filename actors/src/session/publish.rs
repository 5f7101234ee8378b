//! How a session hands its messages to its room or router without ever
//! blocking itself: a message the room or router cannot take now (its
//! bounded mailbox is full) waits here, in order, behind the ones before it;
//! meanwhile the session's own gate is closed, so its socket is not read, yet
//! the session keeps writing its deliveries and answering pings (a publisher
//! that is also a member must keep draining, or its room would wait on it).
//!
//! What waits here is bounded by what was decoded before the gate closed:
//! one message of at most `max_message_bytes`, since the gate stands above
//! the decoder (`inbound.rs`, `Session::start`).

use actix::prelude::*;
use actix_web_actors::ws::WebsocketContext;

use crate::broker::Route;
use crate::delivery::Delivery;
use crate::room::Fanout;
use crate::router::PublishGlobal;

use super::Session;

/// What a route did with an offered message.
enum Offer {
    /// Taken, or the route is gone (the session ends soon).
    Done,
    /// The mailbox is full: try again by waiting.
    Busy(Delivery),
}

/// Hands `delivery` over without waiting.
fn offer(route: &Route, delivery: Delivery) -> Offer {
    match route {
        Route::Own => Offer::Done,
        Route::Room { room, .. } => match room.try_send(Fanout { delivery }) {
            Err(SendError::Full(m)) => Offer::Busy(m.delivery),
            Ok(()) | Err(SendError::Closed(_)) => Offer::Done,
        },
        Route::Global { router, .. } => match router.try_send(PublishGlobal { delivery }) {
            Err(SendError::Full(m)) => Offer::Busy(m.delivery),
            Ok(()) | Err(SendError::Closed(_)) => Offer::Done,
        },
    }
}

/// Hands `delivery` over once the route has room.
async fn hand_over(route: Route, delivery: Delivery) {
    match route {
        Route::Own => {}
        Route::Room { room, .. } => {
            let _ = room.send(Fanout { delivery }).await;
        }
        Route::Global { router, .. } => {
            let _ = router.send(PublishGlobal { delivery }).await;
        }
    }
}

impl Session {
    /// Publishes `delivery` to the session's room or router, in order with
    /// those still waiting.
    pub(super) fn publish(&mut self, delivery: Delivery, ctx: &mut WebsocketContext<Self>) {
        if !self.waiting.is_empty() {
            self.waiting.push_back(delivery);
            return;
        }
        if let Offer::Busy(delivery) = offer(&self.route, delivery) {
            self.waiting.push_back(delivery);
            self.held.close();
            self.hand_over_next(ctx);
        }
    }

    /// Hands the oldest waiting message over, then the next, then reopens the
    /// session's gate. A message stays in `waiting` until the route took it,
    /// so a later one cannot overtake it.
    fn hand_over_next(&mut self, ctx: &mut WebsocketContext<Self>) {
        let Some(delivery) = self.waiting.front().cloned() else {
            self.held.open();
            return;
        };
        let send = hand_over(self.route.clone(), delivery);
        ctx.spawn(send.into_actor(self).map(|(), act, ctx| {
            act.waiting.pop_front();
            act.hand_over_next(ctx);
        }));
    }
}
