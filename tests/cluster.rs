//! Several nodes sharing one real Redis (started by the test on a free loopback
//! port): cross-node routing per scope, cluster-wide admin answers and kicks,
//! the cluster-wide tenant cap, a Redis outage, and a node that crashes.

mod cluster_support;
mod common;

use cluster_support::*;
use common::*;
use wsplus::settings::Scope;

/// Listeners of every node: tenant scope at /ws/events, global at /ws/all,
/// session scope at /ws/self.
fn cluster_settings(redis: &RedisServer, node: &str) -> wsplus::settings::Settings {
    let mut s = node_settings(redis, node);
    let mut all = listener("/ws/all");
    all.scope = Scope::Global;
    let mut own = listener("/ws/self");
    own.scope = Scope::Session;
    s.listeners.push(all);
    s.listeners.push(own);
    s
}

/// Checks that the next message on every socket is `want`.
async fn all_get(clients: &mut [&mut Ws], want: &str) {
    for ws in clients.iter_mut() {
        assert_eq!(ws.recv_text().await, want);
    }
}

#[tokio::test]
async fn messages_cross_nodes_once_per_recipient_and_never_cross_tenants() {
    let redis = RedisServer::start();
    let nodes: Vec<TestApp> = ["a", "b", "c"]
        .into_iter()
        .map(|n| TestApp::spawn(cluster_settings(&redis, n)))
        .collect();

    // Tenant scope: two acme clients and one globex client per node.
    let mut acme = Vec::new();
    let mut globex = Vec::new();
    for n in &nodes {
        acme.push(n.connect("/ws/events", "acme").await);
        acme.push(n.connect("/ws/events", "acme").await);
        globex.push(n.connect("/ws/events", "globex").await);
    }
    acme[0].send_text("acme-1").await;
    acme[3].send_text("acme-2").await; // from node b
    for ws in acme.iter_mut() {
        let mut got = vec![ws.recv_text().await, ws.recv_text().await];
        got.sort();
        assert_eq!(got, ["acme-1", "acme-2"]);
    }
    // Sentinels published on each origin node after its message: whatever those
    // nodes had sent before reached every client before the sentinel, so a
    // duplicate or a leak across tenants would show up here.
    globex[0].send_text("globex-end").await;
    acme[0].send_text("acme-end-a").await;
    all_get(&mut globex.iter_mut().collect::<Vec<_>>(), "globex-end").await;
    all_get(&mut acme.iter_mut().collect::<Vec<_>>(), "acme-end-a").await;
    acme[3].send_text("acme-end-b").await;
    all_get(&mut acme.iter_mut().collect::<Vec<_>>(), "acme-end-b").await;

    // Global scope: every session of the listener on every node, any tenant.
    let mut all = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        all.push(n.connect("/ws/all", &format!("t{i}")).await);
    }
    all[1].send_text("hello everyone").await;
    all_get(&mut all.iter_mut().collect::<Vec<_>>(), "hello everyone").await;
    all[1].send_text("global-end").await;
    all_get(&mut all.iter_mut().collect::<Vec<_>>(), "global-end").await;

    // Session scope stays with the sender, whatever node the tenant is on.
    let mut own_a = nodes[0].connect("/ws/self", "acme").await;
    let mut own_b = nodes[1].connect("/ws/self", "acme").await;
    own_a.send_text("mine-a").await;
    own_b.send_text("mine-b").await;
    assert_eq!(own_a.recv_text().await, "mine-a");
    assert_eq!(own_b.recv_text().await, "mine-b");

    // Nothing else arrived anywhere: one more sentinel per listener and tenant.
    globex[2].send_text("globex-last").await;
    all_get(&mut globex.iter_mut().collect::<Vec<_>>(), "globex-last").await;
    all[0].send_text("global-last").await;
    all_get(&mut all.iter_mut().collect::<Vec<_>>(), "global-last").await;
    own_a.send_text("own-last").await;
    assert_eq!(own_a.recv_text().await, "own-last");

    for n in &nodes {
        let (status, body) = http_get(n.admin, "/readyz").await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn a_node_receives_messages_for_a_tenant_it_just_got() {
    let redis = RedisServer::start();
    let a = TestApp::spawn(cluster_settings(&redis, "a"));
    let b = TestApp::spawn(cluster_settings(&redis, "b"));
    let mut sender = a.connect("/ws/events", "acme").await;
    for i in 0..10 {
        // b has no acme room before this connect: the subscription is in place
        // before the 101, so the very next message reaches the new client.
        let mut fresh = b.connect("/ws/events", "acme").await;
        sender.send_text(&format!("m{i}")).await;
        assert_eq!(fresh.recv_text().await, format!("m{i}"));
        assert_eq!(sender.recv_text().await, format!("m{i}"));
        fresh.close().await;
        b.wait_snapshot(wsplus_actors::broker::Snapshot::default())
            .await;
    }
}
