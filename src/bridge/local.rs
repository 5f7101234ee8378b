//! A bridge's two local ends.
//!
//! * [`publish_into`]: frames received upstream, already encoded, are published
//!   into the `into` tenant one after another with the bridge as origin
//!   (`PublishFrom`), so the bridge's own membership never gets them back.
//! * [`forward_from`]: the bridge is a member of the `from` tenant's room (a
//!   session without a socket, registered with the Broker like any other) and
//!   moves what the room delivers to it into the bounded upstream queue. A full
//!   queue drops the message and counts it: the room never sees the bridge as a
//!   slow consumer. Kicked (4003, session timeout): it joins again under a
//!   fresh session id. Told to go away (1001, shutdown) or stopped: it leaves.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::Addr;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use wsplus_actors::broker::{Join, JoinError, PublishFrom};
use wsplus_actors::counters::SessionStats;
use wsplus_actors::outbox::Control;
use wsplus_actors::session::LeaveGuard;
use wsplus_actors::{
    outbox, AuthStatus, Broker, CloseCode, Delivery, ListenerPolicy, SessionId, SessionInfo,
    TenantId,
};

use super::echo::{self, SharedFilter};
use super::state::{BridgeState, Counter};
use crate::settings::Mode;

/// The session id of the bridge's membership, shared by the `from` member
/// (which takes a fresh one on every join, as a reconnecting client would) and
/// the `into` publisher (which names it as the origin to skip).
#[derive(Debug, Clone)]
pub struct MemberId(Rc<RefCell<SessionId>>);

impl MemberId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(Rc::new(RefCell::new(SessionId::random())))
    }

    /// The current id.
    pub fn get(&self) -> SessionId {
        self.0.borrow().clone()
    }

    /// Replaces the id with a fresh one and returns it.
    fn renew(&self) -> SessionId {
        let id = SessionId::random();
        *self.0.borrow_mut() = id.clone();
        id
    }
}

/// A local (listener, tenant) resolved against the running listeners.
#[derive(Debug, Clone)]
pub struct LocalEnd {
    /// The listener's policy (id, path, mode, scope, queue bounds).
    pub policy: Arc<ListenerPolicy>,
    /// The tenant.
    pub tenant: TenantId,
}

/// Publishes every queued delivery into `end`, in order, until the queue's
/// senders are gone.
pub async fn publish_into(
    mut queue: mpsc::Receiver<Delivery>,
    broker: Addr<Broker>,
    end: LocalEnd,
    origin: MemberId,
    _alive: watch::Receiver<bool>,
) {
    while let Some(delivery) = queue.recv().await {
        let publish = PublishFrom {
            listener: end.policy.id,
            tenant: end.tenant.clone(),
            delivery,
            origin: origin.get(),
        };
        if broker.send(publish).await.is_err() {
            return;
        }
    }
}

/// How a membership ended.
enum Ended {
    /// Closed by the Broker for another reason than shutdown: join again.
    Rejoin,
    /// Shutdown or stop: leave for good.
    Stop,
}

/// What [`forward_from`] needs.
pub struct Forwarder {
    /// The Broker.
    pub broker: Addr<Broker>,
    /// The `from` tenant.
    pub end: LocalEnd,
    /// The member's id (also the origin of `into` publications).
    pub id: MemberId,
    /// The bridge's name (the member's subject).
    pub name: String,
    /// How messages travel upstream: `payload` strips the local `_session`.
    pub mode: Mode,
    /// The bounded upstream queue.
    pub upstream: mpsc::Sender<Delivery>,
    /// The bridge's state (drops are counted there).
    pub state: Arc<BridgeState>,
    /// Delay before joining again after a refused join.
    pub retry: Duration,
    /// In a cluster: what this bridge published locally (see
    /// [`super::runner::Runner::came_down`]).
    pub came_down: Option<SharedFilter>,
}

/// Keeps the bridge a member of the `from` room until stopped or shut down.
pub async fn forward_from(f: Forwarder, mut stop: watch::Receiver<bool>) {
    loop {
        let info = Arc::new(SessionInfo {
            id: f.id.renew(),
            listener: f.end.policy.id,
            listener_path: f.end.policy.path.clone(),
            tenant: f.end.tenant.clone(),
            subject: Some(f.name.clone()),
            auth: AuthStatus::None,
            scope: f.end.policy.scope,
            remote: None,
            connected_at: SystemTime::now(),
            expires_at: None,
        });
        let (queue, mut rx) = outbox(
            f.end.policy.outbound_queue_messages,
            f.end.policy.outbound_queue_bytes,
        );
        let guard = LeaveGuard::new(f.broker.clone(), info.clone());
        let join = Join {
            info,
            outbox: queue,
            stats: Arc::new(SessionStats::default()),
            // A bridge is the operator's own link: the listener's cap applies.
            tenant_cap: None,
        };
        match f.broker.send(join).await {
            Ok(Ok(_)) => {}
            Ok(Err(JoinError::ShuttingDown)) | Err(_) => {
                guard.disarm();
                return;
            }
            Ok(Err(e)) => {
                guard.disarm();
                f.state
                    .set_error(format!("joining local tenant {}: {e}", f.end.tenant));
                log::warn!("bridge={} cannot join tenant={}: {e}", f.name, f.end.tenant);
                tokio::select! {
                    () = tokio::time::sleep(f.retry) => continue,
                    () = stopped(&mut stop) => return,
                }
            }
        }
        let ended = loop {
            tokio::select! {
                d = rx.data.next() => match d {
                    Some(d) if from_upstream(&f, &d) => {
                        f.state.bump(Counter::Echoes);
                    }
                    Some(d) => {
                        let d = match f.mode {
                            Mode::Payload => unstamp(d),
                            // A bridge in channels mode is refused by validation.
                            Mode::Message | Mode::Channels => d,
                        };
                        if f.upstream.try_send(d).is_err() {
                            f.state.bump(Counter::Dropped);
                        }
                    }
                    None => break Ended::Stop,
                },
                c = rx.control.next() => match c {
                    Some(Control::Close(CloseCode::GoingAway)) | None => break Ended::Stop,
                    Some(Control::Close(code)) => {
                        log::info!(
                            "bridge={} local membership closed with {}; joining again",
                            f.name,
                            code.code()
                        );
                        break Ended::Rejoin;
                    }
                },
                () = stopped(&mut stop) => break Ended::Stop,
            }
        };
        drop(guard);
        if let Ended::Stop = ended {
            return;
        }
    }
}

/// True when a local delivery came from this bridge's own upstream (through a
/// bridge of the same name on another node): stamped by it, or the copy of a
/// frame it published itself.
fn from_upstream(f: &Forwarder, d: &Delivery) -> bool {
    stamped_by_bridge(d, &f.name) || f.came_down.as_ref().is_some_and(|c| c.borrow_mut().take(d))
}

/// True for a message-mode delivery stamped by a bridge called `name`: it came
/// from this bridge's own upstream, through the same bridge on another node of
/// the cluster, and must not go back up. (On one node the bridge never receives
/// its own publications at all.)
fn stamped_by_bridge(d: &Delivery, name: &str) -> bool {
    let Delivery::Text(t) = d else {
        return false;
    };
    // Cheap test first: most deliveries are not from a bridge.
    if !t.contains("\"bridge\"") {
        return false;
    }
    serde_json::from_str::<serde_json::Value>(t).is_ok_and(|v| {
        let stamp = &v[wsplus_actors::protocol::SESSION_KEY];
        stamp["type"] == "bridge" && stamp["subject"] == name
    })
}

/// A local delivery as a payload: without `_session`, message mode's
/// `{"payload": "<text>"}` wrapper undone.
fn unstamp(d: Delivery) -> Delivery {
    match d {
        Delivery::Text(t) => match echo::content(&t) {
            std::borrow::Cow::Borrowed(_) => Delivery::Text(t),
            std::borrow::Cow::Owned(s) => Delivery::Text(s.into()),
        },
        binary => binary,
    }
}

/// Resolves once the bridges are told to stop (or their owner is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_bridges_stamp_is_recognised() {
        let stamp = wsplus_actors::protocol::bridge_stamp("hq", "acme");
        let from_hq = serde_json::json!({"a": 1, "_session": stamp}).to_string();
        assert!(stamped_by_bridge(&Delivery::Text(from_hq.into()), "hq"));
        let other = serde_json::json!({"a": 1, "_session": wsplus_actors::protocol::bridge_stamp("x", "acme")});
        assert!(!stamped_by_bridge(
            &Delivery::Text(other.to_string().into()),
            "hq"
        ));
        let client = r#"{"note":"bridge","_session":{"type":"websocket","subject":"hq"}}"#;
        assert!(!stamped_by_bridge(&Delivery::Text(client.into()), "hq"));
        assert!(!stamped_by_bridge(
            &Delivery::Text("\"bridge\"".into()),
            "hq"
        ));
    }

    #[test]
    fn unstamp_strips_the_local_session() {
        let d = Delivery::Text(r#"{"a":1,"_session":{"id":"x"}}"#.into());
        assert_eq!(unstamp(d), Delivery::Text(r#"{"a":1}"#.into()));
        let d = Delivery::Text(r#"{"payload":"hi","_session":{}}"#.into());
        assert_eq!(unstamp(d), Delivery::Text("hi".into()));
        let d = Delivery::Text("plain".into());
        assert_eq!(unstamp(d), Delivery::Text("plain".into()));
    }
}
