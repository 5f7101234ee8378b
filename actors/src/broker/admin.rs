//! Broker handlers for operator queries and commands (the admin API's backend).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use actix::prelude::*;

use crate::counters::DropReason;
use crate::room::Fanout;

use super::messages::*;
use super::{Broker, SessionEntry};

impl SessionEntry {
    fn view(&self) -> SessionView {
        let info = &self.info;
        SessionView {
            id: info.id.to_string(),
            listener: info.listener_path.to_string(),
            tenant: info.tenant.to_string(),
            subject: info.subject.clone(),
            remote: info.remote.map(|r| r.to_string()),
            connected_at: unix_secs(info.connected_at),
            expires_at: info.expires_at.map(unix_secs),
            messages_in: self.stats.messages_in.load(Ordering::Relaxed),
            messages_out: self.stats.messages_out.load(Ordering::Relaxed),
        }
    }
}

impl Handler<Publish> for Broker {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) -> Self::Result {
        let Publish {
            listener,
            target,
            delivery,
        } = msg;
        let rooms: Vec<_> = match target {
            Target::Session(id) => {
                let n = match self.sessions.get(&id) {
                    Some(e) if e.info.listener == listener => match e.outbox.push(delivery) {
                        Ok(()) => 1,
                        Err(crate::outbox::PushError::Full) => {
                            self.counters.add_dropped(DropReason::SlowConsumer);
                            e.outbox.close(crate::close::CloseCode::SlowConsumer);
                            0
                        }
                        Err(crate::outbox::PushError::Closed) => 0,
                    },
                    _ => 0,
                };
                if n > 0 {
                    self.counters
                        .listener(listener)
                        .deliveries
                        .fetch_add(1, Ordering::Relaxed);
                }
                return Box::pin(async move { n });
            }
            Target::Tenant(tenant) => self
                .rooms
                .get(&(listener, tenant))
                .map(|r| r.addr.clone())
                .into_iter()
                .collect(),
            Target::Global => self
                .rooms
                .iter()
                .filter(|((l, _), _)| *l == listener)
                .map(|(_, r)| r.addr.clone())
                .collect(),
        };
        Box::pin(async move {
            let mut total = 0;
            for room in rooms {
                total += room
                    .send(Fanout {
                        delivery: delivery.clone(),
                    })
                    .await
                    .unwrap_or(0);
            }
            total
        })
    }
}

impl Handler<GetStats> for Broker {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _msg: GetStats, _ctx: &mut Self::Context) -> Self::Result {
        let tenants: HashSet<_> = self.rooms.keys().map(|(_, t)| t).collect();
        MessageResult(StatsView {
            connections: self.sessions.len(),
            tenants: tenants.len(),
            messages_in: self.counters.messages_in(),
            messages_out: self.counters.messages_out(),
            dropped: self.counters.dropped_total(),
            uptime_s: self.counters.uptime_s(),
        })
    }
}

impl Handler<ListTenants> for Broker {
    type Result = MessageResult<ListTenants>;

    fn handle(&mut self, _msg: ListTenants, _ctx: &mut Self::Context) -> Self::Result {
        let mut rows: Vec<TenantView> = self
            .rooms
            .iter()
            .map(|((listener, tenant), room)| TenantView {
                listener: self
                    .policy(*listener)
                    .map(|p| p.path.to_string())
                    .unwrap_or_default(),
                tenant: tenant.to_string(),
                connections: room.members,
            })
            .collect();
        rows.sort_by(|a, b| (&a.listener, &a.tenant).cmp(&(&b.listener, &b.tenant)));
        MessageResult(rows)
    }
}

impl Handler<ListSessions> for Broker {
    type Result = MessageResult<ListSessions>;

    fn handle(&mut self, msg: ListSessions, _ctx: &mut Self::Context) -> Self::Result {
        let mut rows: Vec<SessionView> = self
            .sessions
            .values()
            .filter(|e| e.info.tenant == msg.tenant)
            .map(SessionEntry::view)
            .collect();
        rows.sort_by(|a, b| (a.connected_at, &a.id).cmp(&(b.connected_at, &b.id)));
        MessageResult(rows)
    }
}

impl Handler<GetSession> for Broker {
    type Result = MessageResult<GetSession>;

    fn handle(&mut self, msg: GetSession, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.sessions.get(&msg.id).map(SessionEntry::view))
    }
}

impl Handler<Kick> for Broker {
    type Result = bool;

    fn handle(&mut self, msg: Kick, _ctx: &mut Self::Context) -> bool {
        match self.sessions.get(&msg.id) {
            Some(e) => {
                log::info!("session kicked tenant={} session={}", e.info.tenant, msg.id);
                e.outbox.close(msg.code);
                true
            }
            None => false,
        }
    }
}

impl Handler<KickTenant> for Broker {
    type Result = usize;

    fn handle(&mut self, msg: KickTenant, _ctx: &mut Self::Context) -> usize {
        let mut n = 0;
        for e in self.sessions.values() {
            if e.info.tenant == msg.tenant && msg.listener.is_none_or(|l| l == e.info.listener) {
                e.outbox.close(msg.code);
                n += 1;
            }
        }
        log::info!("tenant kicked tenant={} sessions={}", msg.tenant, n);
        n
    }
}
