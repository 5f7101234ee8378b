//! Broker handlers for operator queries and commands (the admin API's backend).
//!
//! Each handler answers from this node's state; in a cluster it also asks the
//! other nodes through the backplane (outside message handling) and merges their
//! answers, so the admin routes get cluster-wide results from the same messages.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;

use actix::prelude::*;
use futures_core::future::BoxFuture;

use crate::backplane::{NodeReply, NodeRequest, NodeStats, WireDelivery, WireTarget};
use crate::close::CloseCode;
use crate::counters::DropReason;
use crate::ids::{ListenerId, SessionId, TenantId};
use crate::outbox::PushError;
use crate::room::LocalFanout;

use super::messages::*;
use super::{Broker, SessionEntry};
use crate::views::unix_secs;

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

impl Broker {
    /// This node's sessions matching `keep`, sorted by connection time.
    fn local_sessions(&self, keep: impl Fn(&SessionEntry) -> bool) -> Vec<SessionView> {
        let mut rows: Vec<SessionView> = self
            .sessions
            .values()
            .filter(|e| keep(e))
            .map(SessionEntry::view)
            .collect();
        sort_sessions(&mut rows);
        rows
    }

    pub(super) fn local_stats(&self) -> NodeStats {
        let tenants: HashSet<_> = self.rooms.keys().map(|(_, t)| t.to_string()).collect();
        NodeStats {
            connections: self.sessions.len(),
            tenants: tenants.into_iter().collect(),
            messages_in: self.counters.messages_in(),
            messages_out: self.counters.messages_out(),
            dropped: self.counters.dropped_total(),
        }
    }

    pub(super) fn local_tenants(&self) -> Vec<TenantView> {
        self.rooms
            .iter()
            .map(|((listener, tenant), room)| TenantView {
                listener: self
                    .policy(*listener)
                    .map(|p| p.path.to_string())
                    .unwrap_or_default(),
                tenant: tenant.to_string(),
                connections: room.members,
            })
            .collect()
    }

    pub(super) fn local_tenant_sessions(&self, tenant: &TenantId) -> Vec<SessionView> {
        self.local_sessions(|e| &e.info.tenant == tenant)
    }

    pub(super) fn local_session(&self, id: &SessionId) -> Option<SessionView> {
        self.sessions.get(id).map(SessionEntry::view)
    }

    pub(super) fn local_kick(&self, id: &SessionId, code: CloseCode) -> bool {
        match self.sessions.get(id) {
            Some(e) => {
                log::info!("session kicked tenant={} session={}", e.info.tenant, id);
                e.outbox.close(code);
                true
            }
            None => false,
        }
    }

    pub(super) fn local_kick_tenant(
        &self,
        tenant: &TenantId,
        listener: Option<ListenerId>,
        subject: Option<&str>,
        code: CloseCode,
    ) -> usize {
        let mut n = 0;
        for e in self.sessions.values() {
            if &e.info.tenant == tenant
                && listener.is_none_or(|l| l == e.info.listener)
                && subject.is_none_or(|s| e.info.subject.as_deref() == Some(s))
            {
                e.outbox.close(code);
                n += 1;
            }
        }
        log::info!("tenant kicked tenant={} sessions={}", tenant, n);
        n
    }

    /// Pushes an admin message into one local session's queue; 1 if it took
    /// it. A full queue is waited for (outside message handling), for
    /// `slow_consumer_timeout` at most; then the session is closed with 4009.
    pub(super) fn local_push(
        &self,
        listener: ListenerId,
        id: &SessionId,
        delivery: crate::delivery::Delivery,
    ) -> BoxFuture<'static, usize> {
        let Some(e) = self
            .sessions
            .get(id)
            .filter(|e| e.info.listener == listener)
        else {
            return Box::pin(async { 0 });
        };
        let outbox = e.outbox.clone();
        let counters = self.counters.clone();
        let timeout = self.config.slow_consumer_timeout;
        Box::pin(async move {
            let pushed = match outbox.push(delivery.clone()) {
                Err(PushError::Full) => {
                    match actix::clock::timeout(timeout, outbox.space(delivery.len())).await {
                        Ok(()) => outbox.push(delivery),
                        Err(_) => Err(PushError::Full),
                    }
                }
                first => first,
            };
            match pushed {
                Ok(()) => {
                    counters.listener(listener).deliveries.add(1);
                    1
                }
                Err(PushError::Full) => {
                    counters.add_dropped(DropReason::SlowConsumer);
                    outbox.close(CloseCode::SlowConsumer);
                    0
                }
                Err(PushError::Closed) => 0,
            }
        })
    }

    /// Delivers an admin message to local rooms and counts the queues that took
    /// it (waits for the rooms' answers, outside message handling).
    pub(super) fn local_publish(
        &self,
        listener: ListenerId,
        target: &Target,
        delivery: crate::delivery::Delivery,
    ) -> BoxFuture<'static, usize> {
        let rooms: Vec<_> = match target {
            Target::Session(id) => return self.local_push(listener, id, delivery),
            Target::Tenant(tenant) => self
                .rooms
                .get(&(listener, tenant.clone()))
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
                    .send(LocalFanout {
                        delivery: delivery.clone(),
                    })
                    .await
                    .unwrap_or(0);
            }
            total
        })
    }

    /// Runs `local` now and, in a cluster, `request` on `node` (or every other
    /// node), then folds everything with `merge`.
    pub(super) fn cluster_wide<T: 'static>(
        &self,
        node: Option<String>,
        request: NodeRequest,
        local: T,
        merge: fn(T, Vec<NodeReply>) -> T,
    ) -> ResponseFuture<T> {
        if !self.backplane().is_clustered() {
            return Box::pin(async move { local });
        }
        let replies = self.backplane().call(node, request);
        Box::pin(async move { merge(local, replies.await) })
    }

    /// Like [`Broker::cluster_wide`] for one session: asks only the node the
    /// registry names, when the session is not on this node.
    pub(super) fn on_owner<T: 'static>(
        &self,
        id: &SessionId,
        request: NodeRequest,
        local: Option<T>,
        merge: fn(Vec<NodeReply>) -> T,
        missing: T,
    ) -> ResponseFuture<T> {
        if let Some(v) = local {
            return Box::pin(async move { v });
        }
        if !self.backplane().is_clustered() {
            return Box::pin(async move { missing });
        }
        let backplane = self.backplane().clone();
        let owner = backplane.locate(id);
        Box::pin(async move {
            match owner.await {
                Some(node) => merge(backplane.call(Some(node), request).await),
                None => missing,
            }
        })
    }
}

fn sort_sessions(rows: &mut [SessionView]) {
    rows.sort_by(|a, b| (a.connected_at, &a.id).cmp(&(b.connected_at, &b.id)));
}

fn counts(replies: Vec<NodeReply>) -> usize {
    replies
        .into_iter()
        .map(|r| match r {
            NodeReply::Count(n) => n,
            _ => 0,
        })
        .sum()
}

fn sessions(replies: Vec<NodeReply>) -> Vec<SessionView> {
    replies
        .into_iter()
        .flat_map(|r| match r {
            NodeReply::Sessions(v) => v,
            _ => Vec::new(),
        })
        .collect()
}

fn merge_sessions(mut local: Vec<SessionView>, replies: Vec<NodeReply>) -> Vec<SessionView> {
    local.extend(sessions(replies));
    sort_sessions(&mut local);
    local
}

fn merge_tenants(local: Vec<TenantView>, replies: Vec<NodeReply>) -> Vec<TenantView> {
    let mut rows: BTreeMap<(String, String), usize> = BTreeMap::new();
    let remote = replies.into_iter().flat_map(|r| match r {
        NodeReply::Tenants(v) => v,
        _ => Vec::new(),
    });
    for t in local.into_iter().chain(remote) {
        *rows.entry((t.listener, t.tenant)).or_default() += t.connections;
    }
    rows.into_iter()
        .map(|((listener, tenant), connections)| TenantView {
            listener,
            tenant,
            connections,
        })
        .collect()
}

fn merge_stats(mut local: NodeStats, replies: Vec<NodeReply>) -> NodeStats {
    for r in replies {
        if let NodeReply::Stats(s) = r {
            local.connections += s.connections;
            local.messages_in += s.messages_in;
            local.messages_out += s.messages_out;
            local.dropped += s.dropped;
            local.tenants.extend(s.tenants);
        }
    }
    local
}

fn add_counts(local: usize, replies: Vec<NodeReply>) -> usize {
    local + counts(replies)
}

fn first_session(replies: Vec<NodeReply>) -> Option<SessionView> {
    sessions(replies).into_iter().next()
}

fn any_count(replies: Vec<NodeReply>) -> bool {
    counts(replies) > 0
}

impl Handler<Publish> for Broker {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) -> Self::Result {
        let Publish {
            listener,
            target,
            delivery,
        } = msg;
        let path = self.policy(listener).map(|p| p.path.to_string());
        let wire = WireDelivery::from(&delivery);
        let local = self.local_publish(listener, &target, delivery);
        let (Some(path), true) = (path, self.backplane().is_clustered()) else {
            return local;
        };
        let request = |target| NodeRequest::Publish {
            listener: path,
            target,
            delivery: wire,
        };
        let remote = match &target {
            Target::Session(id) if !self.sessions.contains_key(id) => self.on_owner(
                id,
                request(WireTarget::Session(id.to_string())),
                None,
                counts,
                0,
            ),
            Target::Session(_) => Box::pin(async { 0 }),
            Target::Tenant(t) => self.cluster_wide(
                None,
                request(WireTarget::Tenant(t.to_string())),
                0,
                add_counts,
            ),
            Target::Global => self.cluster_wide(None, request(WireTarget::Global), 0, add_counts),
        };
        Box::pin(async move { local.await + remote.await })
    }
}

impl Handler<GetStats> for Broker {
    type Result = ResponseFuture<StatsView>;

    fn handle(&mut self, _msg: GetStats, _ctx: &mut Self::Context) -> Self::Result {
        let uptime_s = self.counters.uptime_s();
        let all = self.cluster_wide(None, NodeRequest::Stats, self.local_stats(), merge_stats);
        Box::pin(async move {
            let s = all.await;
            let tenants: HashSet<String> = s.tenants.into_iter().collect();
            StatsView {
                connections: s.connections,
                tenants: tenants.len(),
                messages_in: s.messages_in,
                messages_out: s.messages_out,
                dropped: s.dropped,
                uptime_s,
            }
        })
    }
}

impl Handler<ListTenants> for Broker {
    type Result = ResponseFuture<Vec<TenantView>>;

    fn handle(&mut self, _msg: ListTenants, _ctx: &mut Self::Context) -> Self::Result {
        let local = merge_tenants(self.local_tenants(), Vec::new());
        self.cluster_wide(None, NodeRequest::ListTenants, local, merge_tenants)
    }
}

impl Handler<ListSessions> for Broker {
    type Result = ResponseFuture<Vec<SessionView>>;

    fn handle(&mut self, msg: ListSessions, _ctx: &mut Self::Context) -> Self::Result {
        let local = self.local_tenant_sessions(&msg.tenant);
        let request = NodeRequest::ListSessions {
            tenant: msg.tenant.to_string(),
        };
        self.cluster_wide(None, request, local, merge_sessions)
    }
}

impl Handler<GetSession> for Broker {
    type Result = ResponseFuture<Option<SessionView>>;

    fn handle(&mut self, msg: GetSession, _ctx: &mut Self::Context) -> Self::Result {
        let local = self.local_session(&msg.id).map(Some);
        let request = NodeRequest::GetSession {
            id: msg.id.to_string(),
        };
        self.on_owner(&msg.id, request, local, first_session, None)
    }
}

impl Handler<Kick> for Broker {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: Kick, _ctx: &mut Self::Context) -> Self::Result {
        let local = self.local_kick(&msg.id, msg.code).then_some(true);
        let request = NodeRequest::Kick {
            id: msg.id.to_string(),
            code: msg.code.code(),
        };
        self.on_owner(&msg.id, request, local, any_count, false)
    }
}

impl Handler<KickTenant> for Broker {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: KickTenant, _ctx: &mut Self::Context) -> Self::Result {
        let local =
            self.local_kick_tenant(&msg.tenant, msg.listener, msg.subject.as_deref(), msg.code);
        let request = NodeRequest::KickTenant {
            tenant: msg.tenant.to_string(),
            listener: msg
                .listener
                .and_then(|l| self.policy(l))
                .map(|p| p.path.to_string()),
            subject: msg.subject,
            code: msg.code.code(),
        };
        self.cluster_wide(None, request, local, add_counts)
    }
}
