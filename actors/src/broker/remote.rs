//! Broker handlers for what other nodes send through the backplane: messages for
//! this node's sessions, and admin requests answered from this node's state.

use actix::prelude::*;

use crate::backplane::{NodeError, NodeReply, NodeRequest, WireTarget};
use crate::close::CloseCode;
use crate::counters::DropReason;
use crate::delivery::Delivery;
use crate::ids::{ListenerId, SessionId, TenantId};
use crate::room::LocalFanout;

use super::messages::{NodeCall, RemoteDeliver, RemoteTarget, Target};
use super::Broker;

impl Broker {
    /// Hands `delivery` to every local room of `listener` without waiting; a
    /// room whose mailbox is full misses it (counted as `room_backlog`).
    pub(super) fn fanout_listener(&self, listener: ListenerId, delivery: &Delivery) {
        for ((l, _), room) in &self.rooms {
            if *l == listener {
                self.fanout_room(&room.addr, delivery);
            }
        }
    }

    fn fanout_room(&self, room: &Addr<crate::room::TenantRoom>, delivery: &Delivery) {
        let msg = LocalFanout {
            delivery: delivery.clone(),
        };
        if let Err(SendError::Full(_)) = room.try_send(msg) {
            self.counters.add_dropped(DropReason::RoomBacklog);
        }
    }

    fn listener_by_path(&self, path: &str) -> Option<ListenerId> {
        self.policies
            .iter()
            .find(|p| &*p.path == path)
            .map(|p| p.id)
    }
}

impl Handler<RemoteDeliver> for Broker {
    type Result = ();

    fn handle(&mut self, msg: RemoteDeliver, _ctx: &mut Self::Context) {
        match msg.target {
            RemoteTarget::Tenant(tenant) => {
                if let Some(room) = self.rooms.get(&(msg.listener, tenant)) {
                    self.fanout_room(&room.addr, &msg.delivery);
                }
            }
            RemoteTarget::Global => self.fanout_listener(msg.listener, &msg.delivery),
            RemoteTarget::Channel {
                tenant,
                channel,
                position,
            } => {
                if let Some(hub) = self.hub(msg.listener, tenant.as_ref()) {
                    let publish = crate::channels::space::PublishLocal {
                        channel,
                        delivery: msg.delivery,
                        forward: false,
                        position,
                    };
                    if let Err(SendError::Full(_)) = hub.try_send(publish) {
                        self.counters.add_dropped(DropReason::RoomBacklog);
                    }
                }
            }
        }
    }
}

fn close_code(code: u16) -> Result<CloseCode, NodeError> {
    CloseCode::try_from(code).map_err(|e| NodeError::UnknownCloseCode(e.0))
}

impl Broker {
    pub(super) fn listener_named(&self, path: String) -> Result<ListenerId, NodeError> {
        self.listener_by_path(&path)
            .ok_or(NodeError::UnknownListener(path))
    }

    /// Answers one request from local state; what it names must exist here.
    fn answer(&self, request: NodeRequest) -> Result<ResponseFuture<NodeReply>, NodeError> {
        let reply = match request {
            NodeRequest::Stats => NodeReply::Stats(self.local_stats()),
            NodeRequest::ListTenants => NodeReply::Tenants(self.local_tenants()),
            NodeRequest::ListSessions { tenant } => {
                NodeReply::Sessions(self.local_tenant_sessions(&TenantId::new(tenant)))
            }
            NodeRequest::GetSession { id } => NodeReply::Sessions(
                self.local_session(&SessionId::from_string(id))
                    .into_iter()
                    .collect(),
            ),
            NodeRequest::Kick { id, code } => NodeReply::Count(usize::from(
                self.local_kick(&SessionId::from_string(id), close_code(code)?),
            )),
            NodeRequest::KickTenant {
                tenant,
                listener,
                subject,
                code,
            } => {
                let listener = listener.map(|p| self.listener_named(p)).transpose()?;
                NodeReply::Count(self.local_kick_tenant(
                    &TenantId::new(tenant),
                    listener,
                    subject.as_deref(),
                    close_code(code)?,
                ))
            }
            NodeRequest::ListChannels { listener, tenant } => {
                return self.answer_list_channels(listener, tenant)
            }
            NodeRequest::Channel {
                listener,
                tenant,
                channel,
            } => return self.answer_channel(listener, tenant, channel),
            NodeRequest::Subscription {
                id,
                channel,
                unsubscribe,
            } => return self.answer_subscription(id, channel, unsubscribe),
            NodeRequest::Publish {
                listener,
                target,
                delivery,
            } => {
                let listener = self.listener_named(listener)?;
                let target = match target {
                    WireTarget::Session(id) => Target::Session(SessionId::from_string(id)),
                    WireTarget::Tenant(t) => Target::Tenant(TenantId::new(t)),
                    WireTarget::Global => Target::Global,
                };
                let n = self.local_publish(listener, &target, delivery.into());
                return Ok(Box::pin(async move { NodeReply::Count(n.await) }));
            }
        };
        Ok(Box::pin(async move { reply }))
    }
}

impl Handler<NodeCall> for Broker {
    type Result = ResponseFuture<NodeReply>;

    fn handle(&mut self, msg: NodeCall, _ctx: &mut Self::Context) -> Self::Result {
        self.answer(msg.request).unwrap_or_else(|e| {
            log::warn!("cluster: refused another node's admin request: {e}");
            Box::pin(async move { NodeReply::Refused(e) })
        })
    }
}
