//! This node's live load, for Prometheus scrapes: connections and rooms per
//! listener and, on request, the tenants with the most connections. Answered
//! from the Broker's registry only (never cluster-wide: every node is scraped
//! on its own), allocating only for the rows it returns.

use std::cmp::Ordering;

use actix::prelude::*;

use super::messages::TenantView;
use super::Broker;
use crate::ids::{ListenerId, TenantId};

/// Asks the Broker for this node's [`Load`].
#[derive(Message, Debug, Clone, Copy, Default)]
#[rtype(result = "Load")]
pub struct GetLoad {
    /// `Some(n)`: also the `n` (listener, tenant) pairs with the most
    /// connections (ties by listener, then tenant, so the choice is stable).
    pub top_tenants: Option<usize>,
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
    /// Connections of the tenants left out of [`Load::tenants`] (0 unless
    /// tenants were asked for).
    pub other_tenants: usize,
}

/// Reply to [`GetLoad`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    /// Every listener, by id.
    pub listeners: Vec<ListenerLoad>,
    /// The busiest (listener, tenant) pairs, busiest first; empty unless asked.
    pub tenants: Vec<TenantView>,
}

type Row<'a> = (&'a (ListenerId, TenantId), usize);

/// Busiest first, then by listener and tenant.
fn busiest_first(a: &Row, b: &Row) -> Ordering {
    b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0))
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
                other_tenants: 0,
            })
            .collect();
        for ((listener, _), room) in &self.rooms {
            if let Some(l) = listeners.get_mut(usize::from(listener.0)) {
                l.connections += room.members;
                l.rooms += 1;
            }
        }
        let Some(n) = msg.top_tenants else {
            return MessageResult(Load {
                listeners,
                tenants: Vec::new(),
            });
        };
        let mut rows: Vec<Row> = self.rooms.iter().map(|(k, r)| (k, r.members)).collect();
        if rows.len() > n {
            if n > 0 {
                rows.select_nth_unstable_by(n - 1, busiest_first);
            }
            for ((listener, _), members) in rows.split_off(n) {
                if let Some(l) = listeners.get_mut(usize::from(listener.0)) {
                    l.other_tenants += members;
                }
            }
        }
        rows.sort_unstable_by(busiest_first);
        let tenants = rows
            .into_iter()
            .map(|((listener, tenant), connections)| TenantView {
                listener: listeners
                    .get(usize::from(listener.0))
                    .map(|l| l.path.clone())
                    .unwrap_or_default(),
                tenant: tenant.to_string(),
                connections,
            })
            .collect();
        MessageResult(Load { listeners, tenants })
    }
}
