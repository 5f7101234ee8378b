//! The admin API on a two-node cluster (Redis backend): requests to one node
//! see, reach and close sessions on the other
//! (docs/cluster.md#admin-api-across-nodes).

use common::admin::*;
use common::cluster::{node_settings, RedisServer};
use common::*;
use serde_json::json;

/// A node with the admin test listeners on the shared Redis.
fn node(redis: &RedisServer, id: &str) -> TestApp {
    let mut s = node_settings(redis, id);
    s.listeners = admin_settings().listeners;
    TestApp::spawn(s)
}

#[actix_rt::test]
async fn one_nodes_admin_api_sees_and_acts_on_the_whole_cluster() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut on_b = b.connect(MSG, "acme").await;
    let on_b_id = session_ids(&b, "acme").await[0].clone();
    let mut others = [b.connect(MSG, "acme").await, a.connect(MSG, "acme").await];

    eventually("node a lists the three acme sessions", || async {
        get(&a, "/admin/v1/tenants").await.expect_ok()
            == json!([{"listener": MSG, "tenant": "acme", "connections": 3}])
    })
    .await;
    assert_eq!(
        get(&a, "/admin/v1/stats").await.expect_ok()["connections"],
        3
    );
    let one = get(&a, &format!("/admin/v1/sessions/{on_b_id}")).await;
    assert_eq!(one.expect_ok()["listener"], MSG);

    let to_tenant =
        json!({"listener": MSG, "scope": "tenant", "tenant": "acme", "payload": {"n": 1}});
    let res = post_json(&a, "/admin/v1/publish", &to_tenant).await;
    assert_eq!(res.expect_ok(), json!({"delivered": 3}));
    for ws in std::iter::once(&mut on_b).chain(&mut others) {
        let v = ws.recv_json().await;
        assert_eq!(v["n"], 1);
        assert_eq!(v["_session"]["type"], "admin");
        assert_eq!(v["_session"]["tenantId"], "acme");
    }

    let to_session =
        json!({"listener": MSG, "scope": "session", "session": on_b_id, "payload": {"n": 2}});
    let res = post_json(&a, "/admin/v1/publish", &to_session).await;
    assert_eq!(res.expect_ok(), json!({"delivered": 1}));
    assert_eq!(on_b.recv_json().await["n"], 2);

    let res = delete(&a, &format!("/admin/v1/sessions/{on_b_id}")).await;
    assert_eq!(res.expect_ok(), json!({"closed": 1}));
    assert_eq!(on_b.recv_close().await.0, 4003);
    eventually("node a sees two acme sessions left", || async {
        session_ids(&a, "acme").await.len() == 2
    })
    .await;
    let res = delete(&a, "/admin/v1/tenants/acme/sessions").await;
    assert_eq!(res.expect_ok(), json!({"closed": 2}));
    for ws in &mut others {
        assert_eq!(ws.recv_close().await.0, 4003);
    }
}

/// One user's sessions are closed on every node, and only theirs.
#[actix_rt::test]
async fn kicking_one_user_reaches_every_node() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let as_user = |app: &TestApp, sub: &str| app.ws_url(MSG, Some(&token("acme", Some(sub), 3600)));
    let mut alice = [
        Ws::connect(&as_user(&a, "alice")).await,
        Ws::connect(&as_user(&b, "alice")).await,
    ];
    let mut bob = Ws::connect(&as_user(&b, "bob")).await;
    eventually("node a sees the three acme sessions", || async {
        session_ids(&a, "acme").await.len() == 3
    })
    .await;
    let res = delete(&a, "/admin/v1/tenants/acme/sessions?subject=alice").await;
    assert_eq!(res.expect_ok(), json!({"closed": 2}));
    for ws in &mut alice {
        assert_eq!(ws.recv_close().await.0, 4003);
    }
    bob.send_text("{}").await;
    assert_eq!(bob.recv_json().await["_session"]["subject"], "bob");
}
