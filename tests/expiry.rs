//! Session deadlines owned by the Broker: token expiry closes with 4001
//! (`on_token_expiry = disconnect`), `allow-stale` keeps the session,
//! `timeout_s` closes with 4002, the earlier deadline wins, and sessions that
//! leave take their timers with them.

use std::time::{Duration, Instant};

use common::auth::{claims, hmac, now, sign, with};
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;
use wsplus::settings::OnTokenExpiry;
use wsplus_actors::broker::Snapshot;

/// `/ws/events` (disconnect at exp), `/ws/stale` (allow-stale),
/// `/ws/timeout` (timeout_s = 1), `/ws/both` (timeout_s = 3, disconnect).
fn app() -> TestApp {
    let mut s = base_settings();
    let mut stale = listener("/ws/stale");
    stale.session.on_token_expiry = OnTokenExpiry::AllowStale;
    let mut timeout = listener("/ws/timeout");
    timeout.session.timeout_s = 1;
    let mut both = listener("/ws/both");
    both.session.timeout_s = 3;
    s.listeners.extend([stale, timeout, both]);
    TestApp::spawn(s)
}

/// A token for tenant `acme` expiring at the epoch second `exp`.
fn token_until(exp: i64) -> String {
    let ttl = u64::try_from(exp - now()).unwrap_or(0);
    token("acme", Some("user"), ttl)
}

#[tokio::test]
async fn an_expiring_token_closes_the_session_with_4001_at_exp() {
    let app = app();
    let exp = now() + 2;
    let started = Instant::now();
    let mut ws = Ws::connect(&app.ws_url("/ws/events", Some(&token_until(exp)))).await;
    assert_eq!(app.snapshot().await.timers, 1);
    // Usable until then.
    ws.send_text("before").await;
    assert_eq!(ws.recv_text().await, "before");
    let (code, _) = ws.recv_close().await;
    assert_eq!(code, 4001);
    // Not before exp (second precision), and not long after.
    assert!(now() >= exp, "closed at {} before exp {exp}", now());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    app.wait_snapshot(Snapshot::default()).await;
}

#[tokio::test]
async fn allow_stale_keeps_the_session_past_exp() {
    let app = app();
    let exp = now() + 1;
    let stale = token_until(exp);
    let mut ws = Ws::connect(&app.ws_url("/ws/stale", Some(&stale))).await;
    assert_eq!(app.snapshot().await.timers, 0, "no deadline to keep");
    // The passing of time is what is tested here.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(now() > exp);
    ws.send_text("still open").await;
    assert_eq!(ws.recv_text().await, "still open");
    // A new connection with the expired token is refused all the same.
    let refused = Ws::try_connect(&app.ws_url("/ws/stale", Some(&stale)))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("\"expired\""), "{}", refused.body);
    ws.close().await;
}

#[tokio::test]
async fn timeout_s_closes_with_4002() {
    let app = app();
    let started = Instant::now();
    let mut ws = app.connect("/ws/timeout", "acme").await;
    let (code, _) = ws.recv_close().await;
    assert_eq!(code, 4002);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    app.wait_snapshot(Snapshot::default()).await;
}

#[tokio::test]
async fn the_earlier_deadline_wins() {
    let app = app();
    // exp in 1–2 s, timeout at 3 s: token expiry first.
    let mut early_exp = Ws::connect(&app.ws_url("/ws/both", Some(&token_until(now() + 2)))).await;
    // exp in an hour, timeout at 3 s: timeout first.
    let mut late_exp = app.connect("/ws/both", "acme").await;
    assert_eq!(app.snapshot().await.timers, 2, "one timer per session");
    assert_eq!(early_exp.recv_close().await.0, 4001);
    assert_eq!(late_exp.recv_close().await.0, 4002);
    app.wait_snapshot(Snapshot::default()).await;
}

#[tokio::test]
async fn many_short_sessions_leave_no_timers_behind() {
    let app = app();
    for round in 0..5 {
        let mut open = Vec::new();
        for i in 0..20 {
            let path = if i % 2 == 0 { "/ws/events" } else { "/ws/both" };
            open.push(app.connect(path, &format!("t{round}-{}", i % 3)).await);
        }
        let snap = app.snapshot().await;
        assert_eq!((snap.sessions, snap.timers), (20, 20), "{snap:?}");
        for (i, ws) in open.into_iter().enumerate() {
            if i % 2 == 0 {
                ws.close().await;
            } else {
                ws.abort();
            }
        }
        app.wait_snapshot(Snapshot::default()).await;
    }
}

/// A token for tenant `acme` with `exp` given as any JSON number.
fn token_with_exp(exp: serde_json::Value) -> String {
    sign(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &with(claims("acme"), json!({ "exp": exp })),
        &hmac(SECRET.as_bytes()),
        Algorithm::HS256,
    )
}

/// RFC 7519's NumericDate may have a fraction: such an `exp` is a deadline
/// like any other (it used to leave the session without one).
#[tokio::test]
async fn a_fractional_exp_closes_with_4001_too() {
    let app = app();
    let exp = now() as f64 + 2.5;
    let mut ws = Ws::connect(&app.ws_url("/ws/events", Some(&token_with_exp(json!(exp))))).await;
    assert_eq!(app.snapshot().await.timers, 1);
    assert_eq!(ws.recv_close().await.0, 4001);
    assert!(now() as f64 >= exp.floor(), "closed before exp");
    app.wait_snapshot(Snapshot::default()).await;
}

/// `exp` must be in the future: `exp == now` is already expired (RFC 7519:
/// the current time must be before it).
#[tokio::test]
async fn exp_equal_to_now_is_expired() {
    let app = app();
    let refused = Ws::try_connect(&app.ws_url("/ws/events", Some(&token_with_exp(json!(now())))))
        .await
        .err()
        .expect("exp == now is refused");
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("\"expired\""), "{}", refused.body);
}

/// An `exp` too far away for the clock to represent is no deadline at all,
/// and neither refuses the token nor upsets the server.
#[tokio::test]
async fn an_exp_beyond_the_clock_is_accepted_without_a_deadline() {
    let app = app();
    for exp in [json!(10_000_000_000_000_000_000u64), json!(1e19)] {
        let mut ws = Ws::connect(&app.ws_url("/ws/events", Some(&token_with_exp(exp)))).await;
        ws.send_text("alive").await;
        assert_eq!(ws.recv_text().await, "alive");
        assert_eq!(app.snapshot().await.timers, 0);
        ws.close().await;
    }
    app.wait_snapshot(Snapshot::default()).await;
}
