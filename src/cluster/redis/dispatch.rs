//! The inbound side of the Redis backplane: what arrives on the subscription
//! connection (RESP3 pushes) and where it goes. Messages of other nodes go to
//! the Broker with `try_send` (dropped and counted when its mailbox is full),
//! admin requests to the rpc task, admin replies to the call waiting for them.
//!
//! It holds no connection (the push handler lives inside one), so there is no
//! reference cycle between a connection and its handler.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use actix::Recipient;
use bytes::Bytes;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use wsplus_actors::backplane::{NodeReply, NodeRequest};
use wsplus_actors::broker::{RemoteDeliver, RemoteTarget};
use wsplus_actors::channels::codec::StreamPosition;
use wsplus_actors::channels::ChannelName;
use wsplus_actors::counters::DropReason;
use wsplus_actors::{Counters, Delivery, ListenerId, TenantId};

use super::link::Health;
use crate::cluster::keys::{self, Channel};
use crate::cluster::wire::{self, Body};
use crate::cluster::{ClusterStats, LostReason};

/// An admin request of another node: (origin node, call id, request).
pub(super) type Incoming = (String, u64, NodeRequest);

/// Routes what arrives on the subscription connection.
pub(super) struct Dispatch {
    pub node: String,
    pub by_path: HashMap<String, ListenerId>,
    /// The Broker, once attached.
    pub remote: OnceLock<Recipient<RemoteDeliver>>,
    pub rpc: mpsc::Sender<Incoming>,
    /// Calls of this node waiting for replies, by call id.
    pending: Mutex<HashMap<u64, mpsc::Sender<NodeReply>>>,
    pub health: Arc<Health>,
    pub counters: Arc<Counters>,
    pub stats: Arc<ClusterStats>,
}

impl Dispatch {
    /// A dispatcher for `node` with these listeners (path → id).
    pub fn new(
        node: String,
        by_path: HashMap<String, ListenerId>,
        rpc: mpsc::Sender<Incoming>,
        health: Arc<Health>,
        counters: Arc<Counters>,
        stats: Arc<ClusterStats>,
    ) -> Self {
        Self {
            node,
            by_path,
            remote: OnceLock::new(),
            rpc,
            pending: Mutex::new(HashMap::new()),
            health,
            counters,
            stats,
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<u64, mpsc::Sender<NodeReply>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replies to call `id` go to `tx` until [`Self::forget_replies`].
    pub fn expect_replies(&self, id: u64, tx: mpsc::Sender<NodeReply>) {
        self.pending().insert(id, tx);
    }

    /// Call `id` is over.
    pub fn forget_replies(&self, id: u64) {
        self.pending().remove(&id);
    }

    /// The push handler of the subscription connection.
    pub fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Message => {
                let mut data = push.data.into_iter();
                if let (Some(Value::BulkString(ch)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                {
                    self.on_message(&String::from_utf8_lossy(&ch), Bytes::from(payload));
                }
            }
            PushKind::Disconnection => {
                if self.health.set_down() {
                    log::warn!("cluster: lost the Redis subscription connection");
                }
                self.health.want_resync();
            }
            _ => {}
        }
    }

    /// One message on `channel`.
    pub fn on_message(&self, channel: &str, raw: Bytes) {
        let env = match wire::decode(raw) {
            Ok(e) => e,
            Err(e) => {
                log::warn!("cluster: ignoring a message on {channel}: {e}");
                return;
            }
        };
        if env.origin == self.node {
            // Delivered locally before it was published.
            return;
        }
        match (keys::parse_channel(channel), env.body) {
            (Some(Channel::Tenant(path, tenant)), Body::Delivery(d)) => {
                self.deliver(&path, RemoteTarget::Tenant(TenantId::new(tenant)), d)
            }
            (Some(Channel::Global(path)), Body::Delivery(d)) => {
                self.deliver(&path, RemoteTarget::Global, d)
            }
            (Some(Channel::Topic(path, tenant, channel)), Body::Delivery(d)) => {
                self.deliver_topic(&path, tenant, &channel, None, d)
            }
            (Some(Channel::Topic(path, tenant, channel)), Body::Publication(at, d)) => {
                self.deliver_topic(&path, tenant, &channel, Some(at), d)
            }
            (Some(Channel::Node(_)), Body::Request(id, req)) => {
                if self.rpc.try_send((env.origin, id, req)).is_err() {
                    log::warn!("cluster: admin request queue full, request dropped");
                }
            }
            (Some(Channel::Node(_)), Body::Reply(id, reply)) => {
                if let Some(tx) = self.pending().get(&id) {
                    let _ = tx.try_send(reply);
                }
            }
            _ => log::warn!("cluster: unexpected message on {channel}"),
        }
    }

    /// A publication of a channel of a channels-mode listener (`position`:
    /// numbered in the cluster's stream).
    fn deliver_topic(
        &self,
        path: &str,
        tenant: Option<String>,
        channel: &str,
        position: Option<StreamPosition>,
        d: Delivery,
    ) {
        match ChannelName::parse(channel) {
            Ok(channel) => self.deliver(
                path,
                RemoteTarget::Channel {
                    tenant: tenant.map(TenantId::new),
                    channel,
                    position,
                },
                d,
            ),
            Err(_) => log::warn!("cluster: invalid channel name on {channel:?}"),
        }
    }

    fn deliver(&self, path: &str, target: RemoteTarget, delivery: Delivery) {
        let (Some(listener), Some(broker)) = (self.by_path.get(path), self.remote.get()) else {
            return;
        };
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let msg = RemoteDeliver {
            listener: *listener,
            target,
            delivery,
        };
        if broker.try_send(msg).is_err() {
            self.counters.add_dropped(DropReason::Backplane);
            self.stats.lose(LostReason::BrokerFull, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use actix::prelude::*;
    use wsplus_actors::backplane::NodeStats;

    use super::*;

    /// Records what the dispatcher hands the Broker.
    #[derive(Default)]
    struct Probe(Arc<Mutex<Vec<RemoteDeliver>>>);

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<RemoteDeliver> for Probe {
        type Result = ();
        fn handle(&mut self, m: RemoteDeliver, _: &mut Self::Context) {
            self.0.lock().unwrap().push(m);
        }
    }

    fn dispatch() -> (Dispatch, mpsc::Receiver<Incoming>) {
        let (tx, rx) = mpsc::channel(4);
        let by_path = [("/ws".to_string(), ListenerId(0))].into();
        let d = Dispatch::new(
            "me".into(),
            by_path,
            tx,
            Arc::new(Health::default()),
            Arc::new(Counters::new(1)),
            Arc::new(ClusterStats::default()),
        );
        (d, rx)
    }

    fn text(s: &str) -> Delivery {
        Delivery::Text(s.to_owned().into())
    }

    #[actix::test]
    async fn routes_each_channel_to_its_recipient_and_skips_its_own_echo() {
        let (d, mut rpc) = dispatch();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let probe = Probe(seen.clone()).start();
        d.remote.set(probe.clone().recipient()).unwrap();

        let tenant = keys::tenant_channel("/ws", "acme");
        d.on_message(&tenant, wire::delivery("other", &text("hi")).into());
        d.on_message(&tenant, wire::delivery("me", &text("echo")).into());
        d.on_message(
            &keys::global_channel("/ws"),
            wire::delivery("other", &text("all")).into(),
        );
        // Unknown listener, garbage, a request on a tenant channel: ignored.
        d.on_message(
            &keys::tenant_channel("/nope", "acme"),
            wire::delivery("other", &text("x")).into(),
        );
        d.on_message(&tenant, Bytes::from_static(b"\x09garbage"));
        d.on_message(
            &tenant,
            wire::request("other", 1, &NodeRequest::Stats).into(),
        );
        // A request on the node channel goes to the rpc task.
        d.on_message(
            &keys::node_channel("me"),
            wire::request("other", 9, &NodeRequest::Stats).into(),
        );
        assert_eq!(
            rpc.try_recv().unwrap(),
            ("other".to_string(), 9, NodeRequest::Stats)
        );
        // A reply goes to the call waiting for it, and only while it waits.
        let (tx, mut replies) = mpsc::channel(2);
        d.expect_replies(5, tx);
        let reply = NodeReply::Stats(NodeStats::default());
        d.on_message(
            &keys::node_channel("me"),
            wire::reply("other", 5, &reply).into(),
        );
        d.on_message(
            &keys::node_channel("me"),
            wire::reply("other", 6, &NodeReply::Count(1)).into(),
        );
        d.forget_replies(5);
        d.on_message(
            &keys::node_channel("me"),
            wire::reply("other", 5, &NodeReply::Count(2)).into(),
        );
        assert_eq!(replies.try_recv().unwrap(), reply);
        assert!(replies.try_recv().is_err());

        // A round trip through the probe's mailbox orders what it got before.
        probe
            .send(RemoteDeliver {
                listener: ListenerId(9),
                target: RemoteTarget::Global,
                delivery: text("end"),
            })
            .await
            .unwrap();
        let got: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|m| (m.listener, m.target.clone(), m.delivery.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    ListenerId(0),
                    RemoteTarget::Tenant(TenantId::new("acme".to_string())),
                    text("hi")
                ),
                (ListenerId(0), RemoteTarget::Global, text("all")),
                (ListenerId(9), RemoteTarget::Global, text("end")),
            ]
        );
        assert_eq!(d.stats.received.load(Ordering::Relaxed), 2);
    }

    #[actix::test]
    async fn a_lost_subscription_connection_asks_for_a_resync() {
        let (d, _rpc) = dispatch();
        d.health.take_resync();
        d.health.set_up();
        d.on_push(PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        });
        assert!(!d.health.is_up());
        assert!(d.health.take_resync());
    }
}
