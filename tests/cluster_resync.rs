//! A cluster that heals: a client that joins while its node rewrites its state
//! after losing Redis is reached from other nodes afterwards, slot counts return
//! to the truth, and two nodes recover from Redis restarts and a killed
//! subscription connection while messages flow (the chaos test, < 60 s).

use std::time::Duration;

use common::cluster::*;
use common::*;
use wsplus_actors::broker::{GetSession, ListSessions};
use wsplus_actors::{SessionId, TenantId};

/// Tenant cap high enough never to refuse: it makes nodes count slots.
const CAP: usize = 100;

fn spawn(redis: &RedisServer, node: &str, timeout_ms: u64) -> TestApp {
    let mut s = node_settings(redis, node);
    s.cluster.timeout_ms = timeout_ms;
    s.listeners[0].session.max_connections_per_tenant = CAP;
    TestApp::spawn(s)
}

/// Every session of `tenant` in the cluster (asked through `asked`) is known
/// to `other`'s admin API, whichever node holds it; returns how many there are.
async fn every_session_known(asked: &TestApp, other: &TestApp, tenant: &str) -> usize {
    let sessions = asked
        .broker
        .send(ListSessions {
            tenant: TenantId::new(tenant),
        })
        .await
        .unwrap();
    for s in &sessions {
        let found = other
            .broker
            .send(GetSession {
                id: SessionId::from_string(s.id.as_str()),
            })
            .await
            .unwrap();
        assert!(
            found.is_some(),
            "session {} unknown to the other node",
            s.id
        );
    }
    sessions.len()
}

#[tokio::test]
async fn a_client_joining_during_a_resync_is_reached_from_other_nodes_and_counts_heal() {
    let redis = RedisServer::start();
    // A timeout longer than the pause: node a's first resync attempt waits out
    // the pause and succeeds with the state it copied before the client joined.
    let a = spawn(&redis, "a", 5000);
    let b = spawn(&redis, "b", 5000);
    let mut b1 = b.connect("/ws/events", "acme").await;

    // Every subscription connection killed, then Redis frozen for 2 s.
    redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    redis.command(&["CLIENT", "PAUSE", "2000"]);
    wait_cluster_state(&[a.admin], "degraded").await;
    // Scenario timing, not synchronisation: join once node a's resync is under
    // way (it starts at once, or within one lease tick before the fix).
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut a1 = a.connect("/ws/events", "acme").await;

    wait_cluster_state(&[a.admin, b.admin], "connected").await;
    b1.send_text("b-to-a").await;
    assert_eq!(a1.recv_text().await, "b-to-a");
    a1.send_text("a-to-b").await;
    assert_eq!(b1.recv_text().await, "b-to-a");
    assert_eq!(b1.recv_text().await, "a-to-b");
    // Node b's admin API knows the session that joined node a meanwhile.
    eventually("b knows a1's session", || async {
        every_session_known(&a, &b, "acme").await == 2
    })
    .await;

    // Slot counts are the truth, and a count that went wrong in Redis (a lost
    // release) is rewritten within a lease tick.
    let truth = [("a".to_string(), 1), ("b".to_string(), 1)].into();
    poll_until(
        "slot counts",
        async || redis.slot_counts("/ws/events", "acme"),
        |c| *c == truth,
    )
    .await;
    let far = "7:99999999999999";
    redis.command(&["HSET", "wsplus:slots:{/ws/events:acme}", "a", far]);
    poll_until(
        "slot counts healed",
        async || redis.slot_counts("/ws/events", "acme"),
        |c| *c == truth,
    )
    .await;
    drop(a1);
    poll_until(
        "a's slot released",
        async || redis.slot_counts("/ws/events", "acme"),
        |c| *c == [("b".to_string(), 1)].into(),
    )
    .await;
}

#[tokio::test]
async fn two_nodes_heal_after_redis_restarts_and_a_killed_subscription_while_messages_flow() {
    let mut redis = RedisServer::start();
    let a = spawn(&redis, "a", 1000);
    let b = spawn(&redis, "b", 1000);
    let admins = [a.admin, b.admin];
    let mut peers = Vec::new();
    for node in [&a, &a, &b, &b] {
        peers.push(Peer::new(node.connect("/ws/events", "acme").await));
    }
    // A steady flow from one client of each node while Redis misbehaves.
    let flow = {
        let (from_a, from_b) = (peers[0].sender(), peers[2].sender());
        tokio::spawn(async move {
            for i in 0.. {
                if from_a.send(format!("flow-a-{i}")).is_err()
                    || from_b.send(format!("flow-b-{i}")).is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    redis.kill();
    wait_cluster_state(&admins, "degraded").await;
    // Clients of a new tenant join both nodes during the outage.
    let mut late = [
        Peer::new(a.connect("/ws/events", "initech").await),
        Peer::new(b.connect("/ws/events", "initech").await),
    ];
    redis.restart();
    wait_cluster_state(&admins, "connected").await;
    redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    redis.kill();
    redis.restart();
    wait_cluster_state(&admins, "connected").await;
    flow.abort();

    // Every node delivers cross-node again, for the tenant it had before and
    // for the one that joined during the outage.
    for (i, sender) in [0, 2].into_iter().enumerate() {
        let mark = format!("mark-{i}");
        peers[sender].send(&mark);
        for p in peers.iter_mut() {
            p.recv_until(&mark).await;
        }
    }
    for i in 0..2 {
        let mark = format!("late-{i}");
        late[i].send(&mark);
        for p in late.iter_mut() {
            p.recv_until(&mark).await;
        }
    }
    // No session is unknown to the other node's admin API.
    for (asked, other) in [(&a, &b), (&b, &a)] {
        assert_eq!(every_session_known(asked, other, "acme").await, 4);
        assert_eq!(every_session_known(asked, other, "initech").await, 2);
    }
    let truth = [("a".to_string(), 2), ("b".to_string(), 2)].into();
    poll_until(
        "slot counts",
        async || redis.slot_counts("/ws/events", "acme"),
        |c| *c == truth,
    )
    .await;
    // /readyz tells the truth both ways.
    redis.kill();
    wait_cluster_state(&admins, "degraded").await;
}
