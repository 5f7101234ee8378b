//! The same bridge configured on two nodes of a Redis cluster (as when every
//! node runs the same file): each node publishes what the upstream sends, and
//! neither forwards the other's copy back up, so no loop forms between them.

use common::bridge::*;
use common::cluster::{node_settings, RedisServer};
use common::*;
use wsplus::settings::{Mode, Settings};

fn node(redis: &RedisServer, id: &str, mode: Mode) -> Settings {
    let mut s = node_settings(redis, id);
    s.listeners[0].mode = mode;
    s
}

/// Message mode: each node recognises the other's copy by its bridge stamp.
#[actix_rt::test]
async fn a_bridge_on_every_node_does_not_loop() {
    twin_bridges(Mode::Message).await;
}

/// Payload mode: no stamp; each node recognises the other's copy as one of
/// the frames it published itself.
#[actix_rt::test]
async fn a_bridge_on_every_node_does_not_loop_in_payload_mode() {
    twin_bridges(Mode::Payload).await;
}

async fn twin_bridges(mode: Mode) {
    let redis = RedisServer::start();
    let up = TestApp::spawn(settings(mode));
    let mut b = bridge(&up.ws_url(PATH, None));
    b.into = Some(local_end());
    b.from = Some(local_end());
    b.mode = mode;
    let a = local_with(node(&redis, "a", mode), vec![b.clone()]);
    let c = local_with(node(&redis, "c", mode), vec![b]);
    let mut hq = up.connect(PATH, UP_TENANT).await;
    // hq and one bridge session per node upstream; each node's membership.
    wait_sessions(&up, 3).await;
    wait_sessions(&a, 1).await;
    wait_sessions(&c, 1).await;

    hq.send_text(r#"{"n":1}"#).await;
    // Each node's bridge published its copy and recognised the other node's.
    for node in [&a, &c] {
        wait_bridge(node, "hq", "one echo", |v| v["echoes_dropped"] == 1).await;
    }
    for node in [&a, &c] {
        let view = bridge_view(node, "hq").await;
        assert_eq!(view["messages_in"], 1, "{view}");
        assert_eq!(view["messages_out"], 0, "nothing went back up: {view}");
    }
    assert_eq!(up.counters.messages_in(), 1);
    assert_eq!(hq.recv_json().await["n"], 1);
}
