//! `tenants.store = "redis"` on two nodes sharing a real redis-server: a
//! change made on one node applies on the other within a second (refusals and
//! closing sessions included), a tenant's `max_connections` counts its
//! sessions on every node, a node started later loads every change, and a
//! record Redis holds that does not validate stops a node at start.

use std::time::{Duration, Instant};

use common::admin::*;
use common::cluster::*;
use common::*;
use serde_json::json;
use wsplus::cluster::RedisTarget;
use wsplus::settings::{Settings, TenantStore};
use wsplus::tenants::TenantRegistry;

const PATH: &str = "/ws/events";

fn node(redis: &RedisServer, id: &str) -> Settings {
    let mut s = node_settings(redis, id);
    s.tenants.store = TenantStore::Redis;
    s
}

async fn refused_reason(app: &TestApp, tenant: &str) -> Option<(u16, String)> {
    let url = app.ws_url(PATH, Some(&token(tenant, Some("u"), 600)));
    match Ws::try_connect(&url).await {
        Ok(ws) => {
            ws.close().await;
            None
        }
        Err(r) => {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            Some((r.status, body["reason"].as_str().unwrap().to_owned()))
        }
    }
}

#[actix_rt::test]
async fn a_change_on_one_node_applies_on_every_node_within_a_second() {
    let redis = RedisServer::start();
    let a = TestApp::spawn(node(&redis, "a"));
    let b = TestApp::spawn(node(&redis, "b"));
    let mut on_b = b.connect(PATH, "acme").await;

    let t = Instant::now();
    Req::new("PUT", "/admin/v1/tenants/acme/settings")
        .json(&json!({"enabled": false}))
        .send(&a)
        .await
        .expect_ok();
    assert_eq!(on_b.recv_close().await.0, 4003);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    eventually_within(Duration::from_secs(1), "b refuses acme", || async {
        refused_reason(&b, "acme").await == Some((403, "tenant_disabled".into()))
    })
    .await;
    let listed = get(&b, "/admin/v1/tenants/acme/settings").await.expect_ok();
    assert_eq!(
        listed,
        json!({"id": "acme", "enabled": false, "source": "api"})
    );

    // Deleted on b: a accepts acme again.
    delete(&b, "/admin/v1/tenants/acme/settings")
        .await
        .expect_ok();
    eventually_within(Duration::from_secs(1), "a accepts acme", || async {
        refused_reason(&a, "acme").await.is_none()
    })
    .await;
}

#[actix_rt::test]
async fn a_tenant_cap_counts_every_node() {
    let redis = RedisServer::start();
    let a = TestApp::spawn(node(&redis, "a"));
    let b = TestApp::spawn(node(&redis, "b"));
    Req::new("PUT", "/admin/v1/tenants/big/settings")
        .json(&json!({"max_connections": 2}))
        .send(&a)
        .await
        .expect_ok();
    eventually_within(Duration::from_secs(1), "b has the record", || async {
        get(&b, "/admin/v1/tenants/big/settings").await.status == 200
    })
    .await;
    let _one = a.connect(PATH, "big").await;
    let _two = b.connect(PATH, "big").await;
    assert_eq!(
        refused_reason(&a, "big").await,
        Some((429, "tenant_limit".into()))
    );
    assert_eq!(
        refused_reason(&b, "big").await,
        Some((429, "tenant_limit".into()))
    );
    // Unregistered tenants are not capped.
    let _others: Vec<Ws> = connect_many(&a, "free", 3).await;
}

async fn connect_many(app: &TestApp, tenant: &str, n: usize) -> Vec<Ws> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(app.connect(PATH, tenant).await);
    }
    out
}

#[actix_rt::test]
async fn a_node_started_later_loads_every_change() {
    let redis = RedisServer::start();
    let a = TestApp::spawn(node(&redis, "a"));
    for (id, body) in [
        ("acme", json!({"rate_limit_per_s": 5})),
        ("globex", json!({"enabled": false})),
    ] {
        Req::new("PUT", &format!("/admin/v1/tenants/{id}/settings"))
            .json(&body)
            .send(&a)
            .await
            .expect_ok();
    }
    a.shutdown().await;
    let c = TestApp::spawn(node(&redis, "c"));
    let list = get(&c, "/admin/v1/tenant-settings").await.expect_ok();
    assert_eq!(
        list,
        json!([
            {"id": "acme", "enabled": true, "rate_limit_per_s": 5, "source": "api"},
            {"id": "globex", "enabled": false, "source": "api"},
        ])
    );
    assert_eq!(
        refused_reason(&c, "globex").await,
        Some((403, "tenant_disabled".into()))
    );
}

#[actix_rt::test]
async fn an_invalid_record_in_redis_or_no_redis_is_a_startup_error() {
    let redis = RedisServer::start();
    let mut conn = redis.conn();
    redis::cmd("HSET")
        .arg("wsplus:tenants")
        .arg("acme")
        .arg("{\"id\": \"acme\", \"max_connections\": -3}")
        .query::<()>(&mut conn)
        .unwrap();
    let mut s = node(&redis, "x");
    let env = wsplus::env::Env::from_map(Default::default());
    let target = RedisTarget::from_settings(&s.cluster, &env).unwrap();
    let registry = std::sync::Arc::new(TenantRegistry::open(&s.tenants, target.as_ref()).unwrap());
    let err = registry.connect().await.unwrap_err().to_string();
    assert!(err.contains("record \"acme\" is unreadable"), "{err}");

    s.cluster.redis_url = Some(format!("redis://127.0.0.1:{}/", free_port()));
    let nowhere = RedisTarget::from_settings(&s.cluster, &env).unwrap();
    let registry = std::sync::Arc::new(TenantRegistry::open(&s.tenants, nowhere.as_ref()).unwrap());
    let err = registry.connect().await.unwrap_err().to_string();
    assert!(err.starts_with("tenant store (redis)"), "{err}");
}
