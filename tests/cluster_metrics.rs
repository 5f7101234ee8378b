//! The cluster series of `GET /metrics` on two nodes sharing a real Redis:
//! they move with cross-node traffic and with a Redis outage.

use common::cluster::*;
use common::metrics::*;
use common::*;

/// Every `reason` of `wsplus_cluster_lost_total`.
const REASONS: [&str; 4] = ["queue_full", "queue_bytes", "redis_down", "broker_full"];

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
    for c in ["published", "received"] {
        let name = format!("wsplus_cluster_{c}_total");
        assert_eq!(m.value(&name, &[]), Some(0.0), "{name}");
    }
    for reason in REASONS {
        let lost = m.value("wsplus_cluster_lost_total", &[("reason", reason)]);
        assert_eq!(lost, Some(0.0), "{reason}");
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
        m.value("wsplus_cluster_lost_total", &[("reason", "redis_down")]) >= Some(1.0)
    })
    .await;
    let lost: f64 = REASONS
        .iter()
        .map(|r| {
            m.value("wsplus_cluster_lost_total", &[("reason", r)])
                .unwrap()
        })
        .sum();
    assert_eq!(
        m.value("wsplus_dropped_total", &[("reason", "backplane")]),
        Some(lost)
    );
    assert_eq!(m.value("wsplus_cluster_published_total", &[]), Some(1.0));
}

#[tokio::test]
async fn messages_beyond_cluster_queue_bytes_are_dropped_and_counted_by_reason() {
    const SENT: usize = 100;
    const SIZE: usize = 4096;
    let redis = RedisServer::start();
    let mut s = node_settings(&redis, "a");
    s.cluster.queue_bytes = 64 << 10; // 16 messages of 4 KiB
    s.cluster.timeout_ms = 10_000;
    s.cluster.lease_s = 15;
    let a = TestApp::spawn(s);
    let mut a1 = a.connect("/ws/events", "acme").await;
    let body = "x".repeat(SIZE);
    a1.send_text(&body).await;
    assert_eq!(a1.recv_text().await, body);

    // Writes stall: the queue fills up in bytes long before it does in messages.
    redis.command(&["CLIENT", "PAUSE", "3000", "WRITE"]);
    for _ in 0..SENT {
        a1.send_text(&body).await;
    }
    for _ in 0..SENT {
        assert_eq!(a1.recv_text().await.len(), SIZE);
    }
    let m = wait_until(a.admin, "the drops are counted", |m| {
        m.value("wsplus_cluster_lost_total", &[("reason", "queue_bytes")]) >= Some(1.0)
    })
    .await;
    let by_bytes = m
        .value("wsplus_cluster_lost_total", &[("reason", "queue_bytes")])
        .unwrap() as usize;
    // At most queue_bytes were held: 16 messages (plus the name of the channel
    // each carries, so fewer).
    assert!(by_bytes >= SENT - 16, "{by_bytes} of {SENT} dropped");
    assert_eq!(
        m.value("wsplus_cluster_lost_total", &[("reason", "queue_full")]),
        Some(0.0)
    );
    redis.command(&["CLIENT", "UNPAUSE"]);
}
