//! Bridges obey their local tenant's record like its clients do: a disabled
//! tenant is neither published into nor forwarded from until it is enabled
//! again, and the record's `max_connections` bounds the bridge's membership
//! too. Two real servers on port 0, as in tests/bridges.rs.

use common::admin::*;
use common::bridge::*;
use common::*;
use serde_json::{json, Value};
use wsplus::settings::{Mode, Settings};
use wsplus::tenants::TenantSpec;

/// Payload-mode settings with [`TENANT`] registered.
fn registered() -> Settings {
    let mut s = settings(Mode::Payload);
    s.tenants.registered = vec![TenantSpec::new(TENANT)];
    s
}

async fn patch(app: &TestApp, body: Value) {
    Req::new("PATCH", &format!("/admin/v1/tenants/{TENANT}/settings"))
        .json(&body)
        .send(app)
        .await
        .expect_ok();
}

#[actix_rt::test]
async fn a_disabled_tenant_is_not_served_by_its_bridge_until_enabled_again() {
    let up = TestApp::spawn(settings(Mode::Payload));
    let mut b = bridge(&up.ws_url(PATH, None));
    b.into = Some(local_end());
    b.from = Some(local_end());
    b.mode = Mode::Payload;
    let local = local_with(registered(), vec![b]);
    let mut hq = up.connect(PATH, UP_TENANT).await;
    wait_sessions(&local, 1).await;
    wait_sessions(&up, 2).await;

    // Disabled: the membership is closed (4003) and not joined again, and
    // what the upstream sends is dropped and counted.
    patch(&local, json!({"enabled": false})).await;
    wait_sessions(&local, 0).await;
    let dropped = bridge_view(&local, "hq").await["dropped"].as_u64().unwrap();
    hq.send_text("while disabled").await;
    assert_eq!(hq.recv_text().await, "while disabled");
    let view = wait_bridge(&local, "hq", "dropped the frame", |v| {
        v["dropped"] == dropped + 1
    })
    .await;
    let error = view["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("acme") && error.contains("disabled"),
        "{view}"
    );
    assert_eq!(
        local.snapshot().await.sessions,
        0,
        "no membership came back"
    );

    // Enabled: the bridge joins again and carries both ways.
    patch(&local, json!({"enabled": true})).await;
    wait_sessions(&local, 1).await;
    let mut client = local.connect(PATH, TENANT).await;
    wait_sessions(&local, 2).await;
    hq.send_text("after").await;
    assert_eq!(client.recv_text().await, "after");
    assert_eq!(hq.recv_text().await, "after");
    client.send_text("up").await;
    assert_eq!(hq.recv_text().await, "up");
}

#[actix_rt::test]
async fn the_records_max_connections_bounds_the_bridges_membership() {
    let up = TestApp::spawn(settings(Mode::Payload));
    let mut b = bridge(&up.ws_url(PATH, None));
    b.from = Some(local_end());
    let local = local_with(registered(), vec![b]);
    wait_sessions(&local, 1).await;
    let _client = local.connect(PATH, TENANT).await;
    wait_sessions(&local, 2).await;
    let bridge_session = {
        let (_, sessions) =
            admin_get(&local, &format!("/admin/v1/tenants/{TENANT}/sessions")).await;
        let member = sessions
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subject"] == "hq")
            .cloned()
            .expect("the bridge's membership");
        member["id"].as_str().unwrap().to_owned()
    };

    // Lowered to 1 (closing nobody), then the membership is kicked: the
    // client holds the tenant's only connection, so the bridge may not join.
    patch(&local, json!({"max_connections": 1})).await;
    delete(&local, &format!("/admin/v1/sessions/{bridge_session}"))
        .await
        .expect_ok();
    let view = wait_bridge(&local, "hq", "refused by the tenant's cap", |v| {
        v["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("tenant connection limit"))
    })
    .await;
    assert_eq!(local.snapshot().await.sessions, 1, "{view}");
    assert_eq!(
        session_ids(&local, TENANT).await.len(),
        1,
        "only the client"
    );
}
