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
//!
//! Both ends obey the tenant registry like a client of the tenant would: while
//! the tenant is refused (disabled, or unregistered under `policy =
//! "registered"`) nothing is published into it (frames are dropped and
//! counted) and the membership is not joined again after the 4003 that
//! closed it; it joins once the tenant is admitted again. A join carries the
//! record's `max_connections`, which replaces the listener's cap for the
//! tenant's sessions, the bridge's included.

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
use crate::tenants::{Admission, Refusal, TenantRegistry};

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

/// Where a bridge task publishes or joins, with what it checks first.
pub struct LocalTarget {
    /// The Broker.
    pub broker: Addr<Broker>,
    /// The local listener and tenant.
    pub end: LocalEnd,
    /// Whether the tenant may be served now, and with which cap.
    pub tenants: Arc<TenantRegistry>,
    /// The bridge's name (logs, errors).
    pub name: String,
    /// The bridge's state (drops and errors are recorded there).
    pub state: Arc<BridgeState>,
}

impl LocalTarget {
    /// The registry's answer for the tenant. A change of answer is logged
    /// and recorded as the bridge's last error, once.
    fn admit(&self, was: &mut Option<Refusal>) -> Result<Admission, Refusal> {
        let now = self.tenants.admit(self.end.tenant.as_str());
        let refused = now.as_ref().err().copied();
        if refused != *was {
            match refused {
                Some(why) => {
                    log::info!(
                        "bridge={} local tenant={} refused ({why}): not served until admitted",
                        self.name,
                        self.end.tenant
                    );
                    self.state
                        .set_error(format!("local tenant {}: {why}", self.end.tenant));
                }
                None => log::info!(
                    "bridge={} local tenant={} admitted again",
                    self.name,
                    self.end.tenant
                ),
            }
            *was = refused;
        }
        now
    }
}

/// Publishes every queued delivery into `target`, in order, until the
/// queue's senders are gone; while the tenant is refused, drops them.
pub async fn publish_into(
    mut queue: mpsc::Receiver<Delivery>,
    target: LocalTarget,
    origin: MemberId,
    _alive: watch::Receiver<bool>,
) {
    let LocalTarget { broker, end, .. } = &target;
    let mut refused = None;
    while let Some(delivery) = queue.recv().await {
        if target.admit(&mut refused).is_err() {
            target.state.bump(Counter::Dropped);
            continue;
        }
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
    /// The `from` tenant, the Broker, the registry, the bridge's name (the
    /// member's subject) and state.
    pub target: LocalTarget,
    /// The member's id (also the origin of `into` publications).
    pub id: MemberId,
    /// How messages travel upstream: `payload` strips the local `_session`.
    pub mode: Mode,
    /// The bounded upstream queue.
    pub upstream: mpsc::Sender<Delivery>,
    /// Delay before joining again after a refused join.
    pub retry: Duration,
    /// In a cluster: what this bridge published locally (see
    /// [`super::runner::Runner::came_down`]).
    pub came_down: Option<SharedFilter>,
}

/// Waits until the tenant is admitted; `None` when stopped first.
async fn admitted(
    target: &LocalTarget,
    refused: &mut Option<Refusal>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Admission> {
    // Subscribed before looking: a change made in between is not missed.
    let mut changes = target.tenants.subscribe();
    loop {
        if let Ok(admission) = target.admit(refused) {
            return Some(admission);
        }
        tokio::select! {
            changed = changes.changed() => changed.ok()?,
            () = stopped(stop) => return None,
        }
    }
}

/// Keeps the bridge a member of the `from` room until stopped or shut down.
pub async fn forward_from(f: Forwarder, mut stop: watch::Receiver<bool>) {
    let LocalTarget {
        broker,
        end,
        name,
        state,
        ..
    } = &f.target;
    let mut refused = None;
    loop {
        let Some(admission) = admitted(&f.target, &mut refused, &mut stop).await else {
            return;
        };
        let info = Arc::new(SessionInfo {
            id: f.id.renew(),
            listener: end.policy.id,
            listener_path: end.policy.path.clone(),
            tenant: end.tenant.clone(),
            subject: Some(name.clone()),
            auth: AuthStatus::None,
            scope: end.policy.scope,
            remote: None,
            connected_at: SystemTime::now(),
            expires_at: None,
        });
        let (queue, mut rx) = outbox(
            end.policy.outbound_queue_messages,
            end.policy.outbound_queue_bytes,
        );
        let guard = LeaveGuard::new(broker.clone(), info.clone());
        let join = Join {
            info,
            outbox: queue,
            stats: Arc::new(SessionStats::default()),
            // The tenant's cap, as for its clients: the record's, else the
            // listener's.
            tenant_cap: admission.max_connections,
        };
        match broker.send(join).await {
            Ok(Ok(_)) => {}
            Ok(Err(JoinError::ShuttingDown)) | Err(_) => {
                guard.disarm();
                return;
            }
            Ok(Err(e)) => {
                guard.disarm();
                state.set_error(format!("joining local tenant {}: {e}", end.tenant));
                log::warn!("bridge={name} cannot join tenant={}: {e}", end.tenant);
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
                        state.bump(Counter::Echoes);
                    }
                    Some(d) => {
                        let d = match f.mode {
                            Mode::Payload => unstamp(d),
                            // A bridge in channels mode is refused by validation.
                            Mode::Message | Mode::Channels => d,
                        };
                        if f.upstream.try_send(d).is_err() {
                            state.bump(Counter::Dropped);
                        }
                    }
                    None => break Ended::Stop,
                },
                c = rx.control.next() => match c {
                    Some(Control::Close(CloseCode::GoingAway)) | None => break Ended::Stop,
                    Some(Control::Close(code)) => {
                        log::info!(
                            "bridge={name} local membership closed with {}; joining again",
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
    stamped_by_bridge(d, &f.target.name)
        || f.came_down.as_ref().is_some_and(|c| c.borrow_mut().take(d))
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
