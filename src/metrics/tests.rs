//! Exposition unit tests: collectors fed known values, output read back as text.

use std::sync::Arc;

use wsplus_actors::broker::{ListenerLoad, Load, TenantView};
use wsplus_actors::counters::DropReason;
use wsplus_actors::{CloseCode, Counters, ListenerId};

use super::handshake::Handshakes;
use super::load::LoadMetrics;
use super::traffic::Traffic;
use super::*;
use crate::auth::AuthError;
use crate::error::{HandshakeError, Rejections};

/// Listener `/a` with 3 connections in 2 rooms, 1 of them beyond the listed
/// `tenants`; `/b` empty.
fn load(tenants: Vec<(&str, &str, usize)>) -> Load {
    Load {
        listeners: vec![
            ListenerLoad {
                path: "/a".into(),
                connections: 3,
                rooms: 2,
                other_tenants: 1,
            },
            ListenerLoad {
                path: "/b".into(),
                connections: 0,
                rooms: 0,
                other_tenants: 0,
            },
        ],
        tenants: tenants
            .into_iter()
            .map(|(l, t, n)| TenantView {
                listener: l.into(),
                tenant: t.into(),
                connections: n,
            })
            .collect(),
    }
}

fn lines(body: &str) -> Vec<&str> {
    body.lines().collect()
}

#[test]
fn traffic_and_rejections_are_prefixed_counters_with_every_label() {
    let counters = Arc::new(Counters::new(2));
    counters.listener(ListenerId(1)).messages_in.add(4);
    counters.add_messages_out(7);
    counters.add_dropped(DropReason::RateLimit);
    counters.add_dropped(DropReason::RateLimit);
    counters.add_close(CloseCode::TooBig);
    let rejections = Arc::new(Rejections::default());
    rejections.add(HandshakeError::Auth(AuthError::Expired));
    let body = render(vec![
        Box::new(Traffic {
            counters,
            paths: vec!["/a".into(), "/b".into()],
        }),
        Box::new(Handshakes(rejections)),
    ]);
    let l = lines(&body);
    for want in [
        "# TYPE wsplus_messages_in counter",
        "wsplus_messages_in_total{listener=\"/a\"} 0",
        "wsplus_messages_in_total{listener=\"/b\"} 4",
        "wsplus_messages_out_total 7",
        "wsplus_dropped_total{reason=\"rate_limit\"} 2",
        "wsplus_dropped_total{reason=\"backplane\"} 0",
        "wsplus_closes_total{code=\"1009\"} 1",
        "wsplus_closes_total{code=\"4003\"} 0",
        "# TYPE wsplus_uptime_seconds gauge",
        "# UNIT wsplus_uptime_seconds seconds",
        "wsplus_handshake_rejections_total{reason=\"expired\"} 1",
        "wsplus_handshake_rejections_total{reason=\"not_found\"} 0",
        "wsplus_handshake_rejections_total{reason=\"tenant_limit\"} 0",
    ] {
        assert!(l.contains(&want), "missing {want:?} in\n{body}");
    }
    assert_eq!(l.last(), Some(&"# EOF"));
    let reasons = l
        .iter()
        .filter(|s| s.starts_with("wsplus_handshake_rejections_total{"))
        .count();
    assert_eq!(reasons, HandshakeError::all_reasons().count());
}

#[test]
fn tenant_series_only_with_the_flag() {
    let rows = vec![("/a", "big", 2)];
    let off = render(vec![Box::new(LoadMetrics {
        load: load(rows.clone()),
        tenant_labels: false,
    })]);
    let l = lines(&off);
    assert!(
        l.contains(&"wsplus_connections{listener=\"/a\"} 3"),
        "{off}"
    );
    assert!(l.contains(&"wsplus_rooms{listener=\"/b\"} 0"), "{off}");
    assert!(!off.contains("wsplus_tenant"), "{off}");

    let on = render(vec![Box::new(LoadMetrics {
        load: load(rows),
        tenant_labels: true,
    })]);
    let l = lines(&on);
    for want in [
        "wsplus_tenant_connections{listener=\"/a\",tenant=\"big\"} 2",
        "wsplus_tenant_connections_other{listener=\"/a\"} 1",
        "wsplus_tenant_connections_other{listener=\"/b\"} 0",
    ] {
        assert!(l.contains(&want), "missing {want:?} in\n{on}");
    }
}

#[test]
fn label_values_from_tokens_are_escaped() {
    let body = render(vec![Box::new(LoadMetrics {
        load: load(vec![("/a", "x\"} 99\nwsplus_forged 1 \\", 1)]),
        tenant_labels: true,
    })]);
    let want = r#"wsplus_tenant_connections{listener="/a",tenant="x\"} 99\nwsplus_forged 1 \\"} 1"#;
    assert!(lines(&body).contains(&want), "{body}");
    assert!(!body.lines().any(|l| l.starts_with("wsplus_forged")));
}
