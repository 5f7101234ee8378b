//! Bridge test support: an upstream wsplus and a local wsplus whose bridge
//! dials it, both real servers on port 0; the admin view of the bridges; and
//! a poll-until helper for states that have no event to await (a reconnect
//! counter, a connection flag).

use std::collections::HashMap;

use serde_json::Value;
use wsplus::settings::{BridgeAuth, BridgeEndpoint, BridgeSettings, Mode, Settings};

use crate::{base_settings, poll_until, token, TestApp, ADMIN_TOKEN};

/// The local listener bridges publish into and forward from.
pub const PATH: &str = "/ws/events";
/// The local tenant of every test bridge.
pub const TENANT: &str = "acme";
/// The upstream tenant the bridge's token is for.
pub const UP_TENANT: &str = "hq";
/// The variable holding the bridge's upstream token.
pub const TOKEN_VAR: &str = "BRIDGE_TOKEN";

/// `(listener, tenant)` = ([`PATH`], [`TENANT`]).
pub fn local_end() -> BridgeEndpoint {
    BridgeEndpoint {
        listener: PATH.into(),
        tenant: TENANT.into(),
    }
}

/// A JWT bridge called `hq` to `url` with fast reconnects, and neither
/// direction set.
pub fn bridge(url: &str) -> BridgeSettings {
    BridgeSettings {
        name: "hq".into(),
        url: url.into(),
        auth: BridgeAuth::Jwt,
        token_env: Some(TOKEN_VAR.into()),
        reconnect_min_ms: 50,
        reconnect_max_s: 1,
        ..Default::default()
    }
}

/// Test settings with the listener in `mode`.
pub fn settings(mode: Mode) -> Settings {
    let mut s = base_settings();
    s.listeners[0].mode = mode;
    s
}

/// A local server running `bridges`, with a valid upstream token for
/// [`UP_TENANT`] in [`TOKEN_VAR`].
pub fn local_with(s: Settings, bridges: Vec<BridgeSettings>) -> TestApp {
    local_with_token(s, bridges, &token(UP_TENANT, Some("bridge-hq"), 3600))
}

/// A local server running `bridges` with `upstream_token` in [`TOKEN_VAR`].
pub fn local_with_token(
    s: Settings,
    bridges: Vec<BridgeSettings>,
    upstream_token: &str,
) -> TestApp {
    let vars = HashMap::from([(TOKEN_VAR.to_owned(), upstream_token.to_owned())]);
    local_with_env(s, bridges, vars)
}

/// A local server running `bridges` with `vars` in its environment (plus a
/// valid upstream token in [`TOKEN_VAR`] unless `vars` sets it).
pub fn local_with_env(
    mut s: Settings,
    bridges: Vec<BridgeSettings>,
    mut vars: HashMap<String, String>,
) -> TestApp {
    s.bridges = bridges;
    vars.entry(TOKEN_VAR.to_owned())
        .or_insert_with(|| token(UP_TENANT, Some("bridge-hq"), 3600));
    TestApp::spawn_with_env(s, vars)
}

/// `GET path` on the admin port with the admin token: (status, body).
pub async fn admin_text(app: &TestApp, path: &str) -> (u16, String) {
    let mut resp = awc::Client::default()
        .get(app.admin_url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin request");
    let body = resp.body().await.expect("admin body");
    (
        resp.status().as_u16(),
        String::from_utf8(body.to_vec()).expect("utf-8"),
    )
}

/// `GET path` on the admin port with the admin token: (status, JSON body).
pub async fn admin_get(app: &TestApp, path: &str) -> (u16, Value) {
    let (status, body) = admin_text(app, path).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (status, json)
}

/// The admin view of the bridge called `name`.
pub async fn bridge_view(app: &TestApp, name: &str) -> Value {
    let (status, list) = admin_get(app, "/admin/v1/bridges").await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .expect("array")
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no bridge {name} in {list}"))
}

/// Polls the admin view of `name` until `check` holds; returns that view.
pub async fn wait_bridge(
    app: &TestApp,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    poll_until(&format!("{name} {what}"), || bridge_view(app, name), check).await
}

/// Waits until the bridge `name` is connected.
pub async fn wait_connected(app: &TestApp, name: &str) -> Value {
    wait_bridge(app, name, "connected", |v| v["connected"] == true).await
}

/// Waits until `app` has `n` sessions (a bridge's membership counts as one).
pub async fn wait_sessions(app: &TestApp, n: usize) {
    let sessions = || async { app.snapshot().await.sessions };
    poll_until(&format!("{n} sessions"), sessions, |got| *got == n).await;
}

/// Waits until `app` has accepted at least `n` messages from clients.
pub async fn wait_messages_in(app: &TestApp, n: u64) {
    let count = || async { app.counters.messages_in() };
    poll_until(&format!("{n} messages in"), count, |got| *got >= n).await;
}
