//! Broker: one per process. Owns the registry of rooms and sessions, per-tenant
//! connection caps, the global-scope routers (which it keeps told of the
//! listener's rooms), admin queries and commands, and each
//! session's deadline (token expiry or session timeout, whichever is earlier),
//! kept in one ordered queue served by a single timer (`deadlines.rs`).
//!
//! In a cluster it also drives the [`Backplane`]: it tells it about rooms and
//! sessions, asks it for tenant slots before a join completes, and merges other nodes' answers into the admin
//! replies (see `admin.rs` and `remote.rs`). Every backplane round trip runs as a
//! future outside message handling, so the Broker keeps serving while it waits.

mod admin;
mod channels;
mod deadlines;
mod load;
pub mod messages;
mod origin;
mod remote;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::backplane::{Backplane, LocalBackplane, SlotDecision};
use crate::close::CloseCode;
use crate::counters::{Counters, SessionStats};
use crate::gate::Gate;
use crate::ids::{ListenerId, Scope, SessionId, TenantId};
use crate::info::SessionInfo;
use crate::outbox::Outbox;
use crate::policy::{ListenerPolicy, OnTokenExpiry};
use crate::room::{AddMember, RemoveMember, StopRoom, TenantRoom, DEFAULT_SLOW_CONSUMER_TIMEOUT};
use crate::router::{GlobalRouter, RouterRoom};
use deadlines::{DeadlineKey, Deadlines};

pub use channels::{
    ChannelDetail, ChannelSpaceKey, ChannelStreamStatus, ListChannelSpace, PublishToChannel,
    ReadChannelHistory, SessionSubscription, SubscriptionChange, TokenRefreshed,
};
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
    /// Arbiters of the global listeners' routers, one each in listener
    /// order, so a global flood does not share a thread with rooms; missing
    /// ones are taken from `arbiters` like a room's.
    pub router_arbiters: Vec<ArbiterHandle>,
    /// Other nodes of the cluster ([`LocalBackplane`] for a single node).
    pub backplane: Arc<dyn Backplane>,
    /// How long a member with a full queue may hold its room back before it
    /// is closed with 4009 (`limits.slow_consumer_timeout_ms`).
    pub slow_consumer_timeout: Duration,
    /// Tenants' `max_channels`, read by their channel spaces
    /// ([`crate::channels::NoChannelLimits`] when no tenant has one).
    pub channel_limits: Arc<dyn crate::channels::TenantChannelLimits>,
    /// How often hubs with history prune and report idle (tests shorten it).
    pub history_prune: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            room_queue: 4096,
            broker_queue: 4096,
            max_sessions: 0,
            arbiters: Vec::new(),
            router_arbiters: Vec::new(),
            backplane: Arc::new(LocalBackplane),
            slow_consumer_timeout: DEFAULT_SLOW_CONSUMER_TIMEOUT,
            channel_limits: Arc::new(crate::channels::NoChannelLimits),
            history_prune: crate::channels::history::PRUNE_EVERY,
        }
    }
}

#[derive(Debug)]
struct RoomEntry {
    addr: Addr<TenantRoom>,
    gate: Gate,
    members: usize,
    /// The tenant's channel hub (tenant-scope channels listeners only).
    hub: Option<crate::channels::hub::HubRoute>,
}

#[derive(Debug)]
struct SessionEntry {
    info: Arc<SessionInfo>,
    outbox: Outbox,
    stats: Arc<SessionStats>,
    /// Its deadline in the Broker's queue, if it has one.
    timer: Option<DeadlineKey>,
    /// The cluster tenant slot it holds (released on leave).
    slot: Option<Slot>,
}

/// Which cluster-wide connection slot a session holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// One of `(listener, tenant)`'s `max_connections_per_tenant`.
    Listener,
    /// One of the tenant's `max_connections` (all listeners).
    Tenant,
}

/// The process-wide registry and router.
pub struct Broker {
    policies: Vec<Arc<ListenerPolicy>>,
    counters: Arc<Counters>,
    config: BrokerConfig,
    rooms: HashMap<(ListenerId, TenantId), RoomEntry>,
    /// The router of each global-scope listener, by listener id.
    routers: Vec<Option<(Addr<GlobalRouter>, Gate)>>,
    /// The channel hub of each global-scope channels listener, by listener id.
    global_hubs: Vec<Option<crate::channels::hub::HubRoute>>,
    /// Hubs with history of tenants that have no room on this node: they
    /// keep their streams until they go idle (see `broker::channels`).
    parked_hubs: HashMap<(ListenerId, TenantId), crate::channels::hub::HubRoute>,
    /// This Broker, for the hubs it starts to report to.
    me: Option<actix::WeakAddr<Broker>>,
    /// Joins waiting for the backplane, per (listener, tenant): they count
    /// against the local tenant cap and keep the tenant's subscription open.
    pending: HashMap<(ListenerId, TenantId), usize>,
    sessions: HashMap<SessionId, SessionEntry>,
    /// Sessions' deadlines and the code to close each with.
    deadlines: Deadlines<(SessionId, CloseCode)>,
    /// The one timer serving `deadlines`: when it fires, and its handle.
    alarm: Option<(Instant, SpawnHandle)>,
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
            routers: Vec::new(),
            global_hubs: Vec::new(),
            parked_hubs: HashMap::new(),
            me: None,
            pending: HashMap::new(),
            sessions: HashMap::new(),
            deadlines: Deadlines::default(),
            alarm: None,
            next_arbiter: 0,
            shutting_down: false,
            empty_waiters: Vec::new(),
        }
    }

    fn policy(&self, id: ListenerId) -> Option<&Arc<ListenerPolicy>> {
        self.policies.get(usize::from(id.0))
    }

    fn backplane(&self) -> &Arc<dyn Backplane> {
        &self.config.backplane
    }

    /// The next arbiter to start a room or router in (`None`: the Broker's).
    fn next_arbiter(&mut self) -> Option<ArbiterHandle> {
        let arbiters = &self.config.arbiters;
        let arbiter =
            (!arbiters.is_empty()).then(|| arbiters[self.next_arbiter % arbiters.len()].clone());
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        arbiter
    }

    fn start_room(&mut self, listener: ListenerId, tenant: TenantId) -> RoomEntry {
        let room = TenantRoom::new(
            listener,
            tenant.clone(),
            self.counters.clone(),
            self.config.room_queue,
        )
        .with_backplane(self.config.backplane.clone())
        .with_slow_consumer_timeout(self.config.slow_consumer_timeout);
        let gate = room.gate();
        let arbiter = self.next_arbiter();
        let addr = match &arbiter {
            None => room.start(),
            Some(arbiter) => TenantRoom::start_in_arbiter(arbiter, |_| room),
        };
        let hub = self.tenant_hub(listener, &tenant, arbiter.as_ref());
        self.tell_router(listener, tenant, Some((addr.clone(), gate.clone())));
        RoomEntry {
            addr,
            gate,
            members: 0,
            hub,
        }
    }

    /// Keeps a global listener's router told of its rooms.
    fn tell_router(
        &self,
        listener: ListenerId,
        tenant: TenantId,
        room: Option<(Addr<TenantRoom>, Gate)>,
    ) {
        if let Some(Some((router, _))) = self.routers.get(usize::from(listener.0)) {
            router.do_send(RouterRoom { tenant, room });
        }
    }

    /// One router per global-scope listener, each on its own arbiter when
    /// one was given.
    fn start_routers(&mut self) {
        let policies = self.policies.clone();
        let mut own = self.config.router_arbiters.clone().into_iter();
        self.routers = policies
            .iter()
            .map(|p| {
                (p.scope == Scope::Global).then(|| {
                    let router = GlobalRouter::new(
                        p.id,
                        self.config.backplane.clone(),
                        self.config.room_queue,
                    );
                    let gate = router.gate();
                    let addr = match own.next().or_else(|| self.next_arbiter()) {
                        None => router.start(),
                        Some(arbiter) => GlobalRouter::start_in_arbiter(&arbiter, |_| router),
                    };
                    (addr, gate)
                })
            })
            .collect();
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

    /// Makes sure the timer fires no later than the earliest deadline.
    fn arm_alarm(&mut self, ctx: &mut Context<Self>) {
        let Some(next) = self.deadlines.earliest() else {
            return;
        };
        if let Some((at, handle)) = self.alarm {
            if at <= next {
                return;
            }
            ctx.cancel_future(handle);
        }
        let wait = next.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(wait, |act, ctx| {
            act.alarm = None;
            act.close_overdue(ctx);
        });
        self.alarm = Some((next, handle));
    }

    /// Closes every session whose deadline has passed, then re-arms the timer.
    fn close_overdue(&mut self, ctx: &mut Context<Self>) {
        for (id, code) in self.deadlines.pop_due(Instant::now()) {
            if let Some(entry) = self.sessions.get_mut(&id) {
                entry.timer = None;
                log::info!(
                    "session deadline reached tenant={} session={} code={}",
                    entry.info.tenant,
                    id,
                    code.code()
                );
                entry.outbox.close(code);
            }
        }
        self.arm_alarm(ctx);
    }

    fn leave(&mut self, id: &SessionId) {
        let Some(entry) = self.sessions.remove(id) else {
            return;
        };
        if let Some(key) = entry.timer {
            self.deadlines.remove(key);
        }
        let listener = entry.info.listener;
        let key = (listener, entry.info.tenant.clone());
        if let Some(room) = self.rooms.get_mut(&key) {
            room.members -= 1;
            if room.members == 0 {
                room.addr.do_send(StopRoom);
                let hub = room.hub.take();
                self.rooms.remove(&key);
                self.retire_hub(&key, hub);
                self.tell_router(listener, entry.info.tenant.clone(), None);
                self.close_subscription(&key);
            } else {
                room.addr.do_send(RemoveMember { id: id.clone() });
            }
        }
        let backplane = self.backplane();
        backplane.session_left(&entry.info);
        release(backplane.as_ref(), entry.slot, listener, &entry.info.tenant);
        log::debug!("session left tenant={} session={}", entry.info.tenant, id);
        if self.sessions.is_empty() {
            for w in self.empty_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

impl Broker {
    /// Stops receiving a tenant's messages from other nodes once this node has
    /// neither a room nor a join in progress for it.
    fn close_subscription(&self, key: &(ListenerId, TenantId)) {
        if !self.rooms.contains_key(key) && !self.pending.contains_key(key) {
            self.backplane().room_closed(key.0, &key.1);
        }
    }

    /// Sessions of `tenant` on this node, every listener, joins in progress included.
    fn tenant_members(&self, tenant: &TenantId) -> usize {
        self.policies
            .iter()
            .map(|p| {
                let key = (p.id, tenant.clone());
                self.rooms.get(&key).map_or(0, |r| r.members)
                    + self.pending.get(&key).copied().unwrap_or(0)
            })
            .sum()
    }

    /// Checks that do not need the cluster; returns the listener's policy.
    fn admit(&self, msg: &Join) -> Result<Arc<ListenerPolicy>, JoinError> {
        let info = &msg.info;
        if self.shutting_down {
            return Err(JoinError::ShuttingDown);
        }
        let policy = self
            .policy(info.listener)
            .cloned()
            .ok_or(JoinError::UnknownListener(info.listener))?;
        if self.sessions.contains_key(&info.id) {
            return Err(JoinError::DuplicateId);
        }
        let waiting: usize = self.pending.values().sum();
        if self.config.max_sessions > 0 && self.sessions.len() + waiting >= self.config.max_sessions
        {
            return Err(JoinError::ServerFull);
        }
        let full = match msg.tenant_cap {
            Some(cap) => cap > 0 && self.tenant_members(&info.tenant) >= cap,
            None => {
                let key = (info.listener, info.tenant.clone());
                let members = self.rooms.get(&key).map_or(0, |r| r.members)
                    + self.pending.get(&key).copied().unwrap_or(0);
                let cap = policy.max_connections_per_tenant;
                cap > 0 && members >= cap
            }
        };
        if full {
            return Err(JoinError::TenantLimit);
        }
        Ok(policy)
    }

    /// Registers an admitted session and joins it to its room.
    fn complete_join(
        &mut self,
        msg: Join,
        policy: &ListenerPolicy,
        slot: Option<Slot>,
        ctx: &mut Context<Self>,
    ) -> Joined {
        let info = msg.info;
        let key = (info.listener, info.tenant.clone());
        if !self.rooms.contains_key(&key) {
            let entry = self.start_room(info.listener, info.tenant.clone());
            self.rooms.insert(key.clone(), entry);
        }
        let entry = self.rooms.get_mut(&key).expect("inserted above");
        entry.members += 1;
        let (room, gate) = (entry.addr.clone(), entry.gate.clone());
        room.do_send(AddMember {
            tenant: info.tenant.clone(),
            id: info.id.clone(),
            outbox: msg.outbox.clone(),
        });

        let timer = Self::deadline(policy, &info).map(|(at, code)| {
            let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
            let key = self
                .deadlines
                .insert(Instant::now() + wait, (info.id.clone(), code));
            self.arm_alarm(ctx);
            key
        });

        self.backplane().session_joined(&info);
        log::debug!("session joined tenant={} session={}", info.tenant, info.id);
        self.sessions.insert(
            info.id.clone(),
            SessionEntry {
                info: info.clone(),
                outbox: msg.outbox,
                stats: msg.stats,
                timer,
                slot,
            },
        );
        let route = match policy.scope {
            Scope::Session => Route::Own,
            Scope::Tenant => Route::Room { room, gate },
            Scope::Global => match self.routers.get(usize::from(info.listener.0)) {
                Some(Some((router, gate))) => Route::Global {
                    router: router.clone(),
                    gate: gate.clone(),
                },
                // Routers are started with the Broker for every global listener.
                _ => unreachable!("no router for global listener {:?}", info.listener),
            },
        };
        let channels = self.session_hub(info.listener, &info.tenant);
        Joined { route, channels }
    }

    /// The cluster part of a join: the tenant's subscription (when this node has
    /// no room for it yet) and a cluster-wide slot (when the listener is capped),
    /// awaited outside message handling; the join completes afterwards.
    fn join_via_cluster(
        &mut self,
        msg: Join,
        policy: Arc<ListenerPolicy>,
    ) -> ActorResponse<Self, Result<Joined, JoinError>> {
        let key = (msg.info.listener, msg.info.tenant.clone());
        let backplane = self.backplane().clone();
        let subscribed =
            (!self.rooms.contains_key(&key)).then(|| backplane.room_opened(key.0, &key.1));
        let (kind, slot) = match msg.tenant_cap {
            Some(cap) => (
                Slot::Tenant,
                (cap > 0).then(|| backplane.acquire_tenant_slot(&key.1, cap)),
            ),
            None => {
                let cap = policy.max_connections_per_tenant;
                (
                    Slot::Listener,
                    (cap > 0).then(|| backplane.acquire_slot(key.0, &key.1, cap)),
                )
            }
        };
        *self.pending.entry(key.clone()).or_default() += 1;
        let wait = async move {
            if let Some(s) = subscribed {
                s.await;
            }
            match slot {
                Some(s) => Some(s.await),
                None => None,
            }
        };
        ActorResponse::r#async(wait.into_actor(self).map(move |slot, act, ctx| {
            if let Some(n) = act.pending.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    act.pending.remove(&key);
                }
            }
            let held = matches!(
                slot,
                Some(SlotDecision::Granted | SlotDecision::Unavailable)
            )
            .then_some(kind);
            let refused = if slot == Some(SlotDecision::Full) {
                Some(JoinError::TenantLimit)
            } else if act.shutting_down {
                Some(JoinError::ShuttingDown)
            } else if msg.outbox.is_closed() {
                // The upgrade was abandoned while the cluster answered.
                Some(JoinError::ShuttingDown)
            } else if act.sessions.contains_key(&msg.info.id) {
                Some(JoinError::DuplicateId)
            } else {
                None
            };
            if let Some(e) = refused {
                release(act.backplane().as_ref(), held, key.0, &key.1);
                act.close_subscription(&key);
                return Err(e);
            }
            Ok(act.complete_join(msg, &policy, held, ctx))
        }))
    }
}

/// Gives back the cluster slot a session held, if any.
fn release(backplane: &dyn Backplane, slot: Option<Slot>, listener: ListenerId, tenant: &TenantId) {
    match slot {
        Some(Slot::Listener) => backplane.release_slot(listener, tenant),
        Some(Slot::Tenant) => backplane.release_tenant_slot(tenant),
        None => {}
    }
}

impl Actor for Broker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.config.broker_queue);
        self.me = Some(ctx.address().downgrade());
        self.start_routers();
        self.start_global_hubs();
    }
}

impl Handler<Join> for Broker {
    type Result = ActorResponse<Self, Result<Joined, JoinError>>;

    fn handle(&mut self, msg: Join, ctx: &mut Self::Context) -> Self::Result {
        let policy = match self.admit(&msg) {
            Ok(p) => p,
            Err(e) => return ActorResponse::reply(Err(e)),
        };
        if self.backplane().is_clustered() {
            return self.join_via_cluster(msg, policy);
        }
        ActorResponse::reply(Ok(self.complete_join(msg, &policy, None, ctx)))
    }
}

impl Handler<SessionClosed> for Broker {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, _ctx: &mut Self::Context) {
        self.leave(&msg.id);
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
            timers: self.deadlines.len(),
        })
    }
}

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod history_tests;
#[cfg(test)]
mod tests;
