//! Broker: one per process. Owns the registry of rooms and sessions, per-tenant
//! connection caps, global fan-out, admin queries and commands, and each
//! session's deadline timer (token expiry or session timeout, whichever is
//! earlier, as one cancellable `SpawnHandle`).

mod admin;
pub mod messages;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::close::CloseCode;
use crate::counters::{Counters, DropReason, SessionStats};
use crate::ids::{ListenerId, Scope, SessionId, TenantId};
use crate::info::SessionInfo;
use crate::outbox::Outbox;
use crate::policy::{ListenerPolicy, OnTokenExpiry};
use crate::room::{AddMember, Fanout, RemoveMember, StopRoom, TenantRoom};

pub use messages::*;

/// Broker-wide settings (per-listener ones are in each [`ListenerPolicy`]).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Mailbox capacity of each room (messages waiting to be fanned out).
    pub room_queue: usize,
    /// Mailbox capacity of the Broker itself.
    pub broker_queue: usize,
    /// Process-wide cap on sessions; 0 = unlimited.
    pub max_sessions: usize,
    /// Arbiters rooms are spread over (round-robin); empty = the Broker's own.
    pub arbiters: Vec<ArbiterHandle>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            room_queue: 4096,
            broker_queue: 4096,
            max_sessions: 0,
            arbiters: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct RoomEntry {
    addr: Addr<TenantRoom>,
    members: usize,
}

#[derive(Debug)]
struct SessionEntry {
    info: Arc<SessionInfo>,
    outbox: Outbox,
    stats: Arc<SessionStats>,
    timer: Option<SpawnHandle>,
}

/// The process-wide registry and router.
pub struct Broker {
    policies: Vec<Arc<ListenerPolicy>>,
    counters: Arc<Counters>,
    config: BrokerConfig,
    rooms: HashMap<(ListenerId, TenantId), RoomEntry>,
    sessions: HashMap<SessionId, SessionEntry>,
    next_arbiter: usize,
    shutting_down: bool,
    empty_waiters: Vec<oneshot::Sender<()>>,
}

impl Broker {
    /// A broker for the given listeners (indexed by [`ListenerId`]).
    pub fn new(
        policies: Vec<Arc<ListenerPolicy>>,
        counters: Arc<Counters>,
        config: BrokerConfig,
    ) -> Self {
        Self {
            policies,
            counters,
            config,
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            next_arbiter: 0,
            shutting_down: false,
            empty_waiters: Vec::new(),
        }
    }

    fn policy(&self, id: ListenerId) -> Option<&Arc<ListenerPolicy>> {
        self.policies.get(usize::from(id.0))
    }

    fn start_room(&mut self, listener: ListenerId, tenant: TenantId) -> Addr<TenantRoom> {
        let room = TenantRoom::new(
            listener,
            tenant,
            self.counters.clone(),
            self.config.room_queue,
        );
        if self.config.arbiters.is_empty() {
            room.start()
        } else {
            let arbiter = &self.config.arbiters[self.next_arbiter % self.config.arbiters.len()];
            self.next_arbiter = self.next_arbiter.wrapping_add(1);
            TenantRoom::start_in_arbiter(arbiter, |_| room)
        }
    }

    /// The earliest deadline of a session and the code to close with then.
    fn deadline(policy: &ListenerPolicy, info: &SessionInfo) -> Option<(SystemTime, CloseCode)> {
        let expiry = match policy.on_token_expiry {
            OnTokenExpiry::Disconnect => info.expires_at.map(|t| (t, CloseCode::TokenExpired)),
            OnTokenExpiry::AllowStale => None,
        };
        let timeout = policy
            .session_timeout
            .map(|d| (info.connected_at + d, CloseCode::SessionTimeout));
        match (expiry, timeout) {
            (Some(e), Some(t)) => Some(if e.0 <= t.0 { e } else { t }),
            (e, t) => e.or(t),
        }
    }

    fn leave(&mut self, id: &SessionId) {
        let Some(entry) = self.sessions.remove(id) else {
            return;
        };
        let listener = entry.info.listener;
        self.counters
            .listener(listener)
            .connections
            .fetch_sub(1, Ordering::Relaxed);
        let key = (listener, entry.info.tenant.clone());
        if let Some(room) = self.rooms.get_mut(&key) {
            room.members -= 1;
            if room.members == 0 {
                room.addr.do_send(StopRoom);
                self.rooms.remove(&key);
            } else {
                room.addr.do_send(RemoveMember { id: id.clone() });
            }
        }
        log::debug!("session left tenant={} session={}", entry.info.tenant, id);
        if self.sessions.is_empty() {
            for w in self.empty_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

impl Actor for Broker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.config.broker_queue);
    }
}

impl Handler<Join> for Broker {
    type Result = Result<Joined, JoinError>;

    fn handle(&mut self, msg: Join, ctx: &mut Self::Context) -> Self::Result {
        if self.shutting_down {
            return Err(JoinError::ShuttingDown);
        }
        let info = msg.info;
        let Some(policy) = self.policy(info.listener).cloned() else {
            // The server builds policies and broker from the same table.
            return Err(JoinError::ShuttingDown);
        };
        if self.sessions.contains_key(&info.id) {
            return Err(JoinError::DuplicateId);
        }
        if self.config.max_sessions > 0 && self.sessions.len() >= self.config.max_sessions {
            return Err(JoinError::ServerFull);
        }
        let key = (info.listener, info.tenant.clone());
        let members = self.rooms.get(&key).map_or(0, |r| r.members);
        if policy.max_connections_per_tenant > 0 && members >= policy.max_connections_per_tenant {
            return Err(JoinError::TenantLimit);
        }
        let room = match self.rooms.get_mut(&key) {
            Some(r) => {
                r.members += 1;
                r.addr.clone()
            }
            None => {
                let addr = self.start_room(info.listener, info.tenant.clone());
                self.rooms.insert(
                    key,
                    RoomEntry {
                        addr: addr.clone(),
                        members: 1,
                    },
                );
                addr
            }
        };
        room.do_send(AddMember {
            tenant: info.tenant.clone(),
            id: info.id.clone(),
            outbox: msg.outbox.clone(),
        });

        let timer = Self::deadline(&policy, &info).map(|(at, code)| {
            let wait = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            let id = info.id.clone();
            ctx.run_later(wait, move |act, _| {
                if let Some(entry) = act.sessions.get_mut(&id) {
                    entry.timer = None;
                    log::info!(
                        "session deadline reached tenant={} session={} code={}",
                        entry.info.tenant,
                        id,
                        code.code()
                    );
                    entry.outbox.close(code);
                }
            })
        });

        self.counters
            .listener(info.listener)
            .connections
            .fetch_add(1, Ordering::Relaxed);
        log::debug!("session joined tenant={} session={}", info.tenant, info.id);
        self.sessions.insert(
            info.id.clone(),
            SessionEntry {
                info: info.clone(),
                outbox: msg.outbox,
                stats: msg.stats,
                timer,
            },
        );
        let route = match policy.scope {
            Scope::Session => Route::Own,
            Scope::Tenant => Route::Room(room),
            Scope::Global => Route::Global(ctx.address()),
        };
        Ok(Joined { route })
    }
}

impl Handler<SessionClosed> for Broker {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, ctx: &mut Self::Context) {
        if let Some(entry) = self.sessions.get_mut(&msg.id) {
            if let Some(timer) = entry.timer.take() {
                ctx.cancel_future(timer);
            }
        }
        self.leave(&msg.id);
    }
}

impl Handler<PublishGlobal> for Broker {
    type Result = ();

    fn handle(&mut self, msg: PublishGlobal, _ctx: &mut Self::Context) {
        for ((listener, _), room) in &self.rooms {
            if *listener == msg.listener {
                let fanout = Fanout {
                    delivery: msg.delivery.clone(),
                };
                if let Err(SendError::Full(_)) = room.addr.try_send(fanout) {
                    self.counters.add_dropped(DropReason::RoomBacklog);
                }
            }
        }
    }
}

impl Handler<Shutdown> for Broker {
    type Result = MessageResult<Shutdown>;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        let (tx, rx) = oneshot::channel();
        for entry in self.sessions.values() {
            entry.outbox.close(CloseCode::GoingAway);
        }
        if self.sessions.is_empty() {
            let _ = tx.send(());
        } else {
            self.empty_waiters.push(tx);
        }
        MessageResult(rx)
    }
}

impl Handler<GetSnapshot> for Broker {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _msg: GetSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(Snapshot {
            sessions: self.sessions.len(),
            rooms: self.rooms.len(),
            timers: self.sessions.values().filter(|e| e.timer.is_some()).count(),
        })
    }
}

#[cfg(test)]
mod tests;
