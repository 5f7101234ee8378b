//! The Broker and rooms against a recording backplane: what a cluster is told,
//! and how other nodes' answers are merged.

use std::sync::Arc;

use actix::prelude::*;

use super::tests::{self, join, text};
use super::*;
use crate::backplane::probe::Probe;
use crate::backplane::{NodeError, NodeReply, NodeRequest, NodeStats};
use crate::ids::{Mode, Scope, SessionId, TenantId};
use crate::info::SessionInfo;
use crate::outbox::outbox;
use crate::room::Fanout;
use crate::router::PublishGlobal;

fn broker(scope: Scope, cap: usize, probe: Arc<Probe>) -> Addr<Broker> {
    let mut p = ListenerPolicy::for_tests(0, "/ws", Mode::Payload, scope);
    p.max_connections_per_tenant = cap;
    Broker::new(
        vec![Arc::new(p)],
        Arc::new(Counters::new(1)),
        BrokerConfig {
            backplane: probe,
            ..BrokerConfig::default()
        },
    )
    .start()
}

/// A tenant-scope session of listener 0.
fn info(tenant: &str) -> Arc<SessionInfo> {
    tests::info(0, tenant, Scope::Tenant)
}

#[actix::test]
async fn tenant_messages_go_to_the_backplane_once_after_local_delivery() {
    let probe = Arc::new(Probe::default());
    let b = broker(Scope::Tenant, 0, probe.clone());
    let (r, mut rx1) = join(&b, info("a")).await;
    let (_, mut rx2) = join(&b, info("a")).await;
    let Route::Room { room, .. } = r.unwrap().route else {
        panic!("tenant scope")
    };
    assert_eq!(
        probe.seen("room_opened"),
        ["room_opened 0 a"],
        "one subscription per room"
    );
    assert_eq!(probe.seen("session_joined").len(), 2);

    assert_eq!(
        room.send(Fanout {
            delivery: text("m")
        })
        .await
        .unwrap(),
        2
    );
    assert_eq!(rx1.data.try_recv(), Some(text("m")));
    assert_eq!(rx2.data.try_recv(), Some(text("m")));
    assert_eq!(probe.seen("publish_tenant"), ["publish_tenant 0 a m"]);

    // A message from another node is delivered locally and never sent back out;
    // another tenant's reaches nobody here (the sentinel comes next).
    for (tenant, body) in [("a", "remote"), ("b", "other"), ("a", "sentinel")] {
        b.send(RemoteDeliver {
            listener: ListenerId(0),
            target: RemoteTarget::Tenant(TenantId::new(tenant)),
            delivery: text(body),
        })
        .await
        .unwrap();
    }
    for rx in [&mut rx1, &mut rx2] {
        assert_eq!(rx.data.recv().await, Some(text("remote")));
        assert_eq!(rx.data.recv().await, Some(text("sentinel")));
    }
    assert_eq!(probe.seen("publish").len(), 1);
}

#[actix::test]
async fn global_messages_are_published_once_and_remote_ones_reach_every_room() {
    let probe = Arc::new(Probe::default());
    let b = broker(Scope::Global, 0, probe.clone());
    let (r, mut rx_a) = join(&b, info("a")).await;
    let (_, mut rx_b) = join(&b, info("b")).await;
    let Route::Global { router, .. } = r.unwrap().route else {
        panic!("global scope routes via the listener's router")
    };
    router
        .send(PublishGlobal {
            delivery: text("g"),
        })
        .await
        .unwrap();
    assert_eq!(probe.seen("publish"), ["publish_global 0 g"]);
    b.send(RemoteDeliver {
        listener: ListenerId(0),
        target: RemoteTarget::Global,
        delivery: text("r"),
    })
    .await
    .unwrap();
    for rx in [&mut rx_a, &mut rx_b] {
        assert_eq!(rx.data.recv().await, Some(text("g")));
        assert_eq!(rx.data.recv().await, Some(text("r")));
    }
    assert_eq!(probe.seen("publish").len(), 1);
}

#[actix::test]
async fn cluster_slots_decide_joins_and_are_released_on_leave() {
    let probe = Arc::new(Probe::default());
    let b = broker(Scope::Tenant, 5, probe.clone());
    let one = info("a");
    let (r, _rx) = join(&b, one.clone()).await;
    assert!(r.is_ok());
    assert_eq!(probe.seen("acquire_slot"), ["acquire_slot 0 a 5"]);

    *probe.slot.lock().unwrap() = Some(SlotDecision::Full);
    let (r, _rx2) = join(&b, info("a")).await;
    assert_eq!(r.unwrap_err(), JoinError::TenantLimit);
    assert!(
        probe.seen("release_slot").is_empty(),
        "a refused slot is not released"
    );

    // Redis unreachable: the join proceeds on the local count and is accounted.
    *probe.slot.lock().unwrap() = Some(SlotDecision::Unavailable);
    let two = info("a");
    let (r, _rx3) = join(&b, two.clone()).await;
    assert!(r.is_ok());

    b.send(SessionClosed { id: one.id.clone() }).await.unwrap();
    b.send(SessionClosed { id: two.id.clone() }).await.unwrap();
    assert_eq!(probe.seen("release_slot").len(), 2);
    assert_eq!(probe.seen("room_closed"), ["room_closed 0 a"]);
    assert_eq!(b.send(GetSnapshot).await.unwrap(), Snapshot::default());
}

#[actix::test]
async fn a_join_abandoned_while_the_cluster_answers_gives_its_slot_back() {
    let probe = Arc::new(Probe::default());
    let b = broker(Scope::Tenant, 5, probe.clone());
    let (tx, rx) = outbox(4, 1024);
    drop(rx);
    let r = b
        .send(Join {
            info: info("a"),
            outbox: tx,
            stats: Default::default(),
            tenant_cap: None,
        })
        .await
        .unwrap();
    assert!(r.is_err());
    assert_eq!(probe.seen("release_slot").len(), 1);
    assert_eq!(probe.seen("room_closed").len(), 1);
    assert_eq!(b.send(GetSnapshot).await.unwrap(), Snapshot::default());
}

#[actix::test]
async fn admin_answers_merge_other_nodes() {
    let probe = Arc::new(Probe::default());
    let b = broker(Scope::Tenant, 0, probe.clone());
    let (_, _rx) = join(&b, info("a")).await;
    *probe.replies.lock().unwrap() = vec![
        NodeReply::Stats(NodeStats {
            connections: 3,
            tenants: vec!["a".into(), "z".into()],
            messages_in: 7,
            ..Default::default()
        }),
        NodeReply::Stats(NodeStats {
            connections: 1,
            tenants: vec!["y".into()],
            ..Default::default()
        }),
    ];
    let s = b.send(GetStats).await.unwrap();
    assert_eq!((s.connections, s.tenants, s.messages_in), (5, 3, 7));

    *probe.replies.lock().unwrap() = vec![NodeReply::Tenants(vec![
        TenantView {
            listener: "/ws".into(),
            tenant: "a".into(),
            connections: 2,
        },
        TenantView {
            listener: "/ws".into(),
            tenant: "b".into(),
            connections: 1,
        },
    ])];
    let rows = b.send(ListTenants).await.unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.tenant.as_str(), r.connections))
        .collect();
    assert_eq!(got, [("a", 3), ("b", 1)]);

    // A session that is not here: the registry names its node, which is asked.
    *probe.owner.lock().unwrap() = Some("n2".into());
    *probe.replies.lock().unwrap() = vec![NodeReply::Count(1)];
    let id = SessionId::random();
    assert!(b
        .send(Kick {
            id: id.clone(),
            code: crate::close::CloseCode::Kicked
        })
        .await
        .unwrap());
    let asked = probe.seen("call Some");
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0].contains(r#""op":"kick""#) && asked[0].contains("4003"),
        "{asked:?}"
    );
    *probe.owner.lock().unwrap() = None;
    assert_eq!(b.send(GetSession { id }).await.unwrap(), None);
}

#[actix::test]
async fn requests_from_other_nodes_are_answered_locally() {
    let probe = Arc::new(Probe::default());
    let b = broker(Scope::Tenant, 0, probe.clone());
    let me = info("a");
    let (_, mut rx) = join(&b, me.clone()).await;
    let r = b
        .send(NodeCall {
            request: NodeRequest::Publish {
                listener: "/ws".into(),
                target: crate::backplane::WireTarget::Tenant("a".into()),
                delivery: crate::backplane::WireDelivery::Text("hi".into()),
            },
        })
        .await
        .unwrap();
    assert_eq!(r, NodeReply::Count(1));
    assert_eq!(rx.data.try_recv(), Some(text("hi")));
    let r = b
        .send(NodeCall {
            request: NodeRequest::Publish {
                listener: "/nope".into(),
                target: crate::backplane::WireTarget::Global,
                delivery: crate::backplane::WireDelivery::Text("x".into()),
            },
        })
        .await
        .unwrap();
    assert_eq!(
        r,
        NodeReply::Refused(NodeError::UnknownListener("/nope".into())),
        "an unknown listener is an explicit refusal"
    );
    let r = b
        .send(NodeCall {
            request: NodeRequest::Kick {
                id: me.id.to_string(),
                code: 4777,
            },
        })
        .await
        .unwrap();
    assert_eq!(r, NodeReply::Refused(NodeError::UnknownCloseCode(4777)));
    assert_eq!(
        rx.control.try_recv(),
        None,
        "an unknown code is not replaced by another one"
    );
    let r = b
        .send(NodeCall {
            request: NodeRequest::GetSession {
                id: me.id.to_string(),
            },
        })
        .await
        .unwrap();
    let NodeReply::Sessions(v) = r else { panic!() };
    assert_eq!(v[0].tenant, "a");
    let r = b
        .send(NodeCall {
            request: NodeRequest::Kick {
                id: me.id.to_string(),
                code: 4003,
            },
        })
        .await
        .unwrap();
    assert_eq!(r, NodeReply::Count(1));
    assert!(
        probe.seen("call").is_empty(),
        "answered from local state only"
    );
}
