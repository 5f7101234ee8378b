//! The cluster series of `GET /metrics` on two nodes sharing a real Redis:
//! they move with cross-node traffic and with a Redis outage.

use common::cluster::*;
use common::metrics::*;
use common::*;

#[tokio::test]
async fn cross_node_counters_follow_traffic_and_an_outage() {
    let mut redis = RedisServer::start();
    let a = TestApp::spawn(node_settings(&redis, "a"));
    let b = TestApp::spawn(node_settings(&redis, "b"));
    let raw = get_metrics(a.admin, Some(ADMIN_TOKEN)).await;
    assert!(
        !raw.body.contains(&redis.url()),
        "the Redis URL is not exported"
    );
    let m = parse(&raw.body).unwrap();
    assert_eq!(m.value("wsplus_cluster_connected", &[]), Some(1.0));
    for c in ["published", "received", "lost"] {
        let name = format!("wsplus_cluster_{c}_total");
        assert_eq!(m.value(&name, &[]), Some(0.0), "{name}");
    }
    assert!(m.value("wsplus_cluster_connects_total", &[]).is_some());

    let mut a1 = a.connect("/ws/events", "acme").await;
    let mut b1 = b.connect("/ws/events", "acme").await;
    a1.send_text("hop").await;
    assert_eq!(b1.recv_text().await, "hop");
    assert_eq!(a1.recv_text().await, "hop");
    wait_value(a.admin, "wsplus_cluster_published_total", &[], 1.0).await;
    wait_value(b.admin, "wsplus_cluster_received_total", &[], 1.0).await;

    redis.kill();
    wait_value(a.admin, "wsplus_cluster_connected", &[], 0.0).await;
    // Local delivery goes on; the copy for node b is lost and counted twice
    // over: as a cluster loss and as a drop for the backplane reason.
    a1.send_text("during").await;
    assert_eq!(a1.recv_text().await, "during");
    let m = wait_until(a.admin, "the lost message is counted", |m| {
        m.value("wsplus_cluster_lost_total", &[]) >= Some(1.0)
    })
    .await;
    assert_eq!(
        m.value("wsplus_dropped_total", &[("reason", "backplane")]),
        m.value("wsplus_cluster_lost_total", &[])
    );
    assert_eq!(m.value("wsplus_cluster_published_total", &[]), Some(1.0));
}
