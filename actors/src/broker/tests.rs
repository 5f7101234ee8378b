//! Broker unit tests with probe outboxes in place of sessions.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;

use super::*;
use crate::counters::DropReason;
use crate::delivery::Delivery;
use crate::ids::{Mode, Scope, SessionId, TenantId};
use crate::info::{AuthStatus, SessionInfo};
use crate::outbox::{outbox, Control, OutboxReceiver};
use crate::policy::ListenerPolicy;
use crate::router::PublishGlobal;

fn broker_with(policies: Vec<ListenerPolicy>) -> Addr<Broker> {
    let n = policies.len();
    Broker::new(
        policies.into_iter().map(Arc::new).collect(),
        Arc::new(Counters::new(n)),
        BrokerConfig::default(),
    )
    .start()
}

pub(super) fn info(listener: u16, tenant: &str, scope: Scope) -> Arc<SessionInfo> {
    Arc::new(SessionInfo {
        id: SessionId::random(),
        listener: ListenerId(listener),
        listener_path: "/ws".into(),
        tenant: TenantId::new(tenant),
        subject: None,
        auth: AuthStatus::None,
        scope,
        remote: None,
        connected_at: SystemTime::now(),
        expires_at: None,
    })
}

pub(super) async fn join(
    b: &Addr<Broker>,
    info: Arc<SessionInfo>,
) -> (Result<Joined, JoinError>, OutboxReceiver) {
    join_capped(b, info, None).await
}

/// A join carrying a tenant record's `max_connections`.
async fn join_capped(
    b: &Addr<Broker>,
    info: Arc<SessionInfo>,
    tenant_cap: Option<usize>,
) -> (Result<Joined, JoinError>, OutboxReceiver) {
    let (tx, rx) = outbox(16, 1 << 20);
    let r = b
        .send(Join {
            info,
            outbox: tx,
            stats: Default::default(),
            tenant_cap,
        })
        .await
        .unwrap();
    (r, rx)
}

/// Returns once every room of listener 0 has handled what was sent to it
/// before: a synchronous global publish queues behind it in each room.
async fn rooms_caught_up(b: &Addr<Broker>) {
    b.send(Publish {
        listener: ListenerId(0),
        target: Target::Global,
        delivery: text("sync"),
    })
    .await
    .unwrap();
}

pub(super) fn text(s: &str) -> Delivery {
    Delivery::Text(s.into())
}

#[actix::test]
async fn rooms_are_created_per_tenant_and_torn_down_when_empty() {
    let b = broker_with(vec![ListenerPolicy::for_tests(
        0,
        "/ws",
        Mode::Payload,
        Scope::Tenant,
    )]);
    let a1 = info(0, "a", Scope::Tenant);
    let a2 = info(0, "a", Scope::Tenant);
    let c1 = info(0, "c", Scope::Tenant);
    let (r, _x1) = join(&b, a1.clone()).await;
    let Route::Room { room: room_a, .. } = r.unwrap().route else {
        panic!("tenant scope routes to a room")
    };
    let (r, _x2) = join(&b, a2.clone()).await;
    let Route::Room { room: room_a2, .. } = r.unwrap().route else {
        panic!()
    };
    assert_eq!(room_a, room_a2, "same tenant shares a room");
    let (r, _x3) = join(&b, c1.clone()).await;
    let Route::Room { room: room_c, .. } = r.unwrap().route else {
        panic!()
    };
    assert_ne!(room_a, room_c);
    let snap = b.send(GetSnapshot).await.unwrap();
    assert_eq!((snap.sessions, snap.rooms), (3, 2));

    for i in [a1, a2, c1] {
        b.send(SessionClosed { id: i.id.clone() }).await.unwrap();
    }
    assert_eq!(b.send(GetSnapshot).await.unwrap(), Snapshot::default());
    // A closed-twice session is harmless.
    b.send(SessionClosed {
        id: SessionId::random(),
    })
    .await
    .unwrap();
}

#[actix::test]
async fn a_join_on_an_unknown_listener_is_refused_as_such() {
    let b = broker_with(vec![ListenerPolicy::for_tests(
        0,
        "/ws",
        Mode::Payload,
        Scope::Tenant,
    )]);
    let (r, _rx) = join(&b, info(7, "a", Scope::Tenant)).await;
    assert_eq!(r.unwrap_err(), JoinError::UnknownListener(ListenerId(7)));
    assert_eq!(b.send(GetSnapshot).await.unwrap(), Snapshot::default());
}

#[actix::test]
async fn tenant_cap_is_enforced_and_released() {
    let mut p = ListenerPolicy::for_tests(0, "/ws", Mode::Payload, Scope::Tenant);
    p.max_connections_per_tenant = 2;
    let b = broker_with(vec![p]);
    let first = info(0, "a", Scope::Tenant);
    let (r1, _k1) = join(&b, first.clone()).await;
    let (r2, _k2) = join(&b, info(0, "a", Scope::Tenant)).await;
    let (r3, _k3) = join(&b, info(0, "a", Scope::Tenant)).await;
    let (r4, _k4) = join(&b, info(0, "b", Scope::Tenant)).await;
    assert!(r1.is_ok() && r2.is_ok() && r4.is_ok());
    assert_eq!(r3.unwrap_err(), JoinError::TenantLimit);
    b.send(SessionClosed {
        id: first.id.clone(),
    })
    .await
    .unwrap();
    let (r5, _k5) = join(&b, info(0, "a", Scope::Tenant)).await;
    assert!(r5.is_ok(), "slot released on leave");
}

#[actix::test]
async fn a_tenant_cap_replaces_the_listener_cap_and_counts_every_listener() {
    let mut l0 = ListenerPolicy::for_tests(0, "/a", Mode::Payload, Scope::Tenant);
    l0.max_connections_per_tenant = 1;
    let l1 = ListenerPolicy::for_tests(1, "/b", Mode::Payload, Scope::Tenant);
    let b = broker_with(vec![l0, l1]);
    // Cap 3 over both listeners: beyond the listener's 1 on /a.
    let first = info(0, "t", Scope::Tenant);
    let (r1, _k1) = join_capped(&b, first.clone(), Some(3)).await;
    let (r2, _k2) = join_capped(&b, info(0, "t", Scope::Tenant), Some(3)).await;
    let (r3, _k3) = join_capped(&b, info(1, "t", Scope::Tenant), Some(3)).await;
    assert!(r1.is_ok() && r2.is_ok() && r3.is_ok());
    let (r4, _k4) = join_capped(&b, info(1, "t", Scope::Tenant), Some(3)).await;
    assert_eq!(r4.unwrap_err(), JoinError::TenantLimit);
    b.send(SessionClosed {
        id: first.id.clone(),
    })
    .await
    .unwrap();
    let (r5, _k5) = join_capped(&b, info(1, "t", Scope::Tenant), Some(3)).await;
    assert!(r5.is_ok(), "a slot is freed on leave");
    // 0 = no cap at all, even on the listener capped at 1.
    let (r6, _k6) = join_capped(&b, info(0, "t", Scope::Tenant), Some(0)).await;
    assert!(r6.is_ok());
    // Without a record the listener's cap applies (two on /a already).
    let (r7, _k7) = join(&b, info(0, "t", Scope::Tenant)).await;
    assert_eq!(r7.unwrap_err(), JoinError::TenantLimit);
}

#[actix::test]
async fn duplicate_ids_are_refused() {
    let b = broker_with(vec![ListenerPolicy::for_tests(
        0,
        "/ws",
        Mode::Payload,
        Scope::Tenant,
    )]);
    let i = info(0, "a", Scope::Tenant);
    let (r1, _k1) = join(&b, i.clone()).await;
    let (r2, _k2) = join(&b, i).await;
    assert!(r1.is_ok());
    assert_eq!(r2.unwrap_err(), JoinError::DuplicateId);
}

#[actix::test]
async fn admin_publish_counts_per_scope() {
    let b = broker_with(vec![
        ListenerPolicy::for_tests(0, "/a", Mode::Payload, Scope::Tenant),
        ListenerPolicy::for_tests(1, "/b", Mode::Payload, Scope::Tenant),
    ]);
    let s1 = info(0, "t1", Scope::Tenant);
    let (_, mut k1) = join(&b, s1.clone()).await;
    let (_, mut k2) = join(&b, info(0, "t1", Scope::Tenant)).await;
    let (_, mut k3) = join(&b, info(0, "t2", Scope::Tenant)).await;
    let (_, mut other_listener) = join(&b, info(1, "t1", Scope::Tenant)).await;

    let publish = |target, s: &str| Publish {
        listener: ListenerId(0),
        target,
        delivery: text(s),
    };
    assert_eq!(
        b.send(publish(Target::Tenant(TenantId::new("t1")), "t"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(b.send(publish(Target::Global, "g")).await.unwrap(), 3);
    assert_eq!(
        b.send(publish(Target::Session(s1.id.clone()), "s"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.send(publish(Target::Session(SessionId::random()), "s"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        b.send(publish(Target::Tenant(TenantId::new("nobody")), "x"))
            .await
            .unwrap(),
        0
    );

    let drain = |rx: &mut OutboxReceiver| {
        let mut v = Vec::new();
        while let Some(Delivery::Text(s)) = rx.data.try_recv() {
            v.push(s.to_string());
        }
        v
    };
    assert_eq!(drain(&mut k1), ["t", "g", "s"]);
    assert_eq!(drain(&mut k2), ["t", "g"]);
    assert_eq!(drain(&mut k3), ["g"]);
    assert!(
        drain(&mut other_listener).is_empty(),
        "listeners are isolated"
    );
}

#[actix::test]
async fn global_publish_from_a_session_reaches_every_room_of_its_listener() {
    let b = broker_with(vec![
        ListenerPolicy::for_tests(0, "/g", Mode::Payload, Scope::Global),
        ListenerPolicy::for_tests(1, "/t", Mode::Payload, Scope::Tenant),
    ]);
    let (r, mut k1) = join(&b, info(0, "a", Scope::Global)).await;
    let Route::Global { router: g, .. } = r.unwrap().route else {
        panic!("global scope routes via the listener's router")
    };
    let (_, mut k2) = join(&b, info(0, "b", Scope::Global)).await;
    let (_, mut k3) = join(&b, info(1, "a", Scope::Tenant)).await;
    g.send(PublishGlobal {
        delivery: text("hi"),
    })
    .await
    .unwrap();
    // Rooms process in order: a synchronous publish behind it proves delivery happened.
    rooms_caught_up(&b).await;
    assert_eq!(k1.data.try_recv(), Some(text("hi")));
    assert_eq!(k2.data.try_recv(), Some(text("hi")));
    assert_eq!(k3.data.try_recv(), None);
}

#[actix::test]
async fn kicks_reach_the_session_control_channel() {
    let b = broker_with(vec![
        ListenerPolicy::for_tests(0, "/a", Mode::Payload, Scope::Tenant),
        ListenerPolicy::for_tests(1, "/b", Mode::Payload, Scope::Tenant),
    ]);
    let s = info(0, "t", Scope::Tenant);
    let (_, mut k1) = join(&b, s.clone()).await;
    let (_, mut k2) = join(&b, info(1, "t", Scope::Tenant)).await;
    let (_, mut k3) = join(&b, info(0, "u", Scope::Tenant)).await;
    assert!(b
        .send(Kick {
            id: s.id.clone(),
            code: CloseCode::Kicked
        })
        .await
        .unwrap());
    assert!(!b
        .send(Kick {
            id: SessionId::random(),
            code: CloseCode::Kicked
        })
        .await
        .unwrap());
    assert_eq!(
        k1.control.try_recv(),
        Some(Control::Close(CloseCode::Kicked))
    );
    let n = b
        .send(KickTenant {
            tenant: TenantId::new("t"),
            listener: Some(ListenerId(1)),
            subject: None,
            code: CloseCode::Kicked,
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        k2.control.try_recv(),
        Some(Control::Close(CloseCode::Kicked))
    );
    assert_eq!(k3.control.try_recv(), None);
}

#[actix::test]
async fn expiry_and_timeout_timers_fire_the_earliest_and_are_cancelled_on_leave() {
    let mut p = ListenerPolicy::for_tests(0, "/a", Mode::Payload, Scope::Tenant);
    p.session_timeout = Some(Duration::from_millis(150));
    let b = broker_with(vec![p]);

    let mut expiring = (*info(0, "t", Scope::Tenant)).clone();
    expiring.expires_at = Some(SystemTime::now() + Duration::from_millis(50));
    let (_, mut k1) = join(&b, Arc::new(expiring)).await;
    let (_, mut k2) = join(&b, info(0, "t", Scope::Tenant)).await;
    let leaving = info(0, "t", Scope::Tenant);
    let (_, _k3) = join(&b, leaving.clone()).await;
    assert_eq!(b.send(GetSnapshot).await.unwrap().timers, 3);
    b.send(SessionClosed {
        id: leaving.id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(b.send(GetSnapshot).await.unwrap().timers, 2);

    let c1 = tokio::time::timeout(Duration::from_secs(2), futures_util_next(&mut k1))
        .await
        .unwrap();
    assert_eq!(c1, Some(Control::Close(CloseCode::TokenExpired)));
    let c2 = tokio::time::timeout(Duration::from_secs(2), futures_util_next(&mut k2))
        .await
        .unwrap();
    assert_eq!(c2, Some(Control::Close(CloseCode::SessionTimeout)));
    assert_eq!(b.send(GetSnapshot).await.unwrap().timers, 0);
}

async fn futures_util_next(rx: &mut OutboxReceiver) -> Option<Control> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut rx.control).poll_next(cx)).await
}

use futures_core::Stream;

#[actix::test]
async fn shutdown_closes_everyone_with_1001_and_refuses_joins() {
    let b = broker_with(vec![ListenerPolicy::for_tests(
        0,
        "/a",
        Mode::Payload,
        Scope::Tenant,
    )]);
    let s = info(0, "t", Scope::Tenant);
    let (_, mut k) = join(&b, s.clone()).await;
    let done = b.send(Shutdown).await.unwrap();
    assert_eq!(
        k.control.try_recv(),
        Some(Control::Close(CloseCode::GoingAway))
    );
    let (r, _k2) = join(&b, info(0, "t", Scope::Tenant)).await;
    assert_eq!(r.unwrap_err(), JoinError::ShuttingDown);
    b.send(SessionClosed { id: s.id.clone() }).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), done)
        .await
        .unwrap()
        .unwrap();
}

#[actix::test]
async fn publish_from_skips_the_origin_and_stays_in_the_tenant() {
    let b = broker_with(vec![ListenerPolicy::for_tests(
        0,
        "/ws",
        Mode::Payload,
        Scope::Tenant,
    )]);
    let bridge = info(0, "a", Scope::Tenant);
    let (_, mut bridge_rx) = join(&b, bridge.clone()).await;
    let (_, mut peer_rx) = join(&b, info(0, "a", Scope::Tenant)).await;
    let (_, mut other_rx) = join(&b, info(0, "b", Scope::Tenant)).await;
    let n = b
        .send(PublishFrom {
            listener: ListenerId(0),
            tenant: TenantId::new("a"),
            delivery: text("up"),
            origin: bridge.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(peer_rx.data.try_recv(), Some(text("up")));
    assert_eq!(bridge_rx.data.try_recv(), None);
    assert_eq!(other_rx.data.try_recv(), None);
    // A tenant without a room: nothing delivered, no error.
    let n = b
        .send(PublishFrom {
            listener: ListenerId(0),
            tenant: TenantId::new("nobody"),
            delivery: text("x"),
            origin: bridge.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[actix::test]
async fn load_counts_connections_and_rooms_per_listener() {
    let b = broker_with(vec![
        ListenerPolicy::for_tests(0, "/a", Mode::Payload, Scope::Tenant),
        ListenerPolicy::for_tests(1, "/b", Mode::Payload, Scope::Global),
    ]);
    let a1 = info(0, "x", Scope::Tenant);
    let (_r1, _x1) = join(&b, a1.clone()).await;
    let (_r2, _x2) = join(&b, info(0, "x", Scope::Tenant)).await;
    let (_r3, _x3) = join(&b, info(1, "y", Scope::Global)).await;
    let load = b.send(GetLoad { top_tenants: None }).await.unwrap();
    let rows: Vec<_> = load
        .listeners
        .iter()
        .map(|l| (l.path.as_str(), l.connections, l.rooms, l.other_tenants))
        .collect();
    assert_eq!(rows, [("/a", 2, 1, 0), ("/b", 1, 1, 0)]);
    assert!(load.tenants.is_empty(), "tenant rows only on request");

    b.send(SessionClosed { id: a1.id.clone() }).await.unwrap();
    let load = b.send(GetLoad { top_tenants: None }).await.unwrap();
    assert_eq!(load.listeners[0].connections, 1);
}

#[actix::test]
async fn load_lists_the_busiest_tenants_and_sums_the_rest_per_listener() {
    let b = broker_with(vec![
        ListenerPolicy::for_tests(0, "/a", Mode::Payload, Scope::Tenant),
        ListenerPolicy::for_tests(1, "/b", Mode::Payload, Scope::Tenant),
    ]);
    let mut held = Vec::new();
    for (listener, tenant, n) in [
        (0, "big", 4),
        (1, "mid", 2),
        (0, "tie-b", 1),
        (0, "tie-a", 1),
        (1, "small", 1),
    ] {
        for _ in 0..n {
            held.push(join(&b, info(listener, tenant, Scope::Tenant)).await);
        }
    }
    let top = |n| {
        let b = b.clone();
        async move {
            let load = b
                .send(GetLoad {
                    top_tenants: Some(n),
                })
                .await
                .unwrap();
            let rows: Vec<_> = load
                .tenants
                .iter()
                .map(|t| format!("{}:{}={}", t.listener, t.tenant, t.connections))
                .collect();
            let other: Vec<_> = load.listeners.iter().map(|l| l.other_tenants).collect();
            (rows, other)
        }
    };
    assert_eq!(
        top(3).await,
        (
            vec!["/a:big=4".into(), "/b:mid=2".into(), "/a:tie-a=1".into()],
            vec![1, 1]
        )
    );
    let (all, other) = top(10).await;
    assert_eq!((all.len(), other), (5, vec![0, 0]));
    assert_eq!(top(0).await, (vec![], vec![6, 3]));
}

/// `limits.room_queue` is the rooms' mailbox capacity: fan-out that cannot
/// wait (messages from other nodes) into a room whose mailbox is full drops
/// and counts (`room_backlog`) instead of queueing without bound. The room runs
/// on this thread, so it reads nothing until the Broker has handled the burst.
#[actix::test]
async fn fanout_beyond_room_queue_is_dropped_and_counted() {
    const BURST: u64 = 100;
    let counters = Arc::new(Counters::new(1));
    let b = Broker::new(
        vec![Arc::new(ListenerPolicy::for_tests(
            0,
            "/g",
            Mode::Payload,
            Scope::Global,
        ))],
        counters.clone(),
        BrokerConfig {
            room_queue: 16,
            ..BrokerConfig::default()
        },
    )
    .start();
    let (tx, mut rx) = outbox(1024, 1 << 20);
    b.send(Join {
        info: info(0, "a", Scope::Global),
        outbox: tx,
        stats: Default::default(),
        tenant_cap: None,
    })
    .await
    .unwrap()
    .unwrap();
    for i in 0..BURST {
        b.do_send(RemoteDeliver {
            listener: ListenerId(0),
            target: RemoteTarget::Global,
            delivery: text(&i.to_string()),
        });
    }
    // Behind the burst in the rooms' order: everything before it was handled.
    rooms_caught_up(&b).await;
    let dropped = counters.dropped(DropReason::RoomBacklog);
    assert!((BURST - 20..BURST).contains(&dropped), "{dropped} dropped");
    let mut received = 0;
    while let Some(d) = rx.data.try_recv() {
        if d != text("sync") {
            received += 1;
        }
    }
    assert_eq!(received + dropped, BURST);
}

/// An admin publish to one session whose queue is full waits for it to drain
/// instead of closing it; one that stays full past the timeout is closed 4009.
#[actix::test]
async fn an_admin_publish_to_a_full_session_waits_then_closes_it_4009() {
    let b = Broker::new(
        vec![Arc::new(ListenerPolicy::for_tests(
            0,
            "/a",
            Mode::Payload,
            Scope::Tenant,
        ))],
        Arc::new(Counters::new(1)),
        BrokerConfig {
            slow_consumer_timeout: Duration::from_millis(200),
            ..BrokerConfig::default()
        },
    )
    .start();
    let me = info(0, "t", Scope::Tenant);
    let (_, mut rx) = join(&b, me.clone()).await;
    let publish = |s: &str| Publish {
        listener: ListenerId(0),
        target: Target::Session(me.id.clone()),
        delivery: text(s),
    };
    // `join` gives a queue of 16 messages.
    for i in 0..16 {
        assert_eq!(b.send(publish(&i.to_string())).await.unwrap(), 1);
    }
    let waiting = b.send(publish("16"));
    let drain = async {
        actix::clock::sleep(Duration::from_millis(50)).await;
        for i in 0..8 {
            assert_eq!(rx.data.recv().await, Some(text(&i.to_string())));
        }
    };
    let (n, ()) = tokio::join!(waiting, drain);
    assert_eq!(n.unwrap(), 1, "taken once the queue drained");
    assert_eq!(rx.control.try_recv(), None);
    // Nobody drains now: full again, then closed after the timeout.
    for i in 17..24 {
        assert_eq!(b.send(publish(&i.to_string())).await.unwrap(), 1);
    }
    let t0 = std::time::Instant::now();
    assert_eq!(b.send(publish("late")).await.unwrap(), 0);
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        rx.control.try_recv(),
        Some(Control::Close(CloseCode::SlowConsumer))
    );
}
