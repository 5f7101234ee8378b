//! This node's live load, for Prometheus scrapes: connections and rooms per
//! listener and, on request, connections per tenant. Answered from the Broker's
//! registry only (never cluster-wide: every node is scraped on its own).

use actix::prelude::*;

use super::messages::TenantView;
use super::Broker;

/// Asks the Broker for this node's [`Load`].
#[derive(Message, Debug, Clone, Copy, Default)]
#[rtype(result = "Load")]
pub struct GetLoad {
    /// Also list connections per (listener, tenant).
    pub tenants: bool,
}

/// One listener's live figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLoad {
    /// Listener path.
    pub path: String,
    /// Open connections.
    pub connections: usize,
    /// Live rooms (tenants with at least one connection).
    pub rooms: usize,
}

/// Reply to [`GetLoad`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    /// Every listener, by id.
    pub listeners: Vec<ListenerLoad>,
    /// Connections per (listener, tenant); empty unless asked for.
    pub tenants: Vec<TenantView>,
}

impl Handler<GetLoad> for Broker {
    type Result = MessageResult<GetLoad>;

    fn handle(&mut self, msg: GetLoad, _ctx: &mut Self::Context) -> Self::Result {
        let mut listeners: Vec<ListenerLoad> = self
            .policies
            .iter()
            .map(|p| ListenerLoad {
                path: p.path.to_string(),
                connections: 0,
                rooms: 0,
            })
            .collect();
        for ((listener, _), room) in &self.rooms {
            if let Some(l) = listeners.get_mut(usize::from(listener.0)) {
                l.connections += room.members;
                l.rooms += 1;
            }
        }
        let tenants = if msg.tenants {
            self.local_tenants()
        } else {
            Vec::new()
        };
        MessageResult(Load { listeners, tenants })
    }
}
