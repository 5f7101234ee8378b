//! The admin console at `GET /` on the admin port: served without a token,
//! holding no data; and, in a real headless Chromium, an operator logging in
//! with the token, seeing a connected client among its tenant's sessions,
//! kicking it (4003), disabling the tenant (its next handshake gets 403),
//! publishing a message a client receives, and finding a channel a client
//! subscribed to in the channels view and publishing to it.
//!
//! Leaves a screenshot of the whole console in the target directory
//! (`$CARGO_TARGET_TMPDIR/console.png`); with `WSPLUS_UPDATE_SCREENSHOTS=1`
//! also in docs/console.png, which docs/operations.md shows. A plain run
//! leaves the work tree as it found it.

use std::panic::AssertUnwindSafe;
use std::path::Path;

use common::admin::*;
use common::browser::{js, wait_js_logging, BrowserTools, Chromedriver, Profile, BROWSER_WAIT};
use common::channels::{channels_listener, Chan, CHANNELS};
use common::*;
use fantoccini::{Client, Locator};
use futures_util::FutureExt;
use serde_json::{json, Value};
use wsplus::settings::{ChannelsSettings, Scope};

#[actix_rt::test]
async fn the_page_and_its_assets_need_no_token_and_the_data_does() {
    let app = TestApp::spawn(base_settings());
    for (path, media) in [
        ("/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let res = Req::new("GET", path).authorization(None).send(&app).await;
        assert_eq!(res.status, 200, "{path}");
        assert!(res.header("content-type").unwrap().starts_with(media));
        let csp = res.header("content-security-policy").unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
    }
    let page = Req::new("GET", "/")
        .authorization(None)
        .send(&app)
        .await
        .body;
    assert!(
        page.contains("/console/console.js") && !page.contains("http"),
        "no CDN"
    );
    let script = Req::new("GET", "/console/console.js")
        .authorization(None)
        .send(&app)
        .await
        .body;
    assert!(script.contains("sessionStorage") && !script.contains("localStorage"));
    for path in [
        "/admin/v1/stats",
        "/admin/v1/tenant-settings",
        "/console/other.js",
    ] {
        Req::new("GET", path)
            .authorization(None)
            .send(&app)
            .await
            .expect_error(401);
    }
}

#[tokio::test]
async fn an_operator_kicks_disables_and_publishes_from_the_console() {
    let Some(tools) = BrowserTools::find() else {
        return;
    };
    let mut settings = base_settings();
    settings.listeners.push(channels_listener(
        CHANNELS,
        Scope::Tenant,
        // Presence and history, so the channel detail shows them where the
        // server serves them.
        ChannelsSettings {
            presence: true,
            history_size: 10,
            history_ttl_s: 300,
            ..Default::default()
        },
    ));
    let app = TestApp::spawn(settings);
    let driver = Chromedriver::start(&tools.chromedriver).await;
    let profile = Profile::new();
    let browser = driver.session(&tools.chromium, &profile.0).await;
    let outcome = AssertUnwindSafe(scenario(&browser, &app))
        .catch_unwind()
        .await;
    let _ = browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn wait_js(c: &Client, what: &str, script: &str) -> Value {
    let logs = "return document.getElementById('status').textContent + ' | ' + \
                document.getElementById('login-error').textContent;";
    wait_js_logging(c, what, script, logs).await
}

/// Clicks the element `css` selects. The console rebuilds its tables when the
/// data they show changes, so an element found just before a refresh may be
/// gone: find it again until the click lands.
async fn click(c: &Client, css: &str) {
    let deadline = tokio::time::Instant::now() + BROWSER_WAIT;
    loop {
        let tried = match c.find(Locator::Css(css)).await {
            Ok(e) => e.click().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match tried {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() >= deadline => panic!("click {css}: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

async fn fill(c: &Client, id: &str, text: &str) {
    let field = c.find(Locator::Id(id)).await.expect(id);
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn scenario(c: &Client, app: &TestApp) {
    let mut acme = app.connect("/ws/events", "acme").await;
    let mut globex = app.connect("/ws/events", "globex").await;
    let acme_id = session_ids(app, "acme").await.remove(0);

    c.goto(&format!("http://{}/", app.admin))
        .await
        .expect("open /");
    wait_js(
        c,
        "the login form",
        "return !document.getElementById('login').hidden;",
    )
    .await;
    fill(c, "token", "not-the-token").await;
    click(c, "#login-form button").await;
    wait_js(
        c,
        "a wrong token refused",
        "return document.getElementById('login-error').textContent.includes('refused');",
    )
    .await;
    fill(c, "token", ADMIN_TOKEN).await;
    click(c, "#login-form button").await;

    let row = "tr[data-tenant=\"acme\"]";
    wait_js(
        c,
        "acme listed with its connection",
        &format!("return document.querySelector('{row} .connections')?.textContent === '1';"),
    )
    .await;
    let stored = js(
        c,
        "return [sessionStorage.getItem('wsplus.admin.token'), localStorage.length, document.cookie];",
    )
    .await;
    assert_eq!(stored, serde_json::json!([ADMIN_TOKEN, 0, ""]));

    // The overview once the charts have a few points of traffic, for the docs.
    for round in 1..=5u32 {
        for i in 0..(round * 8) {
            globex.send_text(&format!("traffic {i}")).await;
            globex.recv_text().await;
        }
        let polled = format!("return wsplusConsole.polls >= {};", round + 1);
        wait_js(c, "the next poll", &polled).await;
    }

    // The tenant's sessions, with the connected client; kick it.
    click(c, &format!("{row} button.sessions")).await;
    let session_row = format!("tr[data-session=\"{acme_id}\"]");
    wait_js(
        c,
        "the client among acme's sessions",
        &format!("return document.querySelector('{session_row}') !== null;"),
    )
    .await;
    click(c, &format!("{session_row} button.kick")).await;
    assert_eq!(acme.recv_close().await.0, 4003);

    // Disable acme: its next handshake is refused.
    click(c, &format!("{row} button.toggle")).await;
    wait_js(
        c,
        "acme shown disabled",
        &format!("return document.querySelector('{row}')?.classList.contains('disabled');"),
    )
    .await;
    let url = app.ws_url("/ws/events", Some(&token("acme", Some("user"), 600)));
    let Err(refused) = Ws::try_connect(&url).await else {
        panic!("a disabled tenant connected");
    };
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("tenant_disabled"), "{}", refused.body);

    // A limit typed in the table is saved as the tenant's record.
    let input = format!("{row} input[data-field=\"max_connections\"]");
    c.find(Locator::Css(&input))
        .await
        .expect("limit input")
        .send_keys("7")
        .await
        .expect("type");
    click(c, &format!("{row} button.save")).await;
    eventually("max_connections saved", || async {
        get(app, "/admin/v1/tenants/acme/settings").await.json()["max_connections"] == 7
    })
    .await;

    // Publish to globex from the form; its client receives it.
    fill(c, "pub-tenant", "globex").await;
    fill(c, "pub-payload", "hello from the console").await;
    click(c, "#publish-form button[type=submit]").await;
    assert_eq!(globex.recv_text().await, "hello from the console");
    wait_js(
        c,
        "the delivery count",
        "return document.getElementById('pub-result').textContent === 'delivered to 1 session(s)';",
    )
    .await;

    // The subscriber stays connected for the screenshot.
    let _subscriber = channels_view(c, app).await;

    // The whole console, tall enough for every section, for the docs.
    let height = js(c, "return document.documentElement.scrollHeight;").await;
    c.set_window_size(1400, height.as_u64().expect("a height") as u32 + 200)
        .await
        .expect("resize");
    js(c, "window.scrollTo(0, 0); return null;").await;
    let polled = js(c, "return wsplusConsole.polls;").await;
    let next = format!("return wsplusConsole.polls > {polled};");
    wait_js(c, "a poll at the new size", &next).await;
    save_screenshot(&c.screenshot().await.expect("screenshot"));
}

/// A client of initech subscribed to `news` shows in the channels view with
/// its subscriber count, and in the channel's detail (with its presence and
/// the newest history entry when the server reports them); the publish form
/// reaches it through *Publish here*. Returns the subscriber.
async fn channels_view(c: &Client, app: &TestApp) -> Chan {
    let mut chan = Chan::connect_as(app, CHANNELS, "initech").await;
    chan.subscribe("news").await;
    fill(c, "ch-tenant", "initech").await;
    click(c, "#channels-form button").await;
    let row = "tr[data-channel=\"news\"]";
    wait_js(
        c,
        "news listed with its subscriber",
        &format!("return document.querySelector('{row} .subscribers')?.textContent === '1';"),
    )
    .await;
    click(c, &format!("{row} button.details")).await;
    wait_js(
        c,
        "the channel's detail",
        "return !document.getElementById('channel-detail').hidden && \
         document.getElementById('cd-name').textContent === 'news' && \
         document.getElementById('cd-subscribers').textContent === '1';",
    )
    .await;

    click(c, &format!("{row} button.publish-here")).await;
    let target = js(
        c,
        "return ['pub-listener', 'pub-scope', 'pub-tenant', 'pub-channel']\
         .map((id) => document.getElementById(id).value);",
    )
    .await;
    assert_eq!(target, json!([CHANNELS, "tenant", "initech", "news"]));
    fill(c, "pub-payload", r#"{"n": 1}"#).await;
    click(c, "#publish-form button[type=submit]").await;
    let p = chan.push().await;
    assert_eq!(
        (&p["push"], &p["channel"], &p["data"]),
        (&json!("pub"), &json!("news"), &json!({"n": 1}))
    );

    // What the detail route reports beyond subscribers (presence, history)
    // must show too.
    let detail = get(
        app,
        &format!("/admin/v1/channels/news?listener={CHANNELS}&tenant=initech"),
    )
    .await
    .expect_ok();
    if !detail["presence"].is_null() {
        let id = chan.session_id();
        wait_js(
            c,
            "the subscriber in the channel's presence",
            &format!("return document.querySelector('#presence-rows tr[data-client=\"{id}\"]') !== null;"),
        )
        .await;
    }
    if !detail["history"].is_null() {
        wait_js(
            c,
            "the publication among the newest history entries",
            "return [...document.querySelectorAll('#history-rows td.data')]\
             .some((td) => td.textContent === '{\"n\":1}');",
        )
        .await;
    }
    chan
}

/// Writes the console's screenshot to the target directory, and to
/// docs/console.png when `WSPLUS_UPDATE_SCREENSHOTS=1`.
fn save_screenshot(png: &[u8]) {
    assert!(png.starts_with(b"\x89PNG"));
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    std::fs::write(&scratch, png).expect("write the screenshot");
    if std::env::var("WSPLUS_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console.png");
        std::fs::write(&docs, png).expect("write docs/console.png");
    }
}
