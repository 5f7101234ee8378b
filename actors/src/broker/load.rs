//! This node's live load, for Prometheus scrapes: connections and rooms per
//! listener and, on request, the tenants with the most connections. Answered
//! from the Broker's registry only (never cluster-wide: every node is scraped
//! on its own), allocating only for the rows it returns.

use std::cmp::Ordering;

use actix::prelude::*;

use super::messages::{GetLoad, ListenerLoad, Load, TenantView};
use super::Broker;
use crate::ids::{ListenerId, TenantId};

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
