//! Several nodes sharing one real Redis (started by the test on a free loopback
//! port): cross-node routing per scope, cluster-wide admin answers and kicks,
//! the cluster-wide tenant cap, a Redis outage, and a node that crashes.

use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use wsplus::settings::{Mode, Scope};
use wsplus_actors::broker::{
    GetSession, GetStats, Kick, KickTenant, ListSessions, ListTenants, Publish, Target,
};
use wsplus_actors::counters::DropReason;
use wsplus_actors::{CloseCode, Delivery, ListenerId, SessionId, TenantId};

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

/// Connects to the message-mode session-scope listener and learns the
/// session's id from its own echo.
async fn connect_with_id(app: &TestApp, tenant: &str) -> (Ws, String) {
    let mut ws = app.connect("/ws/self", tenant).await;
    ws.send_text("{}").await;
    let v = ws.recv_json().await;
    let id = v["_session"]["id"].as_str().unwrap().to_owned();
    (ws, id)
}

const SELF_LISTENER: ListenerId = ListenerId(2);

fn admin_publish(target: Target, body: &str) -> Publish {
    Publish {
        listener: SELF_LISTENER,
        target,
        delivery: Delivery::Text(body.to_owned().into()),
    }
}

#[tokio::test]
async fn admin_requests_through_any_node_see_and_act_on_the_whole_cluster() {
    let redis = RedisServer::start();
    let spawn = |n| {
        let mut s = cluster_settings(&redis, n);
        s.listeners[2].mode = Mode::Message;
        TestApp::spawn(s)
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let (mut a1, id_a1) = connect_with_id(&a, "acme").await;
    let (mut b1, id_b1) = connect_with_id(&b, "acme").await;
    let (mut b2, _) = connect_with_id(&b, "globex").await;

    let stats = a.broker.send(GetStats).await.unwrap();
    assert_eq!((stats.connections, stats.tenants), (3, 2), "{stats:?}");
    let rows = b.broker.send(ListTenants).await.unwrap();
    let rows: Vec<_> = rows
        .iter()
        .map(|r| (r.listener.as_str(), r.tenant.as_str(), r.connections))
        .collect();
    assert_eq!(rows, [("/ws/self", "acme", 2), ("/ws/self", "globex", 1)]);
    let sessions = a
        .broker
        .send(ListSessions {
            tenant: TenantId::new("acme"),
        })
        .await
        .unwrap();
    let mut ids: Vec<_> = sessions.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    let mut want = vec![id_a1.clone(), id_b1.clone()];
    want.sort();
    assert_eq!(ids, want);
    let one = a
        .broker
        .send(GetSession {
            id: SessionId::from_string(id_b1.as_str()),
        })
        .await
        .unwrap()
        .expect("a session on node b is found through node a");
    assert_eq!(
        (one.tenant.as_str(), one.listener.as_str()),
        ("acme", "/ws/self")
    );
    assert_eq!(
        a.broker
            .send(GetSession {
                id: SessionId::random()
            })
            .await
            .unwrap(),
        None
    );

    // Publish through one node reaches sessions on the other.
    let to_b1 = admin_publish(
        Target::Session(SessionId::from_string(id_b1.as_str())),
        r#"{"to":"b1"}"#,
    );
    assert_eq!(a.broker.send(to_b1).await.unwrap(), 1);
    assert_eq!(b1.recv_json().await["to"], "b1");
    let to_acme = admin_publish(Target::Tenant(TenantId::new("acme")), r#"{"to":"acme"}"#);
    assert_eq!(b.broker.send(to_acme).await.unwrap(), 2);
    assert_eq!(a1.recv_json().await["to"], "acme");
    assert_eq!(b1.recv_json().await["to"], "acme");
    assert_eq!(
        a.broker
            .send(admin_publish(Target::Global, r#"{"to":"all"}"#))
            .await
            .unwrap(),
        3
    );
    for ws in [&mut a1, &mut b1, &mut b2] {
        assert_eq!(
            ws.recv_json().await["to"],
            "all",
            "globex never saw the acme ones"
        );
    }

    // Kicks through one node close sessions on the other with 4003.
    let kick = Kick {
        id: SessionId::from_string(id_b1.as_str()),
        code: CloseCode::Kicked,
    };
    assert!(a.broker.send(kick).await.unwrap());
    assert_eq!(b1.recv_close().await.0, 4003);
    let kick_tenant = KickTenant {
        tenant: TenantId::new("acme"),
        listener: None,
        subject: None,
        code: CloseCode::Kicked,
    };
    eventually("b1 left the registry", || async {
        b.broker.send(GetStats).await.unwrap().connections == 2
    })
    .await;
    assert_eq!(b.broker.send(kick_tenant).await.unwrap(), 1);
    assert_eq!(a1.recv_close().await.0, 4003);
    eventually("only globex is left", || async {
        let s = a.broker.send(GetStats).await.unwrap();
        (s.connections, s.tenants) == (1, 1)
    })
    .await;
}

#[tokio::test]
async fn the_tenant_cap_counts_connections_on_every_node() {
    let redis = RedisServer::start();
    let spawn = |n| {
        let mut s = cluster_settings(&redis, n);
        s.listeners[0].session.max_connections_per_tenant = 3;
        TestApp::spawn(s)
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let url = |app: &TestApp| app.ws_url("/ws/events", Some(&token("acme", None, 3600)));
    let a1 = Ws::connect(&url(&a)).await;
    let _a2 = Ws::connect(&url(&a)).await;
    let _b1 = Ws::connect(&url(&b)).await;
    for node in [&a, &b] {
        let refused = Ws::try_connect(&url(node))
            .await
            .err()
            .expect("cap reached");
        assert_eq!(refused.status, 429, "{}", refused.body);
    }
    // Other tenants and other listeners have their own counts.
    let _g = b.connect("/ws/events", "globex").await;
    let _other = b.connect("/ws/all", "acme").await;
    let slots: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg("wsplus:slots:{/ws/events:acme}")
        .query(&mut redis.conn())
        .unwrap();
    let counts: Vec<_> = {
        let mut v: Vec<_> = slots
            .iter()
            .map(|(n, c)| (n.as_str(), c.split(':').next().unwrap()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(counts, [("a", "2"), ("b", "1")]);

    // A slot freed on node a can be taken on node b.
    a1.close().await;
    let deadline = Instant::now() + WAIT;
    let _b2 = loop {
        match Ws::try_connect(&url(&b)).await {
            Ok(ws) => break ws,
            Err(r) => assert_eq!(r.status, 429),
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(Ws::try_connect(&url(&a)).await.err().unwrap().status, 429);
}

#[tokio::test]
async fn a_redis_outage_keeps_local_delivery_and_cross_node_delivery_resumes() {
    let mut redis = RedisServer::start();
    let a = TestApp::spawn(cluster_settings(&redis, "a"));
    let b = TestApp::spawn(cluster_settings(&redis, "b"));
    let mut a1 = a.connect("/ws/events", "acme").await;
    let mut a2 = a.connect("/ws/events", "acme").await;
    let mut b1 = b.connect("/ws/events", "acme").await;
    a1.send_text("before").await;
    all_get(&mut [&mut a1, &mut a2, &mut b1], "before").await;

    redis.kill();
    let cluster_state = |addr| async move {
        let (status, body) = http_get(addr, "/readyz").await;
        // Still ready: the node serves its own sessions (docs/cluster.md,
        // docs/operations.md#health-checks).
        assert_eq!(status, 200, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "ready", "{body}");
        body["cluster"]["state"].as_str().unwrap().to_owned()
    };
    for n in [&a, &b] {
        eventually("readyz reports the cluster degraded", || async {
            cluster_state(n.admin).await == "degraded"
        })
        .await;
    }
    // Local delivery goes on; the copy for node b is lost and counted.
    a1.send_text("during").await;
    all_get(&mut [&mut a1, &mut a2], "during").await;
    let stats = a.broker.send(GetStats).await.unwrap();
    assert!(stats.dropped >= 1, "{stats:?}");
    let (_, body) = http_get(a.admin, "/readyz").await;
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(ready["cluster"]["lost"].as_u64().unwrap() >= 1, "{body}");
    // A tenant that shows up on node b during the outage.
    let mut b_new = b.connect("/ws/events", "initech").await;

    redis.restart();
    for n in [&a, &b] {
        eventually("readyz reports the cluster connected again", || async {
            cluster_state(n.admin).await == "connected"
        })
        .await;
    }
    a1.send_text("after").await;
    all_get(&mut [&mut a1, &mut a2, &mut b1], "after").await;
    b1.send_text("from-b").await;
    all_get(&mut [&mut a1, &mut a2, &mut b1], "from-b").await;
    let mut a_new = a.connect("/ws/events", "initech").await;
    a_new.send_text("initech").await;
    all_get(&mut [&mut a_new, &mut b_new], "initech").await;
}

#[tokio::test]
async fn a_crashed_node_frees_its_slots_and_registry_within_the_lease() {
    let redis = RedisServer::start();
    let capped = |n| {
        let mut s = node_settings(&redis, n);
        s.listeners[0].session.max_connections_per_tenant = 2;
        s
    };
    let a = TestApp::spawn(capped("a"));
    let mut b = ChildNode::spawn(capped("b")).await;
    let tok = token("acme", None, 3600);
    let _b1 = Ws::connect(&b.ws_url("/ws/events", &tok)).await;
    let _b2 = Ws::connect(&b.ws_url("/ws/events", &tok)).await;
    let a_url = a.ws_url("/ws/events", Some(&tok));
    assert_eq!(Ws::try_connect(&a_url).await.err().unwrap().status, 429);
    let mut conn = redis.conn();
    let registered: usize = redis::cmd("HLEN")
        .arg("wsplus:reg:{b}")
        .query(&mut conn)
        .unwrap();
    assert_eq!(registered, 2);
    assert_eq!(a.broker.send(GetStats).await.unwrap().connections, 2);

    b.kill();
    let killed = Instant::now();
    let lease = Duration::from_secs(LEASE_S);
    let deadline = killed + lease + Duration::from_secs(3);
    let _a1 = loop {
        match Ws::try_connect(&a_url).await {
            Ok(ws) => break ws,
            Err(r) => assert_eq!(r.status, 429),
        }
        assert!(Instant::now() < deadline, "node b's slots were never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let freed_after = killed.elapsed();
    assert!(
        freed_after <= lease + Duration::from_secs(1),
        "{freed_after:?}"
    );
    eventually_within(
        lease * 2,
        "node b left the registry and the node set",
        || async {
            let mut conn = redis.conn();
            let reg: bool = redis::cmd("EXISTS")
                .arg("wsplus:reg:{b}")
                .query(&mut conn)
                .unwrap();
            let live: Option<f64> = redis::cmd("ZSCORE")
                .arg("wsplus:nodes")
                .arg("b")
                .query(&mut conn)
                .unwrap();
            !reg && live.is_none()
        },
    )
    .await;
    assert_eq!(a.broker.send(GetStats).await.unwrap().connections, 1);
}

#[tokio::test]
async fn a_clean_stop_leaves_the_cluster_at_once() {
    let redis = RedisServer::start();
    let a = TestApp::spawn(node_settings(&redis, "a"));
    let b = TestApp::spawn(node_settings(&redis, "b"));
    let mut b1 = b.connect("/ws/events", "acme").await;
    let live = |conn: &mut redis::Connection| -> Option<f64> {
        redis::cmd("ZSCORE")
            .arg("wsplus:nodes")
            .arg("b")
            .query(conn)
            .unwrap()
    };
    let mut conn = redis.conn();
    assert!(live(&mut conn).is_some());
    assert_eq!(a.broker.send(GetStats).await.unwrap().connections, 1);
    b.shutdown().await;
    assert_eq!(b1.recv_close().await.0, 1001);
    assert_eq!(live(&mut conn), None, "no waiting for the lease");
    let reg: bool = redis::cmd("EXISTS")
        .arg("wsplus:reg:{b}")
        .query(&mut conn)
        .unwrap();
    assert!(!reg);
    assert_eq!(a.broker.send(GetStats).await.unwrap().connections, 0);
}

/// `cluster.timeout_ms` bounds an admin request: a node that holds a lease
/// but never answers (here a member added to the node set by hand) delays
/// the answer by that long, not by the default 2 s, and the answer has the
/// figures of the nodes that did answer.
#[tokio::test]
async fn an_admin_request_waits_for_a_silent_node_at_most_timeout_ms() {
    let redis = RedisServer::start();
    let mut s = node_settings(&redis, "a");
    s.cluster.timeout_ms = 200;
    let a = TestApp::spawn(s);
    let _a1 = a.connect("/ws/events", "acme").await;
    let mut conn = redis.conn();
    let (secs, _micros): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    let () = redis::cmd("ZADD")
        .arg("wsplus:nodes")
        .arg((secs + 60) * 1000)
        .arg("silent")
        .query(&mut conn)
        .unwrap();
    let started = Instant::now();
    let stats = a.broker.send(GetStats).await.unwrap();
    let took = started.elapsed();
    assert_eq!(stats.connections, 1, "{stats:?}");
    assert!(
        took >= Duration::from_millis(200),
        "the silent node was not asked: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "waited longer than timeout_ms: {took:?}"
    );
}

/// `cluster.queue` bounds what waits for Redis: while Redis holds writes
/// (`CLIENT PAUSE ... WRITE`, short of `timeout_ms`), messages beyond the
/// queue are dropped and counted as `backplane`; the local sender still gets
/// every one of them.
#[tokio::test]
async fn messages_beyond_cluster_queue_are_dropped_and_counted_while_redis_stalls() {
    const SENT: usize = 200;
    let redis = RedisServer::start();
    let mut s = node_settings(&redis, "a");
    s.cluster.queue = 16;
    s.cluster.lease_s = 15;
    s.cluster.timeout_ms = 10_000;
    let a = TestApp::spawn(s);
    let mut a1 = a.connect("/ws/events", "acme").await;
    a1.send_text("warm-up").await;
    assert_eq!(a1.recv_text().await, "warm-up");
    let lost = || a.counters.dropped(DropReason::Backplane);
    assert_eq!(lost(), 0);

    let mut conn = redis.conn();
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2000)
        .arg("WRITE")
        .query(&mut conn)
        .unwrap();
    let paused = Instant::now();
    for i in 0..SENT {
        a1.send_text(&format!("m{i}")).await;
    }
    for i in 0..SENT {
        assert_eq!(a1.recv_text().await, format!("m{i}"));
    }
    assert!(
        paused.elapsed() < Duration::from_millis(1500),
        "too slow to fill the queue during the pause: {:?}",
        paused.elapsed()
    );
    // At most the queue and the batch stalled in the writer got through.
    let dropped = lost();
    assert!(
        dropped as usize >= SENT - 16 - 64,
        "{dropped} of {SENT} dropped"
    );
    let () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut conn)
        .unwrap();
}

/// `node_id = ""` (the default): each node draws its own id at start, so two
/// such nodes are two members of the cluster, not one.
#[tokio::test]
async fn nodes_without_an_id_get_distinct_random_ones() {
    let redis = RedisServer::start();
    let a = TestApp::spawn(node_settings(&redis, ""));
    let b = TestApp::spawn(node_settings(&redis, ""));
    let node = |addr| async move {
        let (status, body) = http_get(addr, "/readyz").await;
        assert_eq!(status, 200, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        body["cluster"]["node"].as_str().unwrap().to_owned()
    };
    let (id_a, id_b) = (node(a.admin).await, node(b.admin).await);
    assert!(!id_a.is_empty() && !id_b.is_empty());
    assert_ne!(id_a, id_b);
    let _a1 = a.connect("/ws/events", "acme").await;
    let _b1 = b.connect("/ws/events", "acme").await;
    let stats = a.broker.send(GetStats).await.unwrap();
    assert_eq!(stats.connections, 2, "{stats:?}");
}
