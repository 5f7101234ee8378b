//! `GET /metrics` against a real server: the exposition parsed with a strict
//! OpenMetrics reader and compared with what real WebSocket clients just did.

use common::metrics::*;
use common::*;
use wsplus::settings::{OnRateLimit, Scope, Settings};
use wsplus_actors::broker::{Kick, ListSessions};
use wsplus_actors::{CloseCode, SessionId, TenantId};

/// Two listeners: `/ws/events` (tenant scope) and `/ws/all` (global scope).
fn two_listeners() -> Settings {
    let mut s = base_settings();
    let mut all = listener("/ws/all");
    all.scope = Scope::Global;
    s.listeners.push(all);
    s
}

#[tokio::test]
async fn metrics_need_the_admin_token_and_never_show_secrets() {
    let app = TestApp::spawn(base_settings());
    for token in [None, Some("wrong-token")] {
        let a = get_metrics(app.admin, token).await;
        assert_eq!(a.status, 401, "token {token:?}: {}", a.body);
        assert!(!a.body.contains("wsplus_"), "{}", a.body);
    }
    let m = get_metrics(app.admin, Some(ADMIN_TOKEN)).await;
    assert_eq!(m.status, 200);
    for secret in [SECRET, ADMIN_TOKEN] {
        assert!(!m.body.contains(secret), "secret in the exposition");
    }
    let m = parse(&m.body).unwrap();
    assert!(
        m.families
            .keys()
            .all(|f| f.starts_with("wsplus_") || f.starts_with("process_")),
        "{:?}",
        m.families.keys()
    );
    assert_eq!(m.families["wsplus_connections"].kind, "gauge");
    assert_eq!(m.families["wsplus_dropped"].kind, "counter");
    let uptime = &m.families["wsplus_uptime_seconds"];
    assert_eq!(
        (uptime.kind.as_str(), uptime.unit.as_deref()),
        ("gauge", Some("seconds"))
    );
    assert!(m.value("wsplus_uptime_seconds", &[]).is_some());
    // Single node: no cluster series.
    assert!(!m.families.keys().any(|f| f.starts_with("wsplus_cluster")));
}

#[tokio::test]
async fn connections_and_rooms_per_listener_follow_clients() {
    let app = TestApp::spawn(two_listeners());
    let m = scrape(app.admin).await;
    for l in ["/ws/events", "/ws/all"] {
        assert_eq!(m.value("wsplus_connections", &[("listener", l)]), Some(0.0));
        assert_eq!(m.value("wsplus_rooms", &[("listener", l)]), Some(0.0));
    }
    let clients = vec![
        app.connect("/ws/events", "acme").await,
        app.connect("/ws/events", "acme").await,
        app.connect("/ws/events", "globex").await,
        app.connect("/ws/all", "acme").await,
    ];
    // Joined before the 101: no waiting needed.
    let m = scrape(app.admin).await;
    assert_eq!(
        m.value("wsplus_connections", &[("listener", "/ws/events")]),
        Some(3.0)
    );
    assert_eq!(
        m.value("wsplus_rooms", &[("listener", "/ws/events")]),
        Some(2.0)
    );
    assert_eq!(
        m.value("wsplus_connections", &[("listener", "/ws/all")]),
        Some(1.0)
    );
    for ws in clients {
        ws.close().await;
    }
    wait_value(
        app.admin,
        "wsplus_connections",
        &[("listener", "/ws/events")],
        0.0,
    )
    .await;
    wait_value(
        app.admin,
        "wsplus_connections",
        &[("listener", "/ws/all")],
        0.0,
    )
    .await;
    wait_value(
        app.admin,
        "wsplus_rooms",
        &[("listener", "/ws/events")],
        0.0,
    )
    .await;
}

#[tokio::test]
async fn messages_in_out_and_deliveries_match_an_exchange() {
    let app = TestApp::spawn(two_listeners());
    let mut acme: Vec<Ws> = Vec::new();
    for _ in 0..3 {
        acme.push(app.connect("/ws/events", "acme").await);
    }
    let mut other = app.connect("/ws/events", "globex").await;
    acme[0].send_text("one").await;
    acme[0].send_text("two").await;
    for ws in acme.iter_mut() {
        assert_eq!(ws.recv_text().await, "one");
        assert_eq!(ws.recv_text().await, "two");
    }
    // A sentinel on the other tenant: nothing of acme's reached it.
    other.send_text("end").await;
    assert_eq!(other.recv_text().await, "end");

    let events = [("listener", "/ws/events")];
    wait_value(app.admin, "wsplus_messages_out_total", &[], 7.0).await;
    let m = scrape(app.admin).await;
    assert_eq!(m.value("wsplus_messages_in_total", &events), Some(3.0));
    assert_eq!(m.value("wsplus_deliveries_total", &events), Some(7.0));
    let all = [("listener", "/ws/all")];
    assert_eq!(m.value("wsplus_messages_in_total", &all), Some(0.0));
    assert_eq!(m.value("wsplus_deliveries_total", &all), Some(0.0));
}

#[tokio::test]
async fn refused_handshakes_count_by_reason_from_zero() {
    let app = TestApp::spawn(base_settings());
    let m = scrape(app.admin).await;
    let reasons = m.label_values("wsplus_handshake_rejections_total", "reason");
    for r in [
        "missing_token",
        "malformed",
        "algorithm_not_allowed",
        "unknown_key",
        "invalid_signature",
        "expired",
        "not_yet_valid",
        "invalid_issuer",
        "invalid_audience",
        "invalid_tenant",
        "origin",
        "tenant_limit",
        "not_found",
    ] {
        assert!(
            reasons.iter().any(|x| x == r),
            "no series for {r}: {reasons:?}"
        );
    }
    assert!(m
        .series("wsplus_handshake_rejections_total")
        .iter()
        .all(|(_, v)| *v == 0.0));

    let refusals = [
        (app.ws_url("/ws/events", None), 401),
        (app.ws_url("/ws/events", Some("not-a-jwt")), 401),
        (app.ws_url("/ws/nowhere", None), 404),
        (app.ws_url("/ws/nowhere", None), 404),
    ];
    for (url, status) in refusals {
        assert_eq!(
            Ws::try_connect(&url).await.err().map(|r| r.status),
            Some(status)
        );
    }
    let m = scrape(app.admin).await;
    let count = |reason| m.value("wsplus_handshake_rejections_total", &[("reason", reason)]);
    assert_eq!(count("missing_token"), Some(1.0));
    assert_eq!(count("malformed"), Some(1.0));
    assert_eq!(count("not_found"), Some(2.0));
    assert_eq!(count("expired"), Some(0.0));
}

#[tokio::test]
async fn close_codes_sent_are_counted() {
    let mut s = base_settings();
    s.listeners[0].max_message_bytes = 16;
    let app = TestApp::spawn(s);
    let code = |c: &'static str| [("code", c)];
    let m = scrape(app.admin).await;
    assert_eq!(m.value("wsplus_closes_total", &code("1009")), Some(0.0));

    let mut big = app.connect("/ws/events", "acme").await;
    big.send_text(&"x".repeat(17)).await;
    assert_eq!(big.recv_close().await.0, 1009);
    wait_value(app.admin, "wsplus_closes_total", &code("1009"), 1.0).await;

    let mut kicked = app.connect("/ws/events", "kicked").await;
    let sessions = app
        .broker
        .send(ListSessions {
            tenant: TenantId::new("kicked"),
        })
        .await
        .unwrap();
    let id = SessionId::from_string(sessions[0].id.as_str());
    let kick = Kick {
        id,
        code: CloseCode::Kicked,
    };
    assert!(app.broker.send(kick).await.unwrap());
    assert_eq!(kicked.recv_close().await.0, 4003);
    wait_value(app.admin, "wsplus_closes_total", &code("4003"), 1.0).await;
    let m = scrape(app.admin).await;
    assert_eq!(m.value("wsplus_closes_total", &code("1009")), Some(1.0));
    assert_eq!(m.value("wsplus_closes_total", &code("4008")), Some(0.0));
}

#[tokio::test]
async fn a_peer_dropped_by_the_heartbeat_is_counted_without_a_close_code() {
    let mut s = base_settings();
    s.listeners[0].heartbeat_s = 1;
    let app = TestApp::spawn(s);
    let m = scrape(app.admin).await;
    assert_eq!(m.value("wsplus_heartbeat_timeouts_total", &[]), Some(0.0));
    // Never read: tungstenite answers pings only while the stream is read.
    let _dead = app.connect("/ws/events", "acme").await;
    wait_value(app.admin, "wsplus_heartbeat_timeouts_total", &[], 1.0).await;
    let m = scrape(app.admin).await;
    assert_eq!(
        m.value("wsplus_connections", &[("listener", "/ws/events")]),
        Some(0.0)
    );
    for code in ["1000", "1001", "1008"] {
        assert_eq!(m.value("wsplus_closes_total", &[("code", code)]), Some(0.0));
    }
}

#[tokio::test]
async fn a_rate_limited_flood_counts_its_drops() {
    const SENT: f64 = 60.0;
    let mut s = base_settings();
    s.listeners[0].scope = Scope::Session;
    s.listeners[0].session.rate_limit_per_s = 5;
    s.listeners[0].session.on_rate_limit = OnRateLimit::Drop;
    let app = TestApp::spawn(s);
    let mut ws = app.connect("/ws/events", "acme").await;
    for i in 0..SENT as u32 {
        ws.send_text(&format!("m{i}")).await;
    }
    let events = [("listener", "/ws/events")];
    let rate = [("reason", "rate_limit")];
    let m = wait_until(app.admin, "every frame counted in or dropped", |m| {
        let inn = m.value("wsplus_messages_in_total", &events).unwrap_or(0.0);
        inn + m.value("wsplus_dropped_total", &rate).unwrap_or(0.0) == SENT
    })
    .await;
    let inn = m.value("wsplus_messages_in_total", &events).unwrap();
    assert!((5.0..SENT / 2.0).contains(&inn), "{inn} accepted of {SENT}");
    // Exactly the accepted ones came back (session scope echoes to the sender).
    for _ in 0..inn as u32 {
        ws.recv_text().await;
    }
    wait_value(app.admin, "wsplus_messages_out_total", &[], inn).await;
    let slow = [("reason", "slow_consumer")];
    assert_eq!(m.value("wsplus_dropped_total", &slow), Some(0.0));
}

#[tokio::test]
async fn tenant_series_only_with_the_flag_capped_and_escaped() {
    let plain = TestApp::spawn(base_settings());
    let _ws = plain.connect("/ws/events", "acme").await;
    let m = scrape(plain.admin).await;
    assert_eq!(
        m.value("wsplus_connections", &[("listener", "/ws/events")]),
        Some(1.0)
    );
    assert!(
        !m.families.keys().any(|f| f.starts_with("wsplus_tenant")),
        "{:?}",
        m.families.keys()
    );

    let mut s = base_settings();
    s.metrics.tenant_labels = true;
    s.metrics.tenant_series = 2;
    let app = TestApp::spawn(s);
    // A tenant claim is any string: it must stay one label value.
    let weird = "we\"ird\\} 1\nwsplus_forged 1";
    let mut clients = Vec::new();
    for (tenant, n) in [("big", 3), (weird, 2), ("small", 1)] {
        for _ in 0..n {
            clients.push(app.connect("/ws/events", tenant).await);
        }
    }
    let m = scrape(app.admin).await;
    let tenant = |t| {
        m.value(
            "wsplus_tenant_connections",
            &[("listener", "/ws/events"), ("tenant", t)],
        )
    };
    assert_eq!(tenant("big"), Some(3.0));
    assert_eq!(tenant(weird), Some(2.0));
    assert_eq!(tenant("small"), None, "beyond tenant_series");
    assert_eq!(
        m.value(
            "wsplus_tenant_connections_other",
            &[("listener", "/ws/events")]
        ),
        Some(1.0)
    );
    assert!(!m.samples.keys().any(|(n, _)| n.contains("forged")));
}

/// `GET /metrics` with an `Accept` header: (content type, body).
async fn scrape_accepting(admin: std::net::SocketAddr, accept: Option<&str>) -> (String, String) {
    let r = common::admin::Req::new("GET", "/metrics")
        .accept(accept)
        .send_to(admin)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let content_type = r.header("content-type").expect("a content type").to_owned();
    (content_type, r.body)
}

/// The Prometheus text format (docs/metrics.md): clients that do not ask for
/// OpenMetrics (no `Accept`, curl, HTTP libraries: `Accept: */*`) get the text
/// format 0.0.4, with the same samples; Prometheus, which asks, gets
/// OpenMetrics.
#[tokio::test]
async fn clients_not_asking_for_openmetrics_get_the_prometheus_text_format() {
    let app = TestApp::spawn(base_settings());
    let _a = app.connect("/ws/events", "acme").await;
    let openmetrics = scrape(app.admin).await;
    for accept in [
        None,
        Some("*/*"),
        Some("text/plain"),
        Some("text/plain;version=0.0.4"),
    ] {
        let (content_type, body) = scrape_accepting(app.admin, accept).await;
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            !body.contains("# EOF") && !body.contains("# UNIT"),
            "{body}"
        );
        for line in [
            "# TYPE wsplus_connections gauge",
            "wsplus_connections{listener=\"/ws/events\"} 1",
            "# TYPE wsplus_handshake_rejections_total counter",
            "wsplus_handshake_rejections_total{reason=\"expired\"} 0",
            "# TYPE wsplus_closes_total counter",
        ] {
            assert!(body.lines().any(|l| l == line), "{line:?} missing:\n{body}");
        }
        // The same samples as the OpenMetrics scrape (uptime may have moved).
        let samples = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("wsplus_uptime"))
            .count();
        let expected = openmetrics
            .samples
            .keys()
            .filter(|(n, _)| n != "wsplus_uptime_seconds")
            .count();
        assert_eq!(samples, expected, "{body}");
    }
    let prometheus = "application/openmetrics-text;version=1.0.0,\
        text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (content_type, body) = scrape_accepting(app.admin, Some(prometheus)).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    parse(&body).unwrap();
}

/// The standard process families, under their standard names, with values
/// that describe this process (the test server runs inside the test process).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn process_metrics_have_their_standard_names_and_live_values() {
    let app = TestApp::spawn(base_settings());
    // Use some CPU time (the clock ticks in 10 ms steps) so it cannot be 0.
    let spin = std::time::Instant::now();
    let mut x = 0u64;
    while spin.elapsed() < std::time::Duration::from_millis(50) {
        x = std::hint::black_box(x.wrapping_add(1));
    }
    let m = scrape(app.admin).await;
    for (family, kind, unit) in [
        ("process_resident_memory_bytes", "gauge", Some("bytes")),
        ("process_virtual_memory_bytes", "gauge", Some("bytes")),
        ("process_open_fds", "gauge", None),
        ("process_max_fds", "gauge", None),
        ("process_cpu_seconds", "counter", Some("seconds")),
        ("process_start_time_seconds", "gauge", Some("seconds")),
    ] {
        let f = m
            .families
            .get(family)
            .unwrap_or_else(|| panic!("{family} missing: {:?}", m.families.keys()));
        assert_eq!(
            (f.kind.as_str(), f.unit.as_deref()),
            (kind, unit),
            "{family}"
        );
    }
    let v = |name: &str| m.value(name, &[]).unwrap_or_else(|| panic!("{name}"));
    let rss = v("process_resident_memory_bytes");
    assert!(rss > 1e6, "{rss}");
    assert!(v("process_virtual_memory_bytes") >= rss);
    // This test holds sockets open: the admin connection at least.
    let fds = v("process_open_fds");
    assert!(fds >= 4.0 && v("process_max_fds") >= fds, "{fds}");
    assert!(v("process_cpu_seconds_total") > 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = v("process_start_time_seconds");
    assert!(
        start <= now + 1.0 && start > now - 600.0,
        "{start} vs {now}"
    );
    // The Prometheus text format names them the same way.
    let (_, text) = scrape_accepting(app.admin, None).await;
    for line in [
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
    }
}
